package replog

import (
	"io"
	"net"
	"sync"
	"time"
)

// Pool keeps idle connections of one stream kind to other nodes for reuse, so that the
// operations of a busy node (forwarded renewals and queue commands, blob transfers) pay the
// mutual TLS handshake once per connection rather than once per operation. A connection goes
// back with Put only when its stream is in step (the request answered in full). Safe for
// concurrent use.
type Pool struct {
	d       Dialer
	kind    byte
	maxIdle int           // per address
	ttl     time.Duration // an idle connection older than this is closed, not reused

	mu     sync.Mutex
	idle   map[string][]pooledConn
	closed bool
}

type pooledConn struct {
	c     net.Conn
	since time.Time
}

// NewPool returns a pool of connections of kind opened with d. ttl must be shorter than the
// serving side's idle timeout, so that a pooled connection is rarely found closed.
func NewPool(d Dialer, kind byte, maxIdle int, ttl time.Duration) *Pool {
	return &Pool{d: d, kind: kind, maxIdle: maxIdle, ttl: ttl, idle: map[string][]pooledConn{}}
}

// Get returns an idle connection to addr, or a new one (dialed within timeout). reused says
// which: a reused connection may have been closed by the peer meanwhile, and a request that
// fails on it at once may be retried on a new one.
func (p *Pool) Get(addr string, timeout time.Duration) (c net.Conn, reused bool, err error) {
	p.mu.Lock()
	for list := p.idle[addr]; len(list) > 0; list = p.idle[addr] {
		pc := list[len(list)-1]
		p.idle[addr] = list[:len(list)-1]
		if time.Since(pc.since) < p.ttl {
			p.mu.Unlock()
			return pc.c, true, nil
		}
		pc.c.Close()
	}
	p.mu.Unlock()
	c, err = p.d.Dial(addr, p.kind, timeout)
	return c, false, err
}

// Put returns a connection whose stream is in step; it is closed instead when the pool is
// full or closed.
func (p *Pool) Put(addr string, c net.Conn) {
	_ = c.SetDeadline(time.Time{})
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || len(p.idle[addr]) >= p.maxIdle {
		c.Close()
		return
	}
	p.idle[addr] = append(p.idle[addr], pooledConn{c: c, since: time.Now()})
}

// Close closes every idle connection; later Puts close theirs. Idempotent.
func (p *Pool) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for a, list := range p.idle {
		for _, pc := range list {
			pc.c.Close()
		}
		delete(p.idle, a)
	}
}

// LimitedReader reads at most N bytes from R; Reset allows N more. A connection that serves
// one request after another bounds each request with it.
type LimitedReader struct {
	R io.Reader
	N int64
}

func (l *LimitedReader) Read(p []byte) (int, error) {
	if l.N <= 0 {
		return 0, ErrTooLarge
	}
	if int64(len(p)) > l.N {
		p = p[:l.N]
	}
	n, err := l.R.Read(p)
	l.N -= int64(n)
	return n, err
}
