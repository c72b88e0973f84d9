package scatter_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/cluster"
	"github.com/wasmpod/wasmpod/cluster/scatter"
	"github.com/wasmpod/wasmpod/internal/peerhttp"
	"github.com/wasmpod/wasmpod/internal/wasmbuild"
	"github.com/wasmpod/wasmpod/runtime"
)

// kit is an engine with benchleaf loaded: leaves that sum their input bytes into a u64, and a
// merge that sums the parts (missing ones count 0).
type kit struct {
	eng  *runtime.Engine
	wasm []byte
}

func newKit(t testing.TB) *kit {
	t.Helper()
	path := wasmbuild.Go(t, "../../plugins/benchleaf")
	wasm, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg := runtime.DefaultConfig()
	cfg.CacheDir = filepath.Join(wasmbuild.CacheDir(), "scatter-test-cache")
	eng, err := runtime.NewEngine(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close(context.Background()) })
	return &kit{eng: eng, wasm: wasm}
}

func (k *kit) module(t testing.TB, name string) *runtime.Module {
	t.Helper()
	cfg := runtime.DefaultModuleConfig(name)
	cfg.MaxMemoryPages = 1024
	m, err := k.eng.Load(context.Background(), k.wasm, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(context.Background(), runtime.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(context.Background()) })
	return m
}

func sumBytes(b []byte) uint64 {
	var s uint64
	for _, c := range b {
		s += uint64(c)
	}
	return s
}

func u64(t *testing.T, b []byte) uint64 {
	t.Helper()
	if len(b) != 8 {
		t.Fatalf("merge output %x: want 8 bytes", b)
	}
	return binary.LittleEndian.Uint64(b)
}

// fakeLeaf is a scripted replica: it fails, blocks until the deadline, or answers a constant.
type fakeLeaf struct {
	mode  string // "fail", "block", "ok"
	value uint64
	calls atomic.Int32
}

func (f *fakeLeaf) Call(ctx context.Context, _ scatter.RequestID, _, dst []byte) ([]byte, error) {
	f.calls.Add(1)
	switch f.mode {
	case "fail":
		return dst, errors.New("scripted failure")
	case "block":
		<-ctx.Done()
		return dst, fmt.Errorf("%w: %w", scatter.ErrDeadline, ctx.Err())
	}
	return binary.LittleEndian.AppendUint64(dst, f.value), nil
}

func TestGatherLocal(t *testing.T) {
	k := newKit(t)
	merge := k.module(t, "merge")
	req := []byte("the quick brown fox jumps over the lazy dog")
	for _, n := range []int{1, 3, 16} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			shards := make([]scatter.Shard, n)
			for i := range shards {
				shards[i] = scatter.Shard{Name: fmt.Sprintf("s%d", i), Replicas: []scatter.Replica{{Leaf: scatter.NewModuleLeaf(k.module(t, fmt.Sprintf("leaf%d-%d", n, i)))}}}
			}
			g, err := scatter.New(shards, merge, scatter.DefaultConfig())
			if err != nil {
				t.Fatal(err)
			}
			defer g.Close()
			for range 20 { // reuses pooled states
				out, res, err := g.Do(context.Background(), req, nil)
				if err != nil {
					t.Fatal(err)
				}
				if res.Partial || res.Missing != nil {
					t.Fatalf("partial %v %v", res.Partial, res.Missing)
				}
				if got, want := u64(t, out), uint64(n)*sumBytes(req); got != want {
					t.Fatalf("merge = %d, want %d", got, want)
				}
			}
		})
	}
}

