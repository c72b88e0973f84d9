package admin

import (
	"container/list"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// Idle connections give way under pressure. A keep-alive connection that has been answered
// holds one of the listener's MaxConns slots until IdleTimeout, so clients that open
// connections, send one request each and go quiet can hold every slot, and each new client is
// answered 503 for as long as they stay. idleReaper keeps IdleHeadroom slots free: once more
// than MaxConns-IdleHeadroom connections are open, each new connection closes the
// longest-idle keep-alive connection (near the cap, the idle timeout of the oldest idle
// connection is zero). This is what nginx does when it runs out of connections (it reuses idle
// keep-alive ones). Connections that are reading a request or being answered are never
// closed: ReadTimeout and WriteTimeout bound those. A client whose idle connection is closed
// just as it sends a request sees the connection end with no answer, as at IdleTimeout; HTTP
// clients retry that on a new connection.

// closeWait bounds how long the accept loop waits for connections closed here to end when
// they are all that stands between a new connection and the connection limit.
const closeWait = 200 * time.Millisecond

// idleReaper tracks a fasthttp server's connections through its ConnState hook.
type idleReaper struct {
	high   int // most open connections before idle ones are closed
	wait   int // above this many open, a new connection waits for closed ones to end
	log    *slog.Logger
	listen string // for the log

	mu      sync.Mutex
	open    int                        // connections counted from StateNew to StateClosed/StateHijacked
	idle    map[net.Conn]*list.Element // idle connections, in order (front: longest idle)
	order   *list.List
	closing map[net.Conn]struct{} // closed here, StateClosed not seen yet
	closed  int                   // closed here since the last log line
	logged  time.Time             // when the last log line was written: at most one a minute
	ended   chan struct{}         // closed and replaced when a connection closed here ends
	// waitedOut: when awaitRoom last gave up waiting.
	waitedOut time.Time
}

// newIdleReaper returns a reaper for a server of maxConns connections that keeps headroom of
// them free; maxConns <= 0 returns nil (no limit).
func newIdleReaper(maxConns, headroom int, log *slog.Logger, listen string) *idleReaper {
	if maxConns <= 0 {
		return nil
	}
	headroom = min(max(headroom, 1), maxConns)
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &idleReaper{high: maxConns - headroom, wait: maxConns - (headroom+1)/2, log: log, listen: listen,
		idle: map[net.Conn]*list.Element{}, order: list.New(), closing: map[net.Conn]struct{}{},
		ended: make(chan struct{})}
}

// connState is the server's ConnState hook.
func (r *idleReaper) connState(c net.Conn, st fasthttp.ConnState) {
	r.mu.Lock()
	switch st {
	case fasthttp.StateNew:
		r.open++
	case fasthttp.StateActive:
		r.unidle(c)
	case fasthttp.StateIdle:
		r.unidle(c)
		if _, gone := r.closing[c]; !gone {
			r.idle[c] = r.order.PushBack(c)
		}
	case fasthttp.StateClosed, fasthttp.StateHijacked:
		r.unidle(c)
		if _, ok := r.closing[c]; ok {
			delete(r.closing, c)
			close(r.ended)
			r.ended = make(chan struct{})
		}
		r.open--
	}
	// Over the high-water mark, a new connection and a connection going idle each close the
	// longest-idle ones (connections closed here but not yet ended are on their way out).
	var victims []net.Conn
	if st == fasthttp.StateNew || st == fasthttp.StateIdle {
		for r.open-len(r.closing) > r.high && r.order.Len() > 0 {
			v := r.order.Remove(r.order.Front()).(net.Conn)
			delete(r.idle, v)
			r.closing[v] = struct{}{}
			victims = append(victims, v)
		}
	}
	r.closed += len(victims)
	logIt := len(victims) > 0 && time.Since(r.logged) >= time.Minute
	var n, open int
	if logIt {
		r.logged, n, r.closed, open = time.Now(), r.closed, 0, r.open
	}
	r.mu.Unlock()
	for _, v := range victims {
		_ = v.Close() // its serving goroutine sees the read fail and ends the connection
	}
	if logIt {
		r.log.Warn("closed idle keep-alive connections to keep room for new ones (logged at most once a minute)",
			"closed", n, "open", open, "high_water", r.high, "listener", r.listen)
	}
	if st == fasthttp.StateNew {
		r.awaitRoom()
	}
}

// awaitRoom runs on the accept loop, before fasthttp counts the new connection against its
// limit. When almost every slot is taken, the connections closed here still hold slots until
// their goroutines end, and connections answering a request will go idle and be closed (both
// happen within milliseconds under a burst of new connections); it waits for one to end, at
// most closeWait, so that the new connection is served rather than answered 503. After a wait
// that ran out it does not wait again for a second: a host whose slots are all busy answering
// long requests answers 503 at once rather than slowing its accept loop.
func (r *idleReaper) awaitRoom() {
	var timer *time.Timer
	for {
		r.mu.Lock()
		full, ended := r.open > r.wait && time.Since(r.waitedOut) >= time.Second, r.ended
		r.mu.Unlock()
		if !full {
			break
		}
		if timer == nil {
			timer = time.NewTimer(closeWait)
			defer timer.Stop()
		}
		select {
		case <-ended:
		case <-timer.C:
			r.mu.Lock()
			r.waitedOut = time.Now()
			r.mu.Unlock()
			return
		}
	}
}

func (r *idleReaper) unidle(c net.Conn) {
	if e, ok := r.idle[c]; ok {
		r.order.Remove(e)
		delete(r.idle, c)
	}
}
