// Package regfile reads files that must be regular files: the module, pod and checksum files a
// long-running host reads from directories that others may write to. A FIFO in their place
// blocks a plain open and read for good (and with them the goroutine that watches the
// directory), and a device such as /dev/zero is read until memory runs out.
package regfile

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
)

// ErrNotRegular is wrapped by Read's error for a path that names anything but a regular file
// (through symbolic links): a FIFO, a device, a socket or a directory.
var ErrNotRegular = errors.New("not a regular file")

// ErrTooLarge is wrapped by Read's error for a file larger than its limit.
var ErrTooLarge = errors.New("file too large")

// TooLargeError is Read's error for a file larger than its limit. It wraps ErrTooLarge.
type TooLargeError struct {
	Path string
	Size int64 // the file's size when opened; at least Max+1 if Grew
	Max  int64
	Grew bool // within Max when opened, the file grew past it while read
}

func (e *TooLargeError) Error() string {
	if e.Grew {
		return fmt.Sprintf("%s: %v: grew past %d bytes while read", e.Path, ErrTooLarge, e.Max)
	}
	return fmt.Sprintf("%s: %v: %d bytes (limit %d)", e.Path, ErrTooLarge, e.Size, e.Max)
}

func (e *TooLargeError) Unwrap() error { return ErrTooLarge }

// Read reads path, following symbolic links, if it is a regular file of at most max bytes
// (max <= 0: any size). The open does not block (O_NONBLOCK: a FIFO without a writer would),
// the file's type is checked on the open file, a file over max is refused from its size unread
// (a *TooLargeError), and the read stops past max even if the file grows meanwhile.
func Read(path string, max int64) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: %w (%s)", path, ErrNotRegular, fi.Mode().Type())
	}
	if max > 0 && fi.Size() > max {
		return nil, &TooLargeError{Path: path, Size: fi.Size(), Max: max}
	}
	var r io.Reader = f
	if max > 0 {
		r = io.LimitReader(f, max+1)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	if max > 0 && int64(len(b)) > max {
		return nil, &TooLargeError{Path: path, Size: int64(len(b)), Max: max, Grew: true}
	}
	return b, nil
}
