// Package tlsaccept is a TLS listener that completes the handshake before Accept returns a
// connection. crypto/tls's own listener hands out a connection at once and runs the handshake
// on its first read, so the server (fasthttp, with a fixed number of connection slots) gives a
// slot to every raw TCP connection, including a stranger's that never sends a byte: an outsider
// with no key could hold all the slots by opening connections faster than the server's read
// timeout closes them. Here a connection takes a server slot only once its peer has
// authenticated; until then it is one of a bounded number of pending handshakes, each with a
// short deadline.
package tlsaccept

import (
	"container/list"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"time"
)

// Limits bounds the connections whose handshake has not completed. Start from DefaultLimits.
type Limits struct {
	// Timeout bounds a handshake from the TCP accept to its end; a connection that has not
	// completed it by then is closed.
	Timeout time.Duration
	// MaxPending bounds the handshakes in progress. Past it, a new connection closes the
	// oldest pending one: a member's handshake takes milliseconds, so an outsider has to open
	// MaxPending connections within that time to crowd it out, not just keep them open.
	MaxPending int
	// MaxPendingPerSource bounds the handshakes in progress from one source (an IPv4 address
	// or an IPv6 /64, which one host usually has whole). Past it, a new connection from that
	// source closes the source's own oldest pending one, so one host cannot evict the others'.
	MaxPendingPerSource int
}

// DefaultLimits returns the limits the scatter endpoint uses.
func DefaultLimits() Limits {
	return Limits{
		// 5 s: the Raft port's handshake timeout; a member on a LAN needs a few milliseconds.
		Timeout: 5 * time.Second,
		// 1024 goroutines and TLS states at most (a few MiB); far above what the members of a
		// cluster have in handshake at once.
		MaxPending: 1024,
		// 64: a member opens a handful of connections at once (its pool to this node).
		MaxPendingPerSource: 64,
	}
}

// Listener accepts TCP connections from an inner listener, runs each one's server handshake
// concurrently (so a slow client does not hold up the others) and returns from Accept only
// connections whose handshake succeeded, as *tls.Conn.
type Listener struct {
	ln  net.Listener
	cfg *tls.Config
	lim Limits

	ready  chan *tls.Conn // handshakes done, waiting for Accept
	done   chan struct{}  // closed by Close
	failed chan struct{}  // closed when the inner listener fails for good
	err    error          // why, set before failed is closed
	once   sync.Once
	wg     sync.WaitGroup // the accept loop and the handshake goroutines

	mu       sync.Mutex
	closed   bool
	all      *list.List            // of *pending, oldest first
	bySource map[string]*list.List // of *pending, oldest first
}

type pending struct {
	c      net.Conn
	source string
	inAll  *list.Element
	inSrc  *list.Element
	gone   bool // removed from the lists (finished, evicted or closed with the listener)
}

// New returns a listener that serves cfg's handshake on ln's connections within lim. A zero
// field of lim takes its default.
func New(ln net.Listener, cfg *tls.Config, lim Limits) *Listener {
	d := DefaultLimits()
	if lim.Timeout <= 0 {
		lim.Timeout = d.Timeout
	}
	if lim.MaxPending <= 0 {
		lim.MaxPending = d.MaxPending
	}
	if lim.MaxPendingPerSource <= 0 {
		lim.MaxPendingPerSource = d.MaxPendingPerSource
	}
	l := &Listener{ln: ln, cfg: cfg, lim: lim, ready: make(chan *tls.Conn), done: make(chan struct{}),
		failed: make(chan struct{}), all: list.New(), bySource: map[string]*list.List{}}
	l.wg.Add(1)
	go l.acceptLoop()
	return l
}

// Accept returns the next connection whose handshake completed.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ready:
		return c, nil
	case <-l.done:
		// net.ErrClosed: what servers (net/http, fasthttp) take for a listener closed on purpose.
		return nil, &net.OpError{Op: "accept", Net: l.ln.Addr().Network(), Addr: l.ln.Addr(), Err: net.ErrClosed}
	case <-l.failed:
		return nil, l.err
	}
}

