// Package statelock gives one `wasmpod run` at a time a state directory: an exclusive lock
// (flock) on DIR/lock, holding the owner's pid, so a second process learns at once who holds
// it instead of blocking silently in the Raft store's own lock.
package statelock

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// ErrInUse is wrapped by Acquire's error when ctx ended while another process held the lock.
var ErrInUse = errors.New("state dir in use")

// Lock is a held state directory lock. Release it when the process is done with the directory.
type Lock struct {
	f *os.File
}

// FileName is the lock file's name inside the state directory.
const FileName = "lock"

// poll is how often a waiting Acquire tries again: flock has no wait with a deadline, and a
// tenth of a second is prompt next to a host's start-up.
const poll = 100 * time.Millisecond

// Acquire locks dir (creating it), waiting while another process holds it: it calls waiting
// once, at once, with that process's pid (0 if unknown), then tries again every 100ms until
// ctx ends, when it returns an error wrapping ErrInUse and ctx's error.
func Acquire(ctx context.Context, dir string, waiting func(pid int)) (*Lock, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	path := filepath.Join(dir, FileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("state dir lock: %w", err)
	}
	told := false
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("state dir lock %s: %w", path, err)
		}
		pid := Holder(dir)
		if !told && waiting != nil {
			waiting(pid)
			told = true
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("%w: %s is locked by pid %d: %w", ErrInUse, dir, pid, ctx.Err())
		case <-time.After(poll):
		}
	}
	if err := f.Truncate(0); err == nil {
		_, err = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("state dir lock: %w", err)
		}
	}
	return &Lock{f: f}, nil
}

// Holder returns the pid recorded in dir's lock file, or 0.
func Holder(dir string) int {
	b, err := os.ReadFile(filepath.Join(dir, FileName))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// Release gives the directory up. It is idempotent.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	f := l.f
	l.f = nil
	return f.Close() // closing the descriptor drops the flock
}
