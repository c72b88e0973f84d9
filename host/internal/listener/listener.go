// Package listener keeps a server's accept loop alive through accept errors.
//
// fasthttp's Server.Serve returns on any accept error that is not a timeout, and the error a
// process out of file descriptors gets (accept4: EMFILE, "too many open files") is not one: one
// burst of descriptor exhaustion stopped the ingress listener for good while /readyz still said
// ok (issue 14). A Listener wraps a net.Listener so that Accept never returns such an error: it
// backs off (5 ms, doubling to 1 s, like net/http's Server) and tries again, and it reports
// itself down while it does, so readiness can say so. Only closing the listener ends Accept.
package listener

import (
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Backoff bounds between two accepts after an error.
const (
	minBackoff = 5 * time.Millisecond
	maxBackoff = time.Second
)

// Listener is a net.Listener whose Accept retries failed accepts until the listener is closed.
// It is safe for concurrent use, like the listener it wraps.
type Listener struct {
	net.Listener
	name string
	log  *slog.Logger

	closeOnce sync.Once
	closed    chan struct{}

	down    atomic.Bool
	mu      sync.Mutex
	lastErr error
	since   time.Time
	errs    atomic.Uint64
}

// Wrap returns ln with a resilient Accept. name identifies it in logs and in Down.
func Wrap(ln net.Listener, name string, log *slog.Logger) *Listener {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Listener{Listener: ln, name: name, log: log, closed: make(chan struct{})}
}

// Accept returns the next connection. An accept error other than the listener being closed is
// logged (when the listener goes down) and retried after a backoff; Accept returns an error only
// once the listener is closed.
func (l *Listener) Accept() (net.Conn, error) {
	backoff := time.Duration(0)
	for {
		c, err := l.Listener.Accept()
		if err == nil {
			if l.down.Load() {
				l.up()
			}
			return c, nil
		}
		select {
		case <-l.closed:
			return nil, err
		default:
		}
		if errors.Is(err, net.ErrClosed) {
			return nil, err
		}
		l.errs.Add(1)
		l.markDown(err)
		if backoff == 0 {
			backoff = minBackoff
		} else {
			backoff = min(2*backoff, maxBackoff)
		}
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-l.closed:
			t.Stop()
			return nil, err
		}
	}
}

func (l *Listener) markDown(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lastErr = err
	if !l.down.Load() {
		l.since = time.Now()
		l.down.Store(true)
		l.log.Error("listener cannot accept connections; retrying", "listener", l.name, "err", err)
	}
}

func (l *Listener) up() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.down.Load() {
		l.down.Store(false)
		l.log.Warn("listener accepts connections again", "listener", l.name, "down_for", time.Since(l.since).Round(time.Millisecond), "last_err", l.lastErr)
	}
}

// Down reports whether the listener's last accept failed (it has not accepted a connection
// since), and why, e.g. "ingress: accept failing for 2.1s: accept4: too many open files".
func (l *Listener) Down() (bool, string) {
	if !l.down.Load() {
		return false, ""
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.down.Load() {
		return false, ""
	}
	return true, l.name + ": accept failing for " + time.Since(l.since).Round(time.Millisecond).String() + ": " + l.lastErr.Error()
}

// Errors is the number of accept errors retried so far.
func (l *Listener) Errors() uint64 { return l.errs.Load() }

// Close closes the listener; a pending Accept returns. Idempotent as far as the wrapped
// listener's Close is.
func (l *Listener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return l.Listener.Close()
}
