package replog

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/wasmpod/wasmpod/cluster/internal/mtls"
)

// One TCP port carries Raft, leader forwarding and the other stream kinds: the dialer writes
// one byte saying which. With a TLS identity the byte, and everything after it, travels inside
// a mutual TLS 1.3 session whose peer is a verified current member: a stranger's connection
// ends in the handshake, before a byte of any stream is decoded.
const (
	connRaft byte = 'R'
	connDo   byte = 'D' // a command forwarded to the leader (Log.Do)
)

// handshakeTimeout bounds the TLS handshake and the kind byte of an accepted connection: a
// connection that says nothing in this time is closed.
const handshakeTimeout = 5 * time.Second

type mux struct {
	ln        net.Listener
	advertise net.Addr
	raftCh    chan net.Conn
	done      chan struct{}
	once      sync.Once
	wg        sync.WaitGroup

	// streams serve the other connection kinds (forwarding, blob transfer); each
	// runs on its own goroutine, and close closes the connections still open.
	streams map[byte]func(net.Conn)
	connMu  sync.Mutex
	conns   map[net.Conn]struct{}

	dialer Dialer // TLS identity (nil: plain TCP, an insecure cluster)
}

func newMux(ln net.Listener, advertise net.Addr, streams map[byte]func(net.Conn), d Dialer) *mux {
	m := &mux{ln: ln, advertise: advertise, raftCh: make(chan net.Conn), done: make(chan struct{}),
		conns: map[net.Conn]struct{}{}, dialer: d}
	m.streams = streams
	m.wg.Add(1)
	go m.accept()
	return m
}

func (m *mux) accept() {
	defer m.wg.Done()
	for {
		c, err := m.ln.Accept()
		if err != nil {
			select {
			case <-m.done:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			time.Sleep(20 * time.Millisecond)
			continue
		}
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			_ = c.SetDeadline(time.Now().Add(handshakeTimeout))
			if id := m.dialer.TLS; id != nil {
				tc := id.Server(c)
				ctx, cancel := context.WithTimeout(context.Background(), handshakeTimeout)
				err := tc.HandshakeContext(ctx)
				cancel()
				if err != nil {
					c.Close()
					return
				}
				c = tc
			}
			var b [1]byte
			if _, err := c.Read(b[:]); err != nil {
				c.Close()
				return
			}
			_ = c.SetDeadline(time.Time{})
			ch := m.raftCh
			switch b[0] {
			case connRaft:
			default:
				h, ok := m.streams[b[0]]
				if !ok {
					c.Close()
					return
				}
				if !m.track(c) {
					c.Close()
					return
				}
				defer m.untrack(c)
				h(c)
				return
			}
			select {
			case ch <- c:
			case <-m.done:
				c.Close()
			}
		}()
	}
}

func (m *mux) track(c net.Conn) bool {
	m.connMu.Lock()
	defer m.connMu.Unlock()
	select {
	case <-m.done:
		return false
	default:
	}
	m.conns[c] = struct{}{}
	return true
}

func (m *mux) untrack(c net.Conn) {
	m.connMu.Lock()
	delete(m.conns, c)
	m.connMu.Unlock()
	c.Close()
}

func (m *mux) close() {
	m.once.Do(func() {
		m.connMu.Lock()
		close(m.done)
		for c := range m.conns {
			c.Close()
		}
		m.connMu.Unlock()
		m.ln.Close()
	})
	m.wg.Wait()
}

// Dialer opens connections to other nodes' Raft/RPC ports: mutual TLS with the cluster
// identity, or plain TCP when TLS is nil (an insecure cluster).
type Dialer struct {
	TLS *mtls.Identity
}

// Dial opens a connection of the given kind to a node's Raft/RPC port; timeout bounds the
// connect, the TLS handshake and the kind byte.
func (d Dialer) Dial(addr string, kind byte, timeout time.Duration) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(timeout))
	if d.TLS != nil {
		tc := d.TLS.Client(c)
		if err := tc.Handshake(); err != nil {
			c.Close()
			return nil, err
		}
		c = tc
	}
	if _, err := c.Write([]byte{kind}); err != nil {
		c.Close()
		return nil, err
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}

// raftLayer is the raft.StreamLayer view of the mux.
type raftLayer struct{ m *mux }

func (l raftLayer) Accept() (net.Conn, error) {
	select {
	case c := <-l.m.raftCh:
		return c, nil
	case <-l.m.done:
		return nil, net.ErrClosed
	}
}
func (l raftLayer) Close() error   { return nil } // the mux owns the listener
func (l raftLayer) Addr() net.Addr { return l.m.advertise }
func (l raftLayer) Dial(a raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return l.m.dialer.Dial(string(a), connRaft, timeout)
}