func TestGatherReplicas(t *testing.T) {
	k := newKit(t)
	merge := k.module(t, "merge")
	local := scatter.NewModuleLeaf(k.module(t, "leaf"))
	req := []byte{1, 2, 3}
	cfg := scatter.DefaultConfig()
	cfg.HedgeInitial = time.Millisecond
	cfg.Deadline = 10 * time.Second // generous: no assertion depends on timing (hedges: see below)

	// A closed local module: every call on it fails.
	closed := k.module(t, "closed")
	closed.Close(context.Background())
	broken := scatter.NewModuleLeaf(closed)
	deadA := &fakeLeaf{mode: "ok", value: 100}

	type rep struct {
		node string
		leaf scatter.Leaf
	}
	tests := []struct {
		name        string
		shards      [][]rep
		dead        []string
		noHedge     bool
		deadline    time.Duration
		wantSum     uint64
		wantMissing []string
		wantHedges  int
	}{
		{
			name:    "failover after an error",
			shards:  [][]rep{{{"a", &fakeLeaf{mode: "fail"}}, {"b", &fakeLeaf{mode: "ok", value: 7}}}},
			noHedge: true,
			wantSum: 7,
		},
		// No hedging where the test counts none: a failure slower than HedgeInitial (a loaded
		// machine under -race) would otherwise start one.
		{
			name:        "every replica fails",
			shards:      [][]rep{{{"", local}}, {{"a", &fakeLeaf{mode: "fail"}}, {"b", &fakeLeaf{mode: "fail"}}}},
			noHedge:     true,
			wantSum:     6,
			wantMissing: []string{"s1"},
		},
		{
			name:    "local primary fails over to remote",
			shards:  [][]rep{{{"", local}}, {{"", broken}, {"a", &fakeLeaf{mode: "ok", value: 5}}}},
			noHedge: true,
			wantSum: 11,
		},
		{
			name:    "dead node skipped",
			shards:  [][]rep{{{"a", deadA}, {"b", &fakeLeaf{mode: "ok", value: 9}}}},
			dead:    []string{"a"},
			wantSum: 9,
		},
		{
			name:        "every replica dead",
			shards:      [][]rep{{{"", local}}, {{"a", &fakeLeaf{mode: "ok", value: 1}}}},
			dead:        []string{"a"},
			wantSum:     6,
			wantMissing: []string{"s1"},
		},
		{
			name:       "hedge to a second replica",
			shards:     [][]rep{{{"a", &fakeLeaf{mode: "block"}}, {"b", &fakeLeaf{mode: "ok", value: 3}}}},
			wantSum:    3,
			wantHedges: 1,
		},
		{
			name:        "shard past the deadline is missing",
			shards:      [][]rep{{{"", local}}, {{"a", &fakeLeaf{mode: "block"}}}},
			deadline:    50 * time.Millisecond, // the blocked shard waits for it
			wantSum:     6,
			wantMissing: []string{"s1"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var shards []scatter.Shard
			for i, reps := range tc.shards {
				sh := scatter.Shard{Name: fmt.Sprintf("s%d", i)}
				for _, r := range reps {
					sh.Replicas = append(sh.Replicas, scatter.Replica{Node: r.node, Leaf: r.leaf})
				}
				shards = append(shards, sh)
			}
			c := cfg
			c.NoHedge = tc.noHedge
			if tc.deadline > 0 {
				c.Deadline = tc.deadline
			}
			g, err := scatter.New(shards, merge, c)
			if err != nil {
				t.Fatal(err)
			}
			defer g.Close()
			for _, n := range tc.dead {
				if !g.SetNodeAlive(n, false) {
					t.Fatalf("node %q unknown", n)
				}
			}
			out, res, err := g.Do(context.Background(), req, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := u64(t, out); got != tc.wantSum {
				t.Errorf("merge = %d, want %d", got, tc.wantSum)
			}
			if fmt.Sprint(res.Missing) != fmt.Sprint(tc.wantMissing) || res.Partial != (tc.wantMissing != nil) {
				t.Errorf("missing %v partial %v, want %v", res.Missing, res.Partial, tc.wantMissing)
			}
			if res.Hedges != tc.wantHedges {
				t.Errorf("hedges = %d, want %d", res.Hedges, tc.wantHedges)
			}
		})
	}
	if n := deadA.calls.Load(); n != 0 {
		t.Errorf("replica on the dead node called %d times", n)
	}
}

func TestGatherMembershipAndClose(t *testing.T) {
	k := newKit(t)
	merge := k.module(t, "merge")
	a, b := &fakeLeaf{mode: "ok", value: 1}, &fakeLeaf{mode: "ok", value: 2}
	g, err := scatter.New([]scatter.Shard{{Name: "s", Replicas: []scatter.Replica{{Node: "a", Leaf: a}, {Node: "b", Leaf: b}}}}, merge, scatter.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	events := make(chan cluster.MemberEvent, 2)
	events <- cluster.MemberEvent{Type: "update", Member: cluster.Member{Name: "a", State: cluster.MemberDead}}
	close(events)
	g.FollowMembership(context.Background(), events)
	out, _, err := g.Do(context.Background(), nil, nil)
	if err != nil || u64(t, out) != 2 {
		t.Fatalf("after a died: %x %v, want 2", out, err)
	}
	g.SyncMembers([]cluster.Member{{Name: "a", State: cluster.MemberAlive}})
	out, _, err = g.Do(context.Background(), nil, nil)
	if err != nil || u64(t, out) != 1 {
		t.Fatalf("after a came back: %x %v, want 1", out, err)
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := g.Do(context.Background(), nil, nil); !errors.Is(err, scatter.ErrClosed) {
		t.Fatalf("Do after Close: %v, want ErrClosed", err)
	}
}

func TestNewInvalid(t *testing.T) {
	k := newKit(t)
	merge := k.module(t, "merge")
	leaf := &fakeLeaf{mode: "ok"}
	bad := scatter.DefaultConfig()
	bad.MergeReserve = bad.Deadline
	tests := []struct {
		name   string
		shards []scatter.Shard
		merge  *runtime.Module
		cfg    scatter.Config
	}{
		{"no shards", nil, merge, scatter.DefaultConfig()},
		{"no replicas", []scatter.Shard{{Name: "s"}}, merge, scatter.DefaultConfig()},
		{"duplicate", []scatter.Shard{{Name: "s", Replicas: []scatter.Replica{{Leaf: leaf}}}, {Name: "s", Replicas: []scatter.Replica{{Leaf: leaf}}}}, merge, scatter.DefaultConfig()},
		{"nil merge", []scatter.Shard{{Name: "s", Replicas: []scatter.Replica{{Leaf: leaf}}}}, nil, scatter.DefaultConfig()},
		{"bad config", []scatter.Shard{{Name: "s", Replicas: []scatter.Replica{{Leaf: leaf}}}}, merge, bad},
	}
	for _, tc := range tests {
		if _, err := scatter.New(tc.shards, tc.merge, tc.cfg); !errors.Is(err, scatter.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", tc.name, err)
		}
	}
}

// serve runs ep on loopback over the named transport and returns its address.
func serve(t *testing.T, ep *scatter.Endpoint, transport string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	switch transport {
	case "fasthttp":
		srv := peerhttp.NewServer(ep, peerhttp.DefaultConfig())
		go func() { defer wg.Done(); srv.Serve(ln) }()
		t.Cleanup(func() { srv.Shutdown(context.Background()); wg.Wait() })
	default:
		srv := &http.Server{Handler: ep, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second}
		go func() { defer wg.Done(); srv.Serve(ln) }()
		t.Cleanup(func() { srv.Shutdown(context.Background()); wg.Wait() })
	}
	return ln.Addr().String()
}

func TestRemote(t *testing.T) {
	k := newKit(t)
	merge := k.module(t, "merge")
	req := []byte("remote shards sum their input")
	for _, transport := range []string{"fasthttp", "nethttp"} {
		t.Run(transport, func(t *testing.T) {
			ep, err := scatter.NewEndpoint(scatter.DefaultEndpointConfig())
			if err != nil {
				t.Fatal(err)
			}
			defer ep.Close()
			const n = 4
			for i := range n {
				if err := ep.Register(fmt.Sprintf("s%d", i), scatter.NewModuleLeaf(k.module(t, fmt.Sprintf("%s-leaf%d", transport, i)))); err != nil {
					t.Fatal(err)
				}
			}
			addr := serve(t, ep, transport)
			newPeer := scatter.NewFastHTTPPeer
			if transport == "nethttp" {
				newPeer = scatter.NewNetHTTPPeer
			}
			peer, err := newPeer(addr, scatter.DefaultPeerConfig())
			if err != nil {
				t.Fatal(err)
			}
			defer peer.Close()
			shards := make([]scatter.Shard, n+1)
			for i := range n {
				shards[i] = scatter.Shard{Name: fmt.Sprintf("s%d", i), Replicas: []scatter.Replica{{Node: "peer", Leaf: peer.Leaf(fmt.Sprintf("s%d", i))}}}
			}
			shards[n] = scatter.Shard{Name: "nowhere", Replicas: []scatter.Replica{{Node: "peer", Leaf: peer.Leaf("nowhere")}}}
			g, err := scatter.New(shards, merge, scatter.DefaultConfig())
			if err != nil {
				t.Fatal(err)
			}
			defer g.Close()
			for range 10 {
				out, res, err := g.Do(context.Background(), req, nil)
				if err != nil {
					t.Fatal(err)
				}
				if got, want := u64(t, out), n*sumBytes(req); got != want {
					t.Fatalf("merge = %d, want %d", got, want)
				}
				if fmt.Sprint(res.Missing) != "[nowhere]" {
					t.Fatalf("missing %v, want [nowhere]", res.Missing)
				}
			}

			// The same request id twice for one shard: the second is dropped.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			id := scatter.RequestID{1, 2, 3}
			if _, err := peer.Leaf("s0").Call(ctx, id, req, nil); err != nil {
				t.Fatal(err)
			}
			if _, err := peer.Leaf("s0").Call(ctx, id, req, nil); !errors.Is(err, scatter.ErrDuplicate) {
				t.Fatalf("duplicate: %v, want ErrDuplicate", err)
			}
			if _, err := peer.Leaf("s1").Call(ctx, id, req, nil); err != nil {
				t.Fatalf("same id, other shard: %v", err)
			}
			peer.Close()
			peer.Close()
			if _, err := peer.Leaf("s0").Call(ctx, scatter.RequestID{9}, req, nil); !errors.Is(err, scatter.ErrClosed) {
				t.Fatalf("after Close: %v, want ErrClosed", err)
			}
		})
	}
}

func TestEndpointServe(t *testing.T) {
	ep, err := scatter.NewEndpoint(scatter.DefaultEndpointConfig())
	if err != nil {
		t.Fatal(err)
	}
	if err := ep.Register("s", &fakeLeaf{mode: "ok", value: 4}); err != nil {
		t.Fatal(err)
	}
	if err := ep.Register("s", &fakeLeaf{}); !errors.Is(err, scatter.ErrInvalid) {
		t.Fatalf("second Register: %v", err)
	}
	if err := ep.Register("a/b", &fakeLeaf{}); !errors.Is(err, scatter.ErrInvalid) {
		t.Fatalf("Register with a slash: %v", err)
	}
	ctx := context.Background()
	tests := []struct {
		shard string
		id    scatter.RequestID
		want  error
	}{
		{"s", scatter.RequestID{1}, nil},
		{"s", scatter.RequestID{1}, scatter.ErrDuplicate},
		{"s", scatter.RequestID{2}, nil},
		{"t", scatter.RequestID{3}, scatter.ErrUnknownShard},
	}
	for _, tc := range tests {
		_, err := ep.Serve(ctx, tc.shard, tc.id, nil, nil)
		if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
			t.Errorf("Serve(%s, %x): %v, want %v", tc.shard, tc.id[:1], err, tc.want)
		}
	}
	ep.Close()
	ep.Close()
	if _, err := ep.Serve(ctx, "s", scatter.RequestID{7}, nil, nil); !errors.Is(err, scatter.ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
}

func TestEndpointDedupBounded(t *testing.T) {
	cfg := scatter.DefaultEndpointConfig()
	cfg.DedupEntries = 4
	ep, err := scatter.NewEndpoint(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ep.Register("s", &fakeLeaf{mode: "ok"})
	for i := range 10 {
		if _, err := ep.Serve(context.Background(), "s", scatter.RequestID{byte(i)}, nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	// Only the last 4 ids are remembered: the first is served again, the last is refused.
	if _, err := ep.Serve(context.Background(), "s", scatter.RequestID{0}, nil, nil); err != nil {
		t.Fatalf("forgotten id: %v", err)
	}
	if _, err := ep.Serve(context.Background(), "s", scatter.RequestID{9}, nil, nil); !errors.Is(err, scatter.ErrDuplicate) {
		t.Fatalf("remembered id: %v", err)
	}
}

func TestShardLatencies(t *testing.T) {
	k := newKit(t)
	merge := k.module(t, "merge")
	remote := &fakeLeaf{mode: "ok", value: 1}
	shards := []scatter.Shard{
		{Name: "local", Replicas: []scatter.Replica{{Leaf: scatter.NewModuleLeaf(k.module(t, "leaf"))}}},
		{Name: "remote", Replicas: []scatter.Replica{{Node: "n2", Leaf: remote}}},
	}
	cfg := scatter.DefaultConfig()
	cfg.Deadline = 10 * time.Second
	g, err := scatter.New(shards, merge, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if got := g.ShardLatencies(); len(got) != 2 || got[0].Samples != 0 || got[1].Samples != 0 || got[1].P99 != 0 {
		t.Fatalf("before any request: %+v", got)
	}
	const n = 200 // more than the 128-sample window
	for range n {
		if _, _, err := g.Do(context.Background(), []byte("x"), nil); err != nil {
			t.Fatal(err)
		}
	}
	got := g.ShardLatencies()
	if got[0].Shard != "local" || got[0].Samples != 0 {
		t.Errorf("local shard %+v: local attempts are not timed", got[0])
	}
	if r := got[1]; r.Shard != "remote" || r.Samples != 128 || r.P50 <= 0 || r.P99 < r.P50 {
		t.Errorf("remote shard %+v, want 128 samples (the window), 0 < p50 <= p99", r)
	}
}