// Close closes the inner listener and every connection still in handshake, and waits for
// their goroutines to end. Idempotent.
func (l *Listener) Close() error {
	var err error
	l.once.Do(func() {
		close(l.done)
		err = l.ln.Close()
		l.mu.Lock()
		l.closed = true
		for e := l.all.Front(); e != nil; e = l.all.Front() {
			l.evict(e.Value.(*pending))
		}
		l.mu.Unlock()
		l.wg.Wait()
	})
	return err
}

// Addr is the inner listener's address.
func (l *Listener) Addr() net.Addr { return l.ln.Addr() }

// Pending reports how many connections are in handshake.
func (l *Listener) Pending() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.all.Len()
}

func (l *Listener) acceptLoop() {
	defer l.wg.Done()
	var backoff time.Duration
	for {
		c, err := l.ln.Accept()
		if err != nil {
			select {
			case <-l.done:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				// Out of file descriptors and the like: wait for connections to end rather than
				// spin or give up serving.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				select {
				case <-time.After(backoff):
					continue
				case <-l.done:
					return
				}
			}
			l.err = err
			close(l.failed)
			return
		}
		backoff = 0
		l.admit(c)
	}
}

// isTemporary reports a transient accept error (EMFILE, ENFILE, ECONNABORTED): the deprecated
// Temporary method is still how the net package marks them.
func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// admit makes c a pending handshake, evicting an older one when a limit is reached, and
// starts its handshake. It never blocks on a peer.
func (l *Listener) admit(c net.Conn) {
	src := source(c.RemoteAddr())
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		c.Close()
		return
	}
	mine := l.bySource[src]
	if mine == nil {
		mine = list.New()
		l.bySource[src] = mine
	}
	switch {
	case mine.Len() >= l.lim.MaxPendingPerSource:
		l.evict(mine.Front().Value.(*pending))
	case l.all.Len() >= l.lim.MaxPending:
		l.evict(l.all.Front().Value.(*pending))
	}
	p := &pending{c: c, source: src}
	p.inAll = l.all.PushBack(p)
	p.inSrc = mine.PushBack(p)
	l.wg.Add(1)
	l.mu.Unlock()
	go l.handshake(p)
}

// evict ends p's handshake by closing its connection; l.mu is held.
func (l *Listener) evict(p *pending) {
	l.remove(p)
	p.c.Close()
}

// remove takes p off the lists and reports whether it was still on them; l.mu is held.
func (l *Listener) remove(p *pending) bool {
	if p.gone {
		return false
	}
	p.gone = true
	l.all.Remove(p.inAll)
	mine := l.bySource[p.source]
	mine.Remove(p.inSrc)
	if mine.Len() == 0 {
		delete(l.bySource, p.source)
	}
	return true
}

func (l *Listener) handshake(p *pending) {
	defer l.wg.Done()
	// A deadline on the connection rather than HandshakeContext: no extra goroutine per
	// handshake to watch a context.
	_ = p.c.SetDeadline(time.Now().Add(l.lim.Timeout))
	tc := tls.Server(p.c, l.cfg)
	err := tc.Handshake()
	l.mu.Lock()
	current := l.remove(p)
	l.mu.Unlock()
	if err != nil || !current {
		tc.Close()
		return
	}
	// The server sets its own deadlines from here on.
	_ = p.c.SetDeadline(time.Time{})
	select {
	case l.ready <- tc:
	case <-l.done:
		tc.Close()
	}
}

// source is the key of the per-source limit: the IPv4 address, or the /64 of an IPv6 address
// (one host usually has a whole /64 to pick addresses from).
func source(a net.Addr) string {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return a.String()
	}
	ip := ta.AddrPort().Addr().Unmap()
	if ip.Is6() {
		if p, err := ip.Prefix(64); err == nil {
			return p.String()
		}
	}
	return ip.String()
}

// Compile-time check that *Listener is a net.Listener.
var _ net.Listener = (*Listener)(nil)
