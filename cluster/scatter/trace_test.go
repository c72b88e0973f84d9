package scatter_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/wasmpod/wasmpod/cluster/scatter"
	"github.com/wasmpod/wasmpod/internal/spans"
)

// scriptLeaf is a remote-like (asynchronous) replica with a scripted behaviour.
type scriptLeaf struct {
	delay time.Duration
	err   error // returned after delay
	block bool  // wait for the deadline
}

func (l scriptLeaf) Call(ctx context.Context, _ scatter.RequestID, _, dst []byte) ([]byte, error) {
	if l.block {
		<-ctx.Done()
		return dst, fmt.Errorf("%w: %w", scatter.ErrDeadline, ctx.Err())
	}
	select {
	case <-time.After(l.delay):
	case <-ctx.Done():
		return dst, fmt.Errorf("%w: %w", scatter.ErrDeadline, ctx.Err())
	}
	if l.err != nil {
		return dst, l.err
	}
	return binary.LittleEndian.AppendUint64(dst, 1), nil
}

func attrs(s sdktrace.ReadOnlySpan) map[attribute.Key]string {
	m := map[attribute.Key]string{}
	for _, kv := range s.Attributes() {
		m[kv.Key] = kv.Value.String()
	}
	return m
}

// TestTraceSpans checks the span tree of one traced request over every kind of attempt: a
// local shard, a remote one (whose peer's span joins the trace through the traceparent
// header), a failover, a hedge and the primary it beat, a duplicate the peer dropped, and a
// shard that missed the deadline; then the merge. With tracing off, nothing is recorded.
func TestTraceSpans(t *testing.T) {
	k := newKit(t)
	merge := k.module(t, "merge")
	for _, transport := range []string{"fasthttp", "nethttp"} {
		t.Run(transport, func(t *testing.T) {
			exp := tracetest.NewInMemoryExporter()
			tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
			defer spans.Install(tp)()

			ep, err := scatter.NewEndpoint(scatter.DefaultEndpointConfig())
			if err != nil {
				t.Fatal(err)
			}
			defer ep.Close()
			if err := ep.Register("remote", scatter.NewModuleLeaf(k.module(t, transport+"-remote"))); err != nil {
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
			local := scatter.NewModuleLeaf(k.module(t, transport+"-local"))
			shards := []scatter.Shard{
				{Name: "local", Replicas: []scatter.Replica{{Leaf: local}}},
				{Name: "remote", Replicas: []scatter.Replica{{Node: "peer", Leaf: peer.Leaf("remote")}}},
				{Name: "failover", Replicas: []scatter.Replica{{Node: "a", Leaf: scriptLeaf{err: fmt.Errorf("%w: boom", scatter.ErrRemote)}}, {Leaf: local}}},
				{Name: "hedged", Replicas: []scatter.Replica{{Node: "a", Leaf: scriptLeaf{delay: 150 * time.Millisecond}}, {Node: "b", Leaf: scriptLeaf{delay: time.Millisecond}}}},
				{Name: "dup", Replicas: []scatter.Replica{{Node: "b", Leaf: scriptLeaf{err: fmt.Errorf("%w: seen", scatter.ErrDuplicate)}}}},
				{Name: "slow", Replicas: []scatter.Replica{{Node: "b", Leaf: scriptLeaf{block: true}}}},
			}
			cfg := scatter.DefaultConfig()
			cfg.Deadline = 300 * time.Millisecond
			cfg.MergeReserve = 100 * time.Millisecond
			cfg.HedgeInitial = 20 * time.Millisecond
			g, err := scatter.New(shards, merge, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer g.Close()
			_, res, err := g.Do(context.Background(), []byte("x"), nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(res.Missing, ","); got != "dup,slow" {
				t.Fatalf("missing %q, want dup,slow", got)
			}
			g.Close() // waits for the attempts still running, so every span has ended

			var root sdktrace.ReadOnlySpan
			outcomes := map[string][]string{} // shard -> reason:outcome of its attempts
			var attempts, serves, merges []sdktrace.ReadOnlySpan
			for _, s := range exp.GetSpans().Snapshots() {
				switch s.Name() {
				case "scatter":
					root = s
				case "scatter.attempt":
					attempts = append(attempts, s)
					a := attrs(s)
					outcomes[a["wasmpod.scatter.shard"]] = append(outcomes[a["wasmpod.scatter.shard"]],
						a["wasmpod.scatter.reason"]+":"+a["wasmpod.scatter.outcome"])
				case "scatter.serve":
					serves = append(serves, s)
				case "scatter.merge":
					merges = append(merges, s)
				}
			}
			if root == nil || len(merges) != 1 || len(serves) != 1 {
				t.Fatalf("root %v, %d merges, %d serves; want one each", root != nil, len(merges), len(serves))
			}
			for _, s := range append(append(attempts, merges...), serves...) {
				if s.SpanContext().TraceID() != root.SpanContext().TraceID() {
					t.Fatalf("%s is in another trace", s.Name())
				}
			}
			for _, s := range append(attempts, merges...) {
				if s.Parent().SpanID() != root.SpanContext().SpanID() {
					t.Fatalf("%s %v is not a child of the request's span", s.Name(), attrs(s))
				}
			}
			for _, o := range outcomes {
				sort.Strings(o)
			}
			want := map[string]string{
				"local":    "primary:won",
				"remote":   "primary:won",
				"failover": "failover:won primary:failed",
				"hedged":   "hedge:won primary:lost",
				"dup":      "primary:dropped_duplicate",
				"slow":     "primary:missed_deadline",
			}
			for shard, w := range want {
				if got := strings.Join(outcomes[shard], " "); got != w {
					t.Errorf("shard %s attempts %q, want %q", shard, got, w)
				}
			}
			// The peer's span is a child of the remote attempt's span.
			var remote sdktrace.ReadOnlySpan
			for _, s := range attempts {
				if attrs(s)["wasmpod.scatter.shard"] == "remote" {
					remote = s
				}
			}
			if serves[0].Parent().SpanID() != remote.SpanContext().SpanID() || !serves[0].Parent().IsRemote() {
				t.Fatalf("the peer's span's parent is %v, want the remote attempt %v", serves[0].Parent().SpanID(), remote.SpanContext().SpanID())
			}
			if a := attrs(root); a["wasmpod.scatter.partial"] != "true" || a["wasmpod.scatter.missing"] != `["dup","slow"]` {
				t.Fatalf("request span attributes %v", a)
			}
			var missedEvents int
			for _, ev := range root.Events() {
				if ev.Name == "shard missed the deadline" {
					missedEvents++
				}
			}
			if missedEvents != 1 {
				t.Fatalf("%d missed-deadline events, want 1 (slow)", missedEvents)
			}

			// Off: nothing recorded.
			exp.Reset()
			spans.Install(nil)
			g2, err := scatter.New(shards[:3], merge, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := g2.Do(context.Background(), []byte("x"), nil); err != nil {
				t.Fatal(err)
			}
			g2.Close()
			if n := len(exp.GetSpans()); n != 0 {
				t.Fatalf("%d spans with tracing off", n)
			}
		})
	}
}

// TestTraceBatchSpans: the first attempts of several shards on one peer go as one batched
// request, whose span "scatter.batch" (under the request's) is the parent of those shards'
// attempt spans and, through the batch's traceparent header, of each shard's serve span on the
// peer. A shard that fails in the batch fails over under the request's span as usual.
func TestTraceBatchSpans(t *testing.T) {
	k := newKit(t)
	merge := k.module(t, "merge")
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer spans.Install(tp)()

	ep, err := scatter.NewEndpoint(scatter.DefaultEndpointConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer ep.Close()
	for name, leaf := range map[string]scatter.Leaf{"b1": okLeaf(1), "b2": okLeaf(2), "bad": scriptLeaf{err: fmt.Errorf("%w: boom", scatter.ErrRemote)}} {
		if err := ep.Register(name, leaf); err != nil {
			t.Fatal(err)
		}
	}
	peer := newCountingPeer(t, ep)
	client, err := scatter.NewFastHTTPPeer(peer.addr, scatter.DefaultPeerConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	shards := []scatter.Shard{
		{Name: "b1", Replicas: []scatter.Replica{{Node: "p", Leaf: client.Leaf("b1")}}},
		{Name: "b2", Replicas: []scatter.Replica{{Node: "p", Leaf: client.Leaf("b2")}}},
		{Name: "bad", Replicas: []scatter.Replica{{Node: "p", Leaf: client.Leaf("bad")}, {Node: "q", Leaf: okLeaf(4)}}},
	}
	cfg := scatter.DefaultConfig()
	cfg.Deadline, cfg.MergeReserve = 10*time.Second, time.Second // generous: a loaded machine
	cfg.NoHedge = true                                           // one attempt per replica, in order
	g, err := scatter.New(shards, merge, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	do := func(ctx context.Context) {
		t.Helper()
		out, res, err := g.Do(ctx, []byte("x"), nil)
		if err != nil || res.Missing != nil || u64(t, out) != 7 {
			t.Fatalf("Do: sum %d, missing %v, %v; want 7, none", u64(t, out), res.Missing, err)
		}
	}
	// The first request learns that the peer serves batches from its first answer: the
	// shards sent before that answer went one by one, any sent after it in a batch.
	do(context.Background())
	s0, b0 := peer.counts()
	if s0 < 1 || s0+b0 > 3 {
		t.Fatalf("first request: %d single, %d batch; want at least 1 single, 3 requests at most", s0, b0)
	}
	ctx, test := spans.Start(context.Background(), "test", 0)
	do(ctx)
	test.End()
	if s, b := peer.counts(); s != s0 || b != b0+1 {
		t.Fatalf("second request: %d single, %d batch in all; want %d, %d (one batch more)", s, b, s0, b0+1)
	}
	g.Close() // waits for the attempts, so every span has ended

	tid := test.SpanContext().TraceID()
	var root, batch sdktrace.ReadOnlySpan
	var attempts, serves []sdktrace.ReadOnlySpan
	for _, s := range exp.GetSpans().Snapshots() {
		if s.SpanContext().TraceID() != tid {
			continue
		}
		switch s.Name() {
		case "scatter":
			root = s
		case "scatter.batch":
			if batch != nil {
				t.Fatal("two scatter.batch spans for one peer")
			}
			batch = s
		case "scatter.attempt":
			attempts = append(attempts, s)
		case "scatter.serve":
			serves = append(serves, s)
		}
	}
	if root == nil || batch == nil {
		t.Fatalf("request span %v, batch span %v; want both", root != nil, batch != nil)
	}
	if batch.Parent().SpanID() != root.SpanContext().SpanID() {
		t.Fatal("the batch span is not a child of the request's span")
	}
	if a := attrs(batch); a["wasmpod.scatter.shards"] != "3" || a["wasmpod.scatter.peer"] != peer.addr || a["wasmpod.scatter.node"] != "p" {
		t.Fatalf("batch span attributes %v", a)
	}
	got := map[string][]string{} // shard -> parent:reason:outcome
	for _, s := range attempts {
		a := attrs(s)
		parent := "other"
		switch s.Parent().SpanID() {
		case batch.SpanContext().SpanID():
			parent = "batch"
		case root.SpanContext().SpanID():
			parent = "request"
		}
		shard := a["wasmpod.scatter.shard"]
		got[shard] = append(got[shard], parent+":"+a["wasmpod.scatter.reason"]+":"+a["wasmpod.scatter.outcome"])
	}
	for _, o := range got {
		sort.Strings(o)
	}
	want := map[string]string{
		"b1":  "batch:primary:won",
		"b2":  "batch:primary:won",
		"bad": "batch:primary:failed request:failover:won",
	}
	for shard, w := range want {
		if g := strings.Join(got[shard], " "); g != w {
			t.Errorf("shard %s attempts %q, want %q", shard, g, w)
		}
	}
	if len(serves) != 3 {
		t.Fatalf("%d serve spans on the peer, want 3 (one per shard of the batch)", len(serves))
	}
	for _, s := range serves {
		a := attrs(s)
		if s.Parent().SpanID() != batch.SpanContext().SpanID() || !s.Parent().IsRemote() || a["wasmpod.scatter.batch"] != "true" {
			t.Errorf("serve span of %s: parent %v (remote %v), attributes %v; want the batch span %v", a["wasmpod.scatter.shard"],
				s.Parent().SpanID(), s.Parent().IsRemote(), a, batch.SpanContext().SpanID())
		}
		if failed := s.Status().Code.String() == "Error"; failed != (a["wasmpod.scatter.shard"] == "bad") {
			t.Errorf("serve span of %s: status %v", a["wasmpod.scatter.shard"], s.Status())
		}
	}
}
