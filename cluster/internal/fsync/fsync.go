// Package fsync makes a file or a directory's entries durable; the cluster's stores (blobs,
// Raft's log) share it.
package fsync

import "os"

// Path opens path (a file or a directory) and fsyncs it: for a directory, this makes the
// creation, renaming and removal of its entries durable.
func Path(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
