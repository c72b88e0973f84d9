//go:build linux

package blobs

import (
	"os"

	"golang.org/x/sys/unix"
)

// syncFS syncs the file system that holds the store (syncfs(2) on s.syncFD): one call, and one
// cache flush of the device, for every file written and renamed before it, where fsyncing each
// file and directory costs a flush apiece. It reports the write-back errors of the file system
// since the descriptor was opened (Linux 5.8 and later), which is before the first pending
// blob was written (see openSyncFD): a failed write-back of a pending file, even one the kernel
// did in the background, fails the Flush.
func syncFS(s *Store, batch map[string]*pendingBlob) error {
	s.syncMu.Lock()
	f := s.syncFD
	s.syncMu.Unlock()
	if f == nil {
		return syncEach(s, batch)
	}
	return unix.Syncfs(int(f.Fd()))
}

// openSyncFD opens the descriptor syncFS syncs through, once.
func (s *Store) openSyncFD() error {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	if s.syncFD != nil || s.closed {
		return nil
	}
	f, err := os.Open(s.dir)
	if err != nil {
		return err
	}
	s.syncFD = f
	return nil
}
