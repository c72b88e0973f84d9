package scatter_test

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/cluster/internal/mtls"
	"github.com/wasmpod/wasmpod/cluster/scatter"
	"github.com/wasmpod/wasmpod/internal/peerhttp"
	"github.com/wasmpod/wasmpod/internal/peerhttp/tlsaccept"
)

// gateLeaf answers the first 8 bytes of its input; while hold is set it first waits until
// `want` calls are inside it at once, so that a warm-up opens exactly that many connections.
type gateLeaf struct {
	mu      sync.Mutex
	cond    *sync.Cond
	inside  int
	want    int
	holding bool
}

func (g *gateLeaf) Call(_ context.Context, _ scatter.RequestID, in, dst []byte) ([]byte, error) {
	g.mu.Lock()
	if g.holding {
		g.inside++
		if g.inside >= g.want {
			g.cond.Broadcast()
		}
		for g.holding && g.inside < g.want {
			g.cond.Wait()
		}
	}
	g.mu.Unlock()
	return append(dst, in[:8]...), nil
}

// countingListener counts accepted TCP connections (each is one TLS handshake on the server).
type countingListener struct {
	net.Listener
	n atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// TestScatterPeerTLSReusesConnections: a warm fan-out over the cluster's mutual TLS dials no
// new connection and runs no new handshake, however the calls of later fan-outs interleave.
// The warm-up holds `width` calls inside the leaf at once, so the pool has exactly `width`
// connections; every later fan-out of at most `width` calls must be served by them. Counting
// is deterministic (no timing): a pool that closes connections after a call, after an error
// status or on a burst, or a client that redoes handshakes, fails it.
func TestScatterPeerTLSReusesConnections(t *testing.T) {
	ca, err := mtls.DeriveCA([]byte("scatter-test-key-scatter-test-key"), "t")
	if err != nil {
		t.Fatal(err)
	}
	ident := func(name string) *mtls.Identity {
		cert, err := ca.Issue(name, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		id, err := mtls.NewIdentity(name, ca.Cert, cert, func(string) bool { return true })
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	srvID, cliID := ident("srv"), ident("cli")

	const width, fanouts = 32, 50
	leaf := &gateLeaf{want: width, holding: true}
	leaf.cond = sync.NewCond(&leaf.mu)
	ep, err := scatter.NewEndpoint(scatter.DefaultEndpointConfig())
	if err != nil {
		t.Fatal(err)
	}
	if err := ep.Register("s", leaf); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl := &countingListener{Listener: ln}
	srv := peerhttp.NewServer(ep, peerhttp.DefaultConfig())
	go srv.Serve(tlsaccept.New(cl, srvID.ServerConfig(), tlsaccept.DefaultLimits()))
	defer srv.Shutdown(context.Background())

	var dials, handshakes, resumed atomic.Int64
	pc := scatter.DefaultPeerConfig()
	pc.Dial = func(ctx context.Context, addr string) (net.Conn, error) {
		dials.Add(1)
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		tc := cliID.Client(c)
		if err := tc.HandshakeContext(ctx); err != nil {
			c.Close()
			return nil, err
		}
		handshakes.Add(1)
		if tc.ConnectionState().DidResume {
			resumed.Add(1)
		}
		return tc, nil
	}
	p, err := scatter.NewFastHTTPPeer(ln.Addr().String(), pc)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	l := p.Leaf("s")

	var seq atomic.Uint64
	in := make([]byte, 1024)
	fanout := func() {
		var wg sync.WaitGroup
		for range width {
			wg.Go(func() {
				var id scatter.RequestID
				v := seq.Add(1)
				for k := range 8 {
					id[k] = byte(v >> (8 * k))
				}
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				if _, err := l.Call(ctx, id, in, nil); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
	}
	fanout() // warm: all width calls held inside the leaf at once, so width connections
	leaf.mu.Lock()
	leaf.holding = false
	leaf.cond.Broadcast()
	leaf.mu.Unlock()
	if got := dials.Load(); got != width {
		t.Fatalf("warm-up of %d calls held at once dialled %d connections, want %d", width, got, width)
	}
	d0, a0 := dials.Load(), cl.n.Load()
	for range fanouts {
		fanout()
	}
	if t.Failed() {
		return
	}
	if d, a := dials.Load()-d0, cl.n.Load()-a0; d != 0 || a != 0 {
		t.Errorf("%d warm fan-outs of %d calls dialled %d new connections (server accepted %d): a handshake per burst, want none",
			fanouts, width, d, a)
	}
	t.Logf("dials %d, handshakes %d (resumed %d), accepted %d", dials.Load(), handshakes.Load(), resumed.Load(), cl.n.Load())
}
