//go:build !wasip1

package net

import (
	"errors"
	"fmt"
	"io"
	stdnet "net"
	"os"
	"slices"
	"sync"
	"time"
)

// Host stands in for the host's net imports when the SDK is compiled natively (for unit tests of
// plugin logic, e.g. against a real server on loopback). It is not used on wasip1.
var Host = NewFakeHost()

// FakeHost dials real connections for addresses in Allow, with the host's codes and limits.
type FakeHost struct {
	mu sync.Mutex
	// Allow lists the addresses Dial may reach, compared exactly.
	Allow []string
	// MaxHandles bounds open connections (0: 64).
	MaxHandles int
	// Timeout is the deadline of each operation (0: 5 s), like the host's call deadline.
	Timeout time.Duration
	// Dials counts successful dials.
	Dials int

	conns  map[int32]stdnet.Conn
	next   int32
	netErr string
}

// NewFakeHost returns a FakeHost that allows nothing.
func NewFakeHost() *FakeHost { return &FakeHost{conns: map[int32]stdnet.Conn{}} }

// Open returns the number of open connections.
func (h *FakeHost) Open() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.conns)
}

func (h *FakeHost) fail(code int32, format string, args ...any) int32 {
	h.netErr = fmt.Sprintf(format, args...)
	return code
}

func (h *FakeHost) timeout() time.Duration {
	if h.Timeout == 0 {
		return 5 * time.Second
	}
	return h.Timeout
}

func code(err error) int32 {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return codeTimeout
	}
	return codeIO
}

func hostDial(addr string) int32 {
	h := Host
	h.mu.Lock()
	defer h.mu.Unlock()
	if !slices.Contains(h.Allow, addr) {
		return h.fail(codeNotAllowed, "net_dial %q: not allowed: not on the module's network allowlist", addr)
	}
	limit := h.MaxHandles
	if limit == 0 {
		limit = 64
	}
	if len(h.conns) >= limit {
		return h.fail(codeTooMany, "net_dial %q: %d connections already open", addr, len(h.conns))
	}
	c, err := stdnet.DialTimeout("tcp", addr, h.timeout())
	if err != nil {
		return h.fail(code(err), "net_dial %q: %v", addr, err)
	}
	h.Dials++
	h.next++
	h.conns[h.next] = c
	return h.next
}

func (h *FakeHost) conn(hd int32) stdnet.Conn {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.conns[hd]
}

func (h *FakeHost) drop(hd int32) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if c := h.conns[hd]; c != nil {
		c.Close()
		delete(h.conns, hd)
	}
}

func (h *FakeHost) failLocked(code int32, format string, args ...any) int32 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.fail(code, format, args...)
}

func hostWrite(hd int32, p []byte) int32 {
	h := Host
	c := h.conn(hd)
	if c == nil {
		return h.failLocked(codeBadHandle, "net_write: no open handle %d", hd)
	}
	c.SetWriteDeadline(time.Now().Add(h.timeout()))
	if _, err := c.Write(p); err != nil {
		h.drop(hd)
		return h.failLocked(code(err), "net_write: %v (handle closed)", err)
	}
	return int32(len(p))
}

func hostRead(hd int32, p []byte) int32 {
	h := Host
	c := h.conn(hd)
	if c == nil {
		return h.failLocked(codeBadHandle, "net_read: no open handle %d", hd)
	}
	c.SetReadDeadline(time.Now().Add(h.timeout()))
	n, err := c.Read(p[:min(len(p), 64<<10)])
	if n > 0 {
		return int32(n)
	}
	if errors.Is(err, io.EOF) {
		return 0
	}
	h.drop(hd)
	return h.failLocked(code(err), "net_read: %v (handle closed)", err)
}

func hostClose(hd int32) int32 {
	h := Host
	if h.conn(hd) == nil {
		return h.failLocked(codeBadHandle, "net_close: no open handle %d", hd)
	}
	h.drop(hd)
	return 0
}

func hostError(b []byte) int32 {
	h := Host
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.netErr == "" {
		return -1
	}
	if len(h.netErr) <= len(b) {
		copy(b, h.netErr)
	}
	return int32(len(h.netErr))
}
