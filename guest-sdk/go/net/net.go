// Package net gives an ambassador plugin outbound TCP connections through the host
// (guest-sdk/ABI.md §4: net_dial, net_write, net_read, net_close, net_error). Only modules
// whose pod spec grants a network allowlist (network.allow, ambassadors only) can dial, and only
// the host:port destinations listed there; every dial is checked, including the addresses a
// name resolves to.
//
// A Conn is an io.ReadWriteCloser. Connections outlive the call that opened them, so a plugin
// may keep a pool; reads and writes are bounded by the current call's deadline, and a
// connection whose read or write failed or timed out is closed by the host (its Conn reports
// ErrClosed afterwards). The host also closes connections of an instance idle for a while
// (60 s by default), so a pooled connection may fail on first use: dial again.
//
// Compiled natively (not wasip1), the imports are played by Host, an in-process FakeHost that
// dials real sockets through its Dial function, for unit tests of plugin logic.
package net

import (
	"errors"
	"fmt"
	"io"
)

// Sentinel errors, matched by errors.Is on an *Error.
var (
	ErrNotAllowed = errors.New("destination not on the network allowlist")
	ErrIO         = errors.New("network I/O failed")
	ErrTooMany    = errors.New("too many open connections")
	ErrClosed     = errors.New("connection closed")
	ErrBadArgs    = errors.New("invalid network arguments")
	ErrTimeout    = errors.New("network deadline exceeded")
)

// Codes of the net imports.
const (
	codeNotAllowed = -1
	codeIO         = -2
	codeTooMany    = -3
	codeBadHandle  = -4
	codeBadArgs    = -5
	codeTimeout    = -6
)

// Error is a failed network operation: the import's code and the host's message.
type Error struct {
	Op   string // dial, read, write, close
	Addr string
	Code int32
	// Message is the host's explanation (net_error).
	Message string
}

func (e *Error) Error() string {
	msg := e.Message
	if msg == "" {
		msg = e.Unwrap().Error()
	}
	return fmt.Sprintf("%s %s: %s", e.Op, e.Addr, msg)
}

// Unwrap maps the code to its sentinel error.
func (e *Error) Unwrap() error {
	switch e.Code {
	case codeNotAllowed:
		return ErrNotAllowed
	case codeTooMany:
		return ErrTooMany
	case codeBadHandle:
		return ErrClosed
	case codeBadArgs:
		return ErrBadArgs
	case codeTimeout:
		return ErrTimeout
	}
	return ErrIO
}

// Timeout reports whether the operation ran out of time.
func (e *Error) Timeout() bool { return e.Code == codeTimeout }

func newError(op, addr string, code int32) *Error {
	e := &Error{Op: op, Addr: addr, Code: code}
	var small [256]byte
	b := small[:]
	for {
		n := hostError(b)
		if n < 0 {
			return e
		}
		if int(n) <= len(b) {
			e.Message = string(b[:n])
			return e
		}
		b = make([]byte, n)
	}
}

// Conn is an outbound TCP connection held by the host.
type Conn struct {
	h      int32
	addr   string
	closed bool
}

// Dial connects to addr ("host:port"), which must be on the module's network allowlist.
func Dial(addr string) (*Conn, error) {
	h := hostDial(addr)
	if h < 0 {
		return nil, newError("dial", addr, h)
	}
	return &Conn{h: h, addr: addr}, nil
}

// Addr is the address the connection was dialled with.
func (c *Conn) Addr() string { return c.addr }

// Read reads what is available, up to len(p) bytes (the host caps one read at 64 KiB); it
// blocks until some data arrives, the peer closes (io.EOF) or the call's deadline passes.
func (c *Conn) Read(p []byte) (int, error) {
	if c.closed {
		return 0, &Error{Op: "read", Addr: c.addr, Code: codeBadHandle}
	}
	if len(p) == 0 {
		return 0, nil
	}
	if len(p) > 1<<30 {
		p = p[:1<<30]
	}
	n := hostRead(c.h, p)
	switch {
	case n > 0:
		return int(n), nil
	case n == 0:
		return 0, io.EOF
	}
	err := newError("read", c.addr, n)
	if n == codeIO || n == codeTimeout || n == codeBadHandle {
		c.closed = true // the host closed it
	}
	return 0, err
}

// Write writes all of p or fails.
func (c *Conn) Write(p []byte) (int, error) {
	if c.closed {
		return 0, &Error{Op: "write", Addr: c.addr, Code: codeBadHandle}
	}
	done := 0
	for done < len(p) {
		chunk := p[done:min(len(p), done+1<<30)]
		n := hostWrite(c.h, chunk)
		if n < 0 {
			if n == codeIO || n == codeTimeout || n == codeBadHandle {
				c.closed = true
			}
			return done, newError("write", c.addr, n)
		}
		done += int(n)
	}
	return done, nil
}

// Close closes the connection. Closing a closed connection is a no-op.
func (c *Conn) Close() error {
	if c.closed {
		return nil
	}
	c.closed = true
	if n := hostClose(c.h); n < 0 && n != codeBadHandle {
		return newError("close", c.addr, n)
	}
	return nil
}

var _ io.ReadWriteCloser = (*Conn)(nil)
