package ingress

import (
	"context"
	"net"
	"sync"
	"syscall"
	"time"
)

// disconnectPoll is how often a request in flight checks that its client is still connected.
// fasthttp does not cancel a RequestCtx when the client goes away (it reads nothing from the
// connection while the handler runs), so the ingress asks the kernel: one getsockopt (or a
// non-blocking peek) per check. 50 ms: a call whose client left is cut within about a tenth
// of a second, for twenty cheap system calls a second per long call; a call shorter than
// that never checks at all (its timer is stopped before it fires).
const disconnectPoll = 50 * time.Millisecond

// clientWatch gives the call of one request a context that is cancelled when its client
// disconnects (or the server shuts down). It lives in the pooled callBuf and is reused: a
// context that was not cancelled serves the next request too, so a steady request stream
// allocates nothing here but the runtime's per-call registration.
type clientWatch struct {
	parent context.Context // the server's: its end (Shutdown) cancels the call too

	mu     sync.Mutex
	conn   net.Conn // the request's connection while a call runs; nil between requests
	ctx    context.Context
	cancel context.CancelFunc
	timer  *time.Timer
}

// arm starts watching conn for the call about to run and returns the call's context.
func (w *clientWatch) arm(parent context.Context, conn net.Conn) context.Context {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ctx == nil || w.ctx.Err() != nil {
		// Not derived from parent: a child of a cancellable parent would stay registered with
		// it when the pool drops this buffer. parent's end is checked by poll instead.
		w.parent = parent
		w.ctx, w.cancel = context.WithCancel(context.WithoutCancel(parent))
	}
	w.conn = conn
	if w.timer == nil {
		w.timer = time.AfterFunc(disconnectPoll, w.poll)
	} else {
		w.timer.Reset(disconnectPoll)
	}
	return w.ctx
}

// disarm stops watching: the call has returned.
func (w *clientWatch) disarm() {
	w.timer.Stop()
	w.mu.Lock()
	w.conn = nil
	w.mu.Unlock()
}

// poll runs on the timer: it cancels the call when its client is gone or the server shuts
// down, else checks again later.
func (w *clientWatch) poll() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.conn == nil {
		return // the call returned meanwhile
	}
	if w.parent.Err() != nil || peerGone(w.conn) {
		w.cancel()
		return
	}
	w.timer.Reset(disconnectPoll)
}

// peerGone reports whether the other end of c has closed or reset the connection. A
// connection it cannot inspect (not a socket) counts as connected.
func peerGone(c net.Conn) bool {
	for range 4 {
		switch t := c.(type) {
		case syscall.Conn:
			rc, err := t.SyscallConn()
			if err != nil {
				return false
			}
			gone := false
			if err := rc.Control(func(fd uintptr) { gone = fdPeerGone(int(fd)) }); err != nil {
				return true // the connection is closed already
			}
			return gone
		case interface{ NetConn() net.Conn }: // *tls.Conn, the admin package's per-IP limit
			c = t.NetConn()
			continue
		}
		return false
	}
	return false
}
