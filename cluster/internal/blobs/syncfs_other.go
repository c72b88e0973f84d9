//go:build !linux

package blobs

// syncFS fsyncs each file and directory (no syncfs(2) here).
func syncFS(s *Store, batch map[string]*pendingBlob) error { return syncEach(s, batch) }

func (s *Store) openSyncFD() error { return nil }
