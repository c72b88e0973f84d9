//go:build unix

package podtest

import (
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// reservePort takes an exclusive lock on the file that stands for port, shared by every test
// process of the machine; the lock lasts while the returned file stays open (at most until the
// process exits). It reports false when another process holds it.
func reservePort(port int) (*os.File, bool) {
	dir := filepath.Join(os.TempDir(), "wasmpod-test-ports")
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return nil, false
	}
	f, err := os.OpenFile(filepath.Join(dir, strconv.Itoa(port)), os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return nil, false
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, false
	}
	return f, true
}
