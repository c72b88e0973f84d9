package bench

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/cluster"
	"github.com/wasmpod/wasmpod/cluster/scatter"
	"github.com/wasmpod/wasmpod/internal/peerhttp"
)

// peerEcho is a leaf that answers the first 8 bytes of its input: the transport is measured,
// not a module.
type peerEcho struct{}

func (peerEcho) Call(_ context.Context, _ scatter.RequestID, in, dst []byte) ([]byte, error) {
	return append(dst, in[:8]...), nil
}

// BenchmarkScatterPeer measures one remote shard call (1 KiB in, 8 bytes out) between two
// cluster nodes in one process over loopback: the scatter client (fasthttp, pooled keep-alive)
// to another node's internal endpoint, plain TCP vs the cluster's mutual TLS (the connections
// are warm: what TLS costs per call, not per handshake). seq is one call at a time (latency),
// par 64 at once (throughput). BenchmarkCrossNode measures the same over three processes.
func BenchmarkScatterPeer(b *testing.B) {
	cfg := func(name string, join ...string) cluster.Config {
		c := cluster.DefaultConfig()
		c.NodeName, c.BindAddr, c.RaftAddr, c.Join = name, "127.0.0.1:0", "127.0.0.1:0", join
		c.GossipKey = []byte("bench-key-bench-key-bench-key-32")
		c.Gossip.Profile = "local"
		return c
	}
	a, err := cluster.Start(cfg("a"))
	if err != nil {
		b.Fatal(err)
	}
	defer a.Shutdown(context.Background())
	srvNode, err := cluster.Start(cfg("b", a.GossipAddr()))
	if err != nil {
		b.Fatal(err)
	}
	defer srvNode.Shutdown(context.Background())
	for deadline := time.Now().Add(30 * time.Second); len(a.Members()) < 2 || len(srvNode.Members()) < 2; {
		if time.Now().After(deadline) {
			b.Fatal("the two nodes did not see each other")
		}
		time.Sleep(20 * time.Millisecond)
	}
	ep, err := scatter.NewEndpoint(scatter.DefaultEndpointConfig())
	if err != nil {
		b.Fatal(err)
	}
	if err := ep.Register("s", peerEcho{}); err != nil {
		b.Fatal(err)
	}
	var seq atomic.Uint64 // request ids: unique across every call (the endpoint drops duplicates)
	in := make([]byte, 1024)
	call := func(b *testing.B, leaf scatter.Leaf) {
		var id scatter.RequestID
		v := seq.Add(1)
		for k := range 8 {
			id[k] = byte(v >> (8 * k))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := leaf.Call(ctx, id, in, nil); err != nil {
			b.Error(err)
		}
	}
	for _, mode := range []string{"plain", "tls"} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		srvLn := ln
		pc := scatter.DefaultPeerConfig()
		if mode == "tls" {
			srvLn = srvNode.SecureListener(ln)
			pc.Dial = a.DialMember
		}
		srv := peerhttp.NewServer(ep, peerhttp.DefaultConfig())
		go srv.Serve(srvLn)
		p, err := scatter.NewFastHTTPPeer(ln.Addr().String(), pc)
		if err != nil {
			b.Fatal(err)
		}
		leaf := p.Leaf("s")
		// Warm: connections (and their handshakes) before the timer, as many as par keeps in
		// flight. Warming one call at a time left one connection, so par/tls dialled (and
		// handshook) up to 63 connections inside its first timed run.
		for range 4 {
			var wg sync.WaitGroup
			for range 64 {
				wg.Go(func() { call(b, leaf) })
			}
			wg.Wait()
		}
		b.Run("seq/"+mode, func(b *testing.B) {
			b.ReportAllocs()
			for range b.N {
				call(b, leaf)
			}
		})
		b.Run("par/"+mode, func(b *testing.B) {
			b.SetParallelism(32) // 64 calls at once on 2 cores
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					call(b, leaf)
				}
			})
		})
		p.Close()
		_ = srv.Shutdown(context.Background())
	}
}
