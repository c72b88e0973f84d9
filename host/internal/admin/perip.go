package admin

import (
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// The per-IP connection limit is ours rather than fasthttp's Server.MaxConnsPerIP: fasthttp's
// wrapper (perIPConn) nils its embedded net.Conn on Close and recycles itself in a pool, and
// Shutdown closes idle connections from another goroutine than the one serving them, so the
// serving goroutine can then call Read, Write or SetReadDeadline on a nil net.Conn and panic,
// which kills the host (see TestShutdownNeverPanics). Our wrapper keeps its net.Conn: after
// Close every method reaches the closed socket and returns its error.

// refuseWriteTimeout bounds writing the 429 answer to a refused connection. The answer is a
// few hundred bytes into a fresh socket's empty send buffer, so the write does not block in
// practice; the deadline only keeps the accept loop going should it ever.
const refuseWriteTimeout = 100 * time.Millisecond

// tooManyConns is the answer to a connection over the limit, written before closing it.
var tooManyConns = func() []byte {
	body := "too many connections from your address\n"
	return []byte("HTTP/1.1 429 Too Many Requests\r\n" +
		"Connection: close\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n" +
		"Content-Length: " + strconv.Itoa(len(body)) + "\r\n" +
		"\r\n" + body)
}()

// limitPerIP returns ln with at most max connections open at once from one client IP address
// (IPv4, or IPv6 with IPv4-mapped addresses counted as IPv4). A connection over the limit is
// answered 429 with Connection: close and closed, and Accept goes on to the next one. A
// connection counts from Accept until its first Close. Connections without a TCP remote
// address are not counted. max <= 0 returns ln unchanged.
func limitPerIP(ln net.Listener, max int, log *slog.Logger) net.Listener {
	if max <= 0 || ln == nil {
		return ln
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &perIPListener{Listener: ln, max: max, log: log, open: map[netip.Addr]int{}}
}

type perIPListener struct {
	net.Listener
	max int
	log *slog.Logger

	mu      sync.Mutex
	open    map[netip.Addr]int // only addresses with open connections: no entry stays at 0
	refused time.Time          // when a refusal was last logged: at most one line a minute
}

// Accept returns the next connection within the limit; it refuses (answers and closes) the
// others in between. Errors are the wrapped listener's, unchanged.
func (l *perIPListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip, ok := remoteIP(c)
		if !ok {
			return c, nil
		}
		if l.acquire(ip) {
			return &perIPConn{Conn: c, l: l, ip: ip}, nil
		}
		l.refuse(c, ip)
	}
}

// acquire takes one of ip's connection slots; it is false when all are taken.
func (l *perIPListener) acquire(ip netip.Addr) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := l.open[ip]
	if n >= l.max {
		return false
	}
	l.open[ip] = n + 1
	return true
}

// release gives back one of ip's slots.
func (l *perIPListener) release(ip netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch n := l.open[ip]; {
	case n > 1:
		l.open[ip] = n - 1
	case n == 1:
		delete(l.open, ip)
	default:
		// Unreachable: each conn releases once (perIPConn.Close). Never go negative.
	}
}

// conns is the number of open connections counted for ip.
func (l *perIPListener) conns(ip netip.Addr) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open[ip]
}

// refuse answers c 429 and closes it.
func (l *perIPListener) refuse(c net.Conn, ip netip.Addr) {
	_ = c.SetWriteDeadline(time.Now().Add(refuseWriteTimeout))
	_, _ = c.Write(tooManyConns)
	_ = c.Close()
	l.mu.Lock()
	logIt := time.Since(l.refused) >= time.Minute
	if logIt {
		l.refused = time.Now()
	}
	l.mu.Unlock()
	if logIt {
		l.log.Warn("refused connections over the per-IP limit (logged at most once a minute)",
			"remote", ip.String(), "max_conns_per_ip", l.max, "listener", l.Addr().String())
	}
}

// perIPConn holds one of its address's slots until its first Close. Unlike fasthttp's
// perIPConn it never drops its net.Conn, so any method called after Close, from any
// goroutine, reaches the closed socket and gets its error instead of a nil dereference.
type perIPConn struct {
	net.Conn
	l      *perIPListener
	ip     netip.Addr
	closed atomic.Bool
}

// NetConn is the wrapped connection (as *tls.Conn's), for the ingress's check that the client
// is still connected.
func (c *perIPConn) NetConn() net.Conn { return c.Conn }

// Close closes the connection and, the first time only, releases its slot. Later calls return
// the socket's own error for a second close and change no count.
func (c *perIPConn) Close() error {
	if !c.closed.CompareAndSwap(false, true) {
		return c.Conn.Close()
	}
	err := c.Conn.Close()
	c.l.release(c.ip) // after the socket is closed: the count never undercounts open sockets
	return err
}

// remoteIP is c's client address, IPv4-mapped IPv6 unmapped and any zone dropped; ok is false
// when c has no TCP remote address (or an unspecified one).
func remoteIP(c net.Conn) (netip.Addr, bool) {
	a, ok := c.RemoteAddr().(*net.TCPAddr)
	if !ok || a == nil {
		return netip.Addr{}, false
	}
	ip, ok := netip.AddrFromSlice(a.IP)
	if !ok {
		return netip.Addr{}, false
	}
	ip = ip.Unmap().WithZone("")
	if ip.IsUnspecified() {
		return netip.Addr{}, false
	}
	return ip, true
}
