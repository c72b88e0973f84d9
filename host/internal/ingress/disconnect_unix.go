//go:build unix

package ingress

import (
	"errors"

	"golang.org/x/sys/unix"
)

// peekGone reports whether a non-blocking peek at fd sees the end of the stream or a reset.
// Unread bytes (a pipelined request) make it report connected: it cannot see past them.
func peekGone(fd int) bool {
	var b [1]byte
	n, _, err := unix.Recvfrom(fd, b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
	switch {
	case err == nil:
		return n == 0
	case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EWOULDBLOCK), errors.Is(err, unix.EINTR):
		return false
	}
	return true // ECONNRESET, ENOTCONN ...
}
