package admin

import (
	"net"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// closeConn is a net.Conn that records its Close.
type closeConn struct {
	net.Conn
	closed chan struct{}
}

func newCloseConn() *closeConn { return &closeConn{closed: make(chan struct{})} }

func (c *closeConn) Close() error {
	select {
	case <-c.closed:
	default:
		close(c.closed)
	}
	return nil
}

func (c *closeConn) isClosed() bool {
	select {
	case <-c.closed:
		return true
	default:
		return false
	}
}

// TestIdleReaper drives the ConnState hook as fasthttp does: the longest-idle connections
// are closed past the high-water mark, active ones never, and the accept loop waits for room
// only so long.
func TestIdleReaper(t *testing.T) {
	r := newIdleReaper(10, 2, nil, "test") // high water 8, waits above 9
	var conns []*closeConn
	open := func(idle bool) *closeConn {
		c := newCloseConn()
		r.connState(c, fasthttp.StateNew)
		r.connState(c, fasthttp.StateActive)
		if idle {
			r.connState(c, fasthttp.StateIdle)
		}
		conns = append(conns, c)
		return c
	}
	for range 6 {
		open(true)
	}
	open(false)
	open(false) // 8 open: 6 idle, 2 active; nothing closed yet
	for i, c := range conns {
		if c.isClosed() {
			t.Fatalf("conn %d closed at or below the high-water mark", i)
		}
	}
	open(false) // 9th: the longest-idle (conn 0) gives way
	if !conns[0].isClosed() || conns[1].isClosed() {
		t.Fatalf("9th connection: closed %v %v; want only the longest-idle", conns[0].isClosed(), conns[1].isClosed())
	}
	r.connState(conns[0], fasthttp.StateClosed)
	// An active connection going idle while over the mark: the longest-idle one goes.
	open(false) // 9 open again, conn 1 closed
	r.connState(conns[1], fasthttp.StateClosed)
	r.connState(conns[7], fasthttp.StateIdle) // still 8 open: no one closed
	if conns[2].isClosed() {
		t.Fatal("closed an idle connection at the high-water mark")
	}
	// Active connections are never closed: with all 10 active, a new one waits closeWait for
	// room, once; the next is not held up.
	for _, c := range conns {
		if !c.isClosed() {
			r.connState(c, fasthttp.StateActive)
		}
	}
	open(false) // 9
	start := time.Now()
	open(false) // 10 > 9: waits, nothing ends
	if d := time.Since(start); d < closeWait/2 {
		t.Fatalf("waited %v for room; want about %v", d, closeWait)
	}
	start = time.Now()
	open(false)
	if d := time.Since(start); d >= closeWait/2 {
		t.Fatalf("waited %v again within a second of a wait that ran out; want none", d)
	}
	for i, c := range conns[2:] {
		if c.isClosed() {
			t.Fatalf("active conn %d closed", i+2)
		}
	}
}
