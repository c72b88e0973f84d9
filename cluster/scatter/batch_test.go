package scatter_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/wasmpod/wasmpod/cluster/scatter"
	"github.com/wasmpod/wasmpod/internal/peerhttp"
)

// countingPeer serves an endpoint over fasthttp and counts the requests by kind. With old set,
// it answers as a node of the previous release (main a445bb1) did: every path through
// Endpoint.Handle (a batch path is malformed there: 400) and no HeaderFeatures.
type countingPeer struct {
	ep            *scatter.Endpoint
	old           atomic.Bool
	single, batch atomic.Int64
	cancels       atomic.Int64
	addr          string
	// onCancel, when set before the first request, gets the shard names of each batched
	// cancellation.
	onCancel func(names []string)
}

func newCountingPeer(t *testing.T, ep *scatter.Endpoint) *countingPeer {
	t.Helper()
	c := &countingPeer{ep: ep}
	h := peerhttp.Handler(ep)
	srv := &fasthttp.Server{Handler: func(rc *fasthttp.RequestCtx) {
		switch {
		case string(rc.Request.Header.Peek(scatter.HeaderCancel)) == "1":
			c.cancels.Add(1)
			if c.onCancel != nil && string(rc.Path()) == scatter.PathBatch {
				c.onCancel(batchNames(rc.PostBody()))
			}
		case string(rc.Path()) == scatter.PathBatch:
			c.batch.Add(1)
		default:
			c.single.Add(1)
		}
		if !c.old.Load() {
			h(rc)
			return
		}
		status, out := ep.Handle(context.Background(), scatter.WireRequest{
			Path:      rc.Path(),
			RequestID: rc.Request.Header.Peek(scatter.HeaderRequestID),
			Budget:    rc.Request.Header.Peek(scatter.HeaderBudget),
			Body:      rc.PostBody(),
			Cancel:    string(rc.Request.Header.Peek(scatter.HeaderCancel)) == "1",
		}, nil)
		rc.SetStatusCode(status)
		rc.SetBody(out)
	}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { srv.Serve(ln) })
	t.Cleanup(func() { srv.Shutdown(); wg.Wait() })
	c.addr = ln.Addr().String()
	return c
}

// batchNames reads the shard names of a batched request's body: a count, then each name
// after its length (two bytes each, little-endian).
func batchNames(body []byte) []string {
	var names []string
	if len(body) < 2 {
		return nil
	}
	n := int(binary.LittleEndian.Uint16(body))
	body = body[2:]
	for range n {
		if len(body) < 2 {
			return names
		}
		l := int(binary.LittleEndian.Uint16(body))
		if len(body) < 2+l {
			return names
		}
		names = append(names, string(body[2:2+l]))
		body = body[2+l:]
	}
	return names
}

func (c *countingPeer) counts() (single, batch int64) { return c.single.Load(), c.batch.Load() }

// okLeaf answers a constant.
type okLeaf uint64

func (v okLeaf) Call(_ context.Context, _ scatter.RequestID, _, dst []byte) ([]byte, error) {
	return binary.LittleEndian.AppendUint64(dst, uint64(v)), nil
}

