package scatter_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/cluster/scatter"
)

// endLeaf blocks until its context ends and reports how it ended.
type endLeaf struct{ ended chan error }

func (l *endLeaf) Call(ctx context.Context, _ scatter.RequestID, _, dst []byte) ([]byte, error) {
	<-ctx.Done()
	l.ended <- ctx.Err()
	return dst, fmt.Errorf("%w: %w", scatter.ErrDeadline, ctx.Err())
}

// TestCancelStopsShards: a root request cancelled by its caller (its client went away) stops
// its shards, the local one and the ones on a peer, over both transports: each ends cancelled,
// long before the request's 20 s deadline would have ended it.
func TestCancelStopsShards(t *testing.T) {
	k := newKit(t)
	merge := k.module(t, "merge")
	for _, transport := range []string{"fasthttp", "nethttp"} {
		t.Run(transport, func(t *testing.T) {
			ep, err := scatter.NewEndpoint(scatter.DefaultEndpointConfig())
			if err != nil {
				t.Fatal(err)
			}
			defer ep.Close()
			remote := &endLeaf{ended: make(chan error, 1)}
			if err := ep.Register("far", remote); err != nil {
				t.Fatal(err)
			}
			newPeer := scatter.NewFastHTTPPeer
			if transport == "nethttp" {
				newPeer = scatter.NewNetHTTPPeer
			}
			peer, err := newPeer(serve(t, ep, transport), scatter.DefaultPeerConfig())
			if err != nil {
				t.Fatal(err)
			}
			defer peer.Close()
			local := &endLeaf{ended: make(chan error, 1)}
			cfg := scatter.DefaultConfig()
			cfg.Deadline = 20 * time.Second
			cfg.NoHedge = true
			g, err := scatter.New([]scatter.Shard{
				{Name: "near", Replicas: []scatter.Replica{{Leaf: local}}},
				{Name: "far", Replicas: []scatter.Replica{{Node: "peer", Leaf: peer.Leaf("far")}}},
			}, merge, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer g.Close()

			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(300*time.Millisecond, cancel)
			if _, _, err := g.Do(ctx, []byte("q"), nil); err == nil {
				t.Fatal("a cancelled request merged without error")
			}
			// 10 s: half the deadline that would otherwise end the shards; far above a
			// cancellation's round trip on a loaded machine.
			for name, l := range map[string]*endLeaf{"local": local, "remote": remote} {
				select {
				case err := <-l.ended:
					if !errors.Is(err, context.Canceled) {
						t.Fatalf("%s shard ended with %v, want context.Canceled", name, err)
					}
				case <-time.After(10 * time.Second):
					t.Fatalf("%s shard still running 10 s after its root request was cancelled", name)
				}
			}
		})
	}
}

// TestCancelBeforeArrival: a cancellation that overtakes its request (a hedge, a slow
// connection) makes the peer drop the request when it arrives, as a duplicate.
func TestCancelBeforeArrival(t *testing.T) {
	ep, err := scatter.NewEndpoint(scatter.DefaultEndpointConfig())
	if err != nil {
		t.Fatal(err)
	}
	leaf := &endLeaf{ended: make(chan error, 1)}
	if err := ep.Register("s", leaf); err != nil {
		t.Fatal(err)
	}
	id := scatter.RequestID{7}
	r := scatter.WireRequest{Path: []byte(scatter.PathPrefix + "s"), RequestID: []byte(id.String()), Budget: []byte("1000000"), Cancel: true}
	if status, body := ep.Handle(context.Background(), r, nil); status != 200 {
		t.Fatalf("cancel: %d %s", status, body)
	}
	r.Cancel = false
	if status, body := ep.Handle(context.Background(), r, nil); status != 409 {
		t.Fatalf("the cancelled request ran anyway: %d %s", status, body)
	}
}

// signalLeaf tells started when it is called, then answers once release is closed.
type signalLeaf struct{ started, release chan struct{} }

func (l *signalLeaf) Call(_ context.Context, _ scatter.RequestID, _, dst []byte) ([]byte, error) {
	close(l.started)
	<-l.release
	return append(dst, "done"...), nil
}

// TestCancelBatchOutlivesCall: a batched call cancelled while in flight returns only once its
// cancellation has read the shard names, which the caller then reuses (a pooled request: the
// race the search example's kill test found). The cancellation's goroutine is made slow to
// start; the call's own answer does not wait for it. Before the fix the peer was told to cancel
// the names the caller had already overwritten (and -race reported the race).
func TestCancelBatchOutlivesCall(t *testing.T) {
	ep, err := scatter.NewEndpoint(scatter.DefaultEndpointConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer ep.Close()
	leaf := &signalLeaf{started: make(chan struct{}), release: make(chan struct{})}
	if err := ep.Register("a", leaf); err != nil {
		t.Fatal(err)
	}
	c := newCountingPeer(t, ep)
	var cancelled struct {
		sync.Mutex
		names []string
	}
	c.onCancel = func(names []string) {
		cancelled.Lock()
		cancelled.names = append(cancelled.names, names...)
		cancelled.Unlock()
	}
	peer, err := scatter.NewFastHTTPPeer(c.addr, scatter.DefaultPeerConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	scatter.SetCancelBatchHook(t, func() {
		close(leaf.release) // the call's answer is on its way
		time.Sleep(100 * time.Millisecond)
	})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-leaf.started
		cancel()
	}()
	shards := [][]byte{[]byte("a")}
	var got string
	if err := scatter.CallBatch(ctx, peer, scatter.RequestID{1}, shards, []byte("q"), func(_ int, part []byte, err error) {
		if err != nil {
			t.Errorf("answer: %v", err)
		}
		got = string(part)
	}); err != nil {
		t.Fatal(err)
	}
	if got != "done" {
		t.Fatalf("answer %q, want done", got)
	}
	shards[0] = []byte("z") // the caller's next request
	for deadline := time.Now().Add(10 * time.Second); ; {
		cancelled.Lock()
		names := append([]string(nil), cancelled.names...)
		cancelled.Unlock()
		if len(names) > 0 {
			if len(names) != 1 || names[0] != "a" {
				t.Fatalf("the peer was told to cancel %q, want [a]", names)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no cancellation reached the peer in 10 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
