package peerhttp_test

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/cluster"
	"github.com/wasmpod/wasmpod/cluster/scatter"
	"github.com/wasmpod/wasmpod/internal/peerhttp"
)

type echoLeaf struct{}

func (echoLeaf) Call(_ context.Context, _ scatter.RequestID, in, dst []byte) ([]byte, error) {
	return append(dst, in...), nil
}

// An outsider without a key opens more idle TCP connections to the scatter endpoint than the
// server has connection slots. They must not take the slots (only connections that completed
// the mutual TLS handshake do), so another member still gets its answer; and every one of
// them is closed by the handshake deadline (5 s), not kept for the server's read timeout.
func TestScatterEndpointSurvivesIdleConnectionFlood(t *testing.T) {
	cfg := func(name string, join ...string) cluster.Config {
		c := cluster.DefaultConfig()
		c.NodeName, c.BindAddr, c.RaftAddr, c.Join = name, "127.0.0.1:0", "127.0.0.1:0", join
		c.GossipKey = []byte("flood-key-flood-key-flood-key-32")
		c.Gossip.Profile = "local"
		return c
	}
	start := func(c cluster.Config) *cluster.Node {
		n, err := cluster.Start(c)
		if err != nil {
			t.Fatalf("start %s: %v", c.NodeName, err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = n.Shutdown(ctx)
		})
		return n
	}
	member := start(cfg("a"))
	server := start(cfg("b", member.GossipAddr()))
	for deadline := time.Now().Add(30 * time.Second); len(member.Members()) < 2 || len(server.Members()) < 2; {
		if time.Now().After(deadline) {
			t.Fatal("the two nodes did not see each other")
		}
		time.Sleep(20 * time.Millisecond)
	}

	ep, err := scatter.NewEndpoint(scatter.DefaultEndpointConfig())
	if err != nil {
		t.Fatal(err)
	}
	if err := ep.Register("s", echoLeaf{}); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// 1,000 slots rather than the default 16 Ki, so that the flood is 1,500 connections, not
	// 17,000: the same exhaustion at a size a test can open in a second.
	const slots, flood = 1000, 1500
	sc := peerhttp.DefaultConfig()
	sc.Concurrency = slots
	srv := peerhttp.NewServer(ep, sc)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(server.SecureListener(ln)) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})

	// The outsider: 20 source addresses (127.0.0.1-20, the first also the member's), none of
	// which sends a byte.
	var conns []net.Conn
	var dialed []time.Time
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	for i := range flood {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+i%20))}, Timeout: 5 * time.Second}
		c, err := d.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatalf("flood connection %d: %v", i, err)
		}
		conns = append(conns, c)
		dialed = append(dialed, time.Now())
	}
	time.Sleep(200 * time.Millisecond) // let the server accept them all

	pc := scatter.DefaultPeerConfig()
	pc.Dial = member.DialMember
	p, err := scatter.NewFastHTTPPeer(ln.Addr().String(), pc)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	out, err := p.Leaf("s").Call(ctx, scatter.RequestID{1}, []byte("ping"), nil)
	if err != nil {
		t.Fatalf("a member's call during the flood: %v", err)
	}
	if string(out) != "ping" {
		t.Fatalf("a member's call during the flood: %q", out)
	}

	// Every flood connection is closed by the server by the handshake deadline (with slack for
	// a loaded machine), long before the server's 30 s read timeout.
	for i, c := range conns {
		_ = c.SetReadDeadline(dialed[i].Add(5*time.Second + 3*time.Second))
		_, err := c.Read(make([]byte, 1))
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("flood connection %d still open %v after it was made", i, time.Since(dialed[i]).Round(time.Millisecond))
		}
		if err == nil {
			t.Fatalf("flood connection %d: the server sent bytes to a client that sent none", i)
		}
		if !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("flood connection %d: %v", i, err)
		}
	}
	t.Logf("all %d flood connections closed %v after the last was made", flood, time.Since(dialed[flood-1]).Round(time.Millisecond))
}