// TestBatchPerPeer: once a peer's answers advertise the batch feature, a request sends it one
// batched request for all its shards; a peer of the previous release keeps getting one request
// per shard; a peer that turns into one (a rollback at the same address) refuses the batch and
// its shards are retried one by one within the same request, with no part missing.
func TestBatchPerPeer(t *testing.T) {
	k := newKit(t)
	merge := k.module(t, "merge")
	const perPeer = 4
	peers := make([]*countingPeer, 2)
	var shards []scatter.Shard
	var want uint64
	for p := range peers {
		ep, err := scatter.NewEndpoint(scatter.DefaultEndpointConfig())
		if err != nil {
			t.Fatal(err)
		}
		defer ep.Close()
		peers[p] = newCountingPeer(t, ep)
		client, err := scatter.NewFastHTTPPeer(peers[p].addr, scatter.DefaultPeerConfig())
		if err != nil {
			t.Fatal(err)
		}
		defer client.Close()
		for i := range perPeer {
			name := fmt.Sprintf("p%d-s%d", p, i)
			v := uint64(100*p + i + 1)
			want += v
			if err := ep.Register(name, okLeaf(v)); err != nil {
				t.Fatal(err)
			}
			shards = append(shards, scatter.Shard{Name: name, Replicas: []scatter.Replica{{Node: fmt.Sprint("node", p), Leaf: client.Leaf(name)}}})
		}
	}
	peers[1].old.Store(true) // peer 1 runs the previous release
	cfg := scatter.DefaultConfig()
	cfg.Deadline, cfg.MergeReserve = 10*time.Second, time.Second // generous: a loaded machine
	g, err := scatter.New(shards, merge, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	do := func() {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		out, res, err := g.Do(ctx, []byte("batched"), nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.Missing != nil {
			t.Fatalf("missing %v", res.Missing)
		}
		if got := u64(t, out); got != want {
			t.Fatalf("merge = %d, want %d", got, want)
		}
	}
	// The first request learns the features: one request per shard, except that the shards
	// still unsent when the first answer arrives go in one batch (on a loaded machine the first
	// answer can come back before the last shard is sent).
	do()
	firstS, firstB := peers[0].counts()
	if firstS < 1 || firstB > 1 || (firstB == 0 && firstS != perPeer) || (firstB == 1 && firstS == perPeer) {
		t.Fatalf("first request, new peer: %d single, %d batch; want %d and 0, or 1..%d and 1", firstS, firstB, perPeer, perPeer-1)
	}
	if s, b := peers[1].counts(); s != perPeer || b != 0 {
		t.Fatalf("first request, old peer: %d single, %d batch; want %d, 0", s, b, perPeer)
	}
	const n = 5
	for range n {
		do()
	}
	if s, b := peers[0].counts(); s != firstS || b != firstB+n {
		t.Errorf("new peer: %d single, %d batch; want %d, %d", s, b, firstS, firstB+n)
	}
	if s, b := peers[1].counts(); s != perPeer*(n+1) || b != 0 {
		t.Errorf("old peer: %d single, %d batch; want %d, 0", s, b, perPeer*(n+1))
	}

	// Peer 0 is rolled back to the previous release: its next batch is refused (400), and the
	// shards are sent one by one in the same request; no later batch is sent to it.
	peers[0].old.Store(true)
	s0, b0 := peers[0].counts()
	do()
	do()
	if s, b := peers[0].counts(); s-s0 != 2*perPeer || b-b0 != 1 {
		t.Errorf("after rollback: %d single, %d batch; want %d, 1", s-s0, b-b0, 2*perPeer)
	}
}

// blockLeaf blocks until its call's deadline.
type blockLeaf struct{}

func (blockLeaf) Call(ctx context.Context, _ scatter.RequestID, _, dst []byte) ([]byte, error) {
	<-ctx.Done()
	return dst, fmt.Errorf("%w: %w", scatter.ErrDeadline, ctx.Err())
}

// TestBatchAnswersPerShard: the shards of one batch are settled as each answer arrives: a shard
// stuck on its peer is hedged to its other replica while the batch's other shards are already
// in, and a shard the peer does not serve fails over at once.
func TestBatchAnswersPerShard(t *testing.T) {
	k := newKit(t)
	merge := k.module(t, "merge")
	epA, _ := scatter.NewEndpoint(scatter.DefaultEndpointConfig())
	epB, _ := scatter.NewEndpoint(scatter.DefaultEndpointConfig())
	defer epA.Close()
	defer epB.Close()
	a, b := newCountingPeer(t, epA), newCountingPeer(t, epB)
	ca, _ := scatter.NewFastHTTPPeer(a.addr, scatter.DefaultPeerConfig())
	cb, _ := scatter.NewFastHTTPPeer(b.addr, scatter.DefaultPeerConfig())
	defer ca.Close()
	defer cb.Close()
	for _, r := range []struct {
		ep   *scatter.Endpoint
		name string
		leaf scatter.Leaf
	}{{epA, "fast1", okLeaf(1)}, {epA, "fast2", okLeaf(2)}, {epA, "stuck", blockLeaf{}}, {epB, "stuck", okLeaf(4)}, {epB, "moved", okLeaf(8)}} {
		if err := r.ep.Register(r.name, r.leaf); err != nil {
			t.Fatal(err)
		}
	}
	shards := []scatter.Shard{
		{Name: "fast1", Replicas: []scatter.Replica{{Node: "a", Leaf: ca.Leaf("fast1")}}},
		{Name: "fast2", Replicas: []scatter.Replica{{Node: "a", Leaf: ca.Leaf("fast2")}}},
		{Name: "stuck", Replicas: []scatter.Replica{{Node: "a", Leaf: ca.Leaf("stuck")}, {Node: "b", Leaf: cb.Leaf("stuck")}}},
		{Name: "moved", Replicas: []scatter.Replica{{Node: "a", Leaf: ca.Leaf("moved")}, {Node: "b", Leaf: cb.Leaf("moved")}}},
	}
	cfg := scatter.DefaultConfig()
	cfg.Deadline, cfg.MergeReserve = 10*time.Second, time.Second
	cfg.HedgeInitial = 20 * time.Millisecond
	g, err := scatter.New(shards, merge, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	// The first request learns the features (on a loaded machine the shards still unsent when
	// the first answer arrives may already go in a batch: TestBatchPerPeer); each later request
	// sends peer a exactly one batch.
	var firstB int64
	for i := range 3 {
		if i == 1 {
			_, firstB = a.counts()
		}
		out, res, err := g.Do(context.Background(), []byte("x"), nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.Missing != nil || u64(t, out) != 15 {
			t.Fatalf("request %d: sum %d, missing %v; want 15, none", i, u64(t, out), res.Missing)
		}
		if res.Hedges < 1 { // the stuck shard (a slow machine may hedge another one too)
			t.Errorf("request %d: %d hedges, want at least 1", i, res.Hedges)
		}
	}
	if _, n := a.counts(); n-firstB != 2 {
		t.Errorf("peer a got %d batches in requests 2 and 3, want 2", n-firstB)
	}
}
