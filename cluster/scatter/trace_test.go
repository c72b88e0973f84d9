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
