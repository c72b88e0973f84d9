package scatter

import (
	"context"
	"errors"
	"sync/atomic"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/wasmpod/wasmpod/internal/spans"
)

// Tracing (internal/spans; off unless the host configured an OTLP endpoint). A traced request
// has the span "scatter" (a child of the caller's span, else a root the sampler decides on);
// under it, when it records, one span "scatter.attempt" per shard attempt and one
// "scatter.merge". An attempt says where it ran (wasmpod.scatter.locality local or remote,
// wasmpod.scatter.node), why it ran (wasmpod.scatter.reason primary, failover or hedge) and
// how it ended (wasmpod.scatter.outcome):
//
//	won              its part is in the answer
//	lost             it answered after another attempt of the shard had won
//	missed_deadline  the gather stopped waiting before it answered (the shard is missing unless
//	                 another attempt won)
//	dropped_duplicate the peer had already received this request for this shard
//	failed           it failed (the span's status has the error)
//
// A remote attempt carries its span's context to the peer in the traceparent header, where
// the endpoint's span "scatter.serve" (and the leaf's module call under it) joins the trace.
//
// The first attempts of several shards on one peer go as one batched request (batch.go): its
// span "scatter.batch" (a client span under the request's, naming the peer and the shards it
// carries) is the parent of those shards' attempt spans, each ended as its frame arrives, and
// its context goes to the peer in the batch's traceparent header, where each shard's
// "scatter.serve" span (wasmpod.scatter.batch true) is its child. A peer of an earlier release
// that refuses the batch ends the batch's attempts as failed with that reason, and the shards'
// version 1 attempts that follow are the request's children as usual.
//
// Every site is guarded by spans.On or by reqState.tr, which is nil unless the request records.

// Span attribute keys.
const (
	attrShard     = attribute.Key("wasmpod.scatter.shard")
	attrRequestID = attribute.Key("wasmpod.scatter.request_id")
	attrReplica   = attribute.Key("wasmpod.scatter.replica")
	attrNode      = attribute.Key("wasmpod.scatter.node")
	attrLocality  = attribute.Key("wasmpod.scatter.locality")
	attrReason    = attribute.Key("wasmpod.scatter.reason")
	attrOutcome   = attribute.Key("wasmpod.scatter.outcome")
	attrShards    = attribute.Key("wasmpod.scatter.shards")
	attrPartial   = attribute.Key("wasmpod.scatter.partial")
	attrMissing   = attribute.Key("wasmpod.scatter.missing")
	attrHedges    = attribute.Key("wasmpod.scatter.hedges")
	attrDuplicate = attribute.Key("wasmpod.scatter.duplicate")
	attrBatch     = attribute.Key("wasmpod.scatter.batch")
	attrPeer      = attribute.Key("wasmpod.scatter.peer")
)

// Outcomes of a shard attempt (wasmpod.scatter.outcome).
const (
	outcomeWon       = "won"
	outcomeLost      = "lost"
	outcomeMissed    = "missed_deadline"
	outcomeDuplicate = "dropped_duplicate"
	outcomeFailed    = "failed"
)

// reqTrace is a recording request's tracing state.
type reqTrace struct {
	span  trace.Span
	hedge []atomic.Int32 // per shard: 1 + the replica its hedge went to, 0 for none
}

// traceStart starts the request's span; st.tr is set when it records. Called when spans.On.
func (g *Gather) traceStart(ctx context.Context) (context.Context, *reqTrace) {
	ctx, span := spans.Start(ctx, "scatter", trace.SpanKindInternal, attrShards.Int(len(g.shards)))
	if !span.IsRecording() {
		return ctx, nil
	}
	return ctx, &reqTrace{span: span, hedge: make([]atomic.Int32, len(g.shards))}
}

// traceEnd ends the request's span with what the answer was.
func (tr *reqTrace) end(res *Result, err error) {
	tr.span.SetAttributes(attrRequestID.String(res.ID.String()), attrPartial.Bool(res.Partial), attrHedges.Int(res.Hedges))
	if len(res.Missing) > 0 {
		tr.span.SetAttributes(attrMissing.StringSlice(res.Missing))
	}
	spans.End(tr.span, err)
}

// missed records that shard i was abandoned at the gather deadline.
func (tr *reqTrace) missed(g *Gather, i int) {
	tr.span.AddEvent("shard missed the deadline", trace.WithAttributes(attrShard.String(g.shards[i].name)))
}

// mergeStart starts the merge's span.
func (tr *reqTrace) mergeStart(ctx context.Context, missing int) (context.Context, trace.Span) {
	return spans.Tracer().Start(ctx, "scatter.merge", trace.WithAttributes(attrMissing.Int(missing)))
}

// attemptStart starts the span of shard i's attempt on replica r, under the request's span.
func (st *reqState) attemptStart(ctx context.Context, i, r int) (context.Context, trace.Span) {
	g := st.g
	rep := &g.shards[i].replicas[r]
	reason := "primary"
	switch {
	case st.tr.hedge[i].Load() == int32(r)+1:
		reason = "hedge"
	case int32(r) != st.primary[i]:
		reason = "failover"
	}
	locality := "local"
	if !rep.local {
		locality = "remote"
	}
	return spans.Tracer().Start(ctx, "scatter.attempt", trace.WithAttributes(
		attrShard.String(g.shards[i].name), attrReplica.Int(r), attrNode.String(g.nodeName(rep.node)),
		attrLocality.String(locality), attrReason.String(reason), attrRequestID.String(st.id.String())))
}

// nodeName is the name of node index n ("" for none).
func (g *Gather) nodeName(n int) string {
	if n >= 0 {
		for name, k := range g.nodes {
			if k == n {
				return name
			}
		}
	}
	return ""
}

// batchStart starts the span of group gr's batched request, under the request's span, and
// one attempt span per shard under it (attempts[k] for gr.shards[k]).
func (st *reqState) batchStart(ctx context.Context, gr *batchGroup) (context.Context, trace.Span, []trace.Span) {
	g := st.g
	first := int(gr.shards[0])
	node := g.nodeName(g.shards[first].replicas[st.primary[first]].node)
	ctx, span := spans.Tracer().Start(ctx, "scatter.batch", trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(
		attrNode.String(node), attrPeer.String(gr.p.addr), attrShards.Int(len(gr.shards)), attrRequestID.String(st.id.String())))
	attempts := make([]trace.Span, len(gr.shards))
	for k, i := range gr.shards {
		_, attempts[k] = st.attemptStart(ctx, int(i), int(st.primary[i]))
	}
	return ctx, span, attempts
}

// attemptEnd ends an attempt's span with its outcome, given the attempt's error and whether
// its answer won the shard.
func (st *reqState) attemptEnd(span trace.Span, i, r int, err error) {
	outcome := outcomeFailed
	s := st.status[i].Load()
	switch {
	case err == nil && s == statusWon+int32(r):
		outcome = outcomeWon
	case err == nil && s >= statusWon:
		outcome = outcomeLost
	case err == nil || s == statusAbandoned || errors.Is(err, ErrDeadline) && st.abandoned.Load():
		outcome = outcomeMissed
	case errors.Is(err, ErrDuplicate):
		outcome = outcomeDuplicate
	}
	span.SetAttributes(attrOutcome.String(outcome))
	spans.End(span, err)
}

// serveStart starts the endpoint's span for a request that came with a traceparent (a root
// without one would be an orphan: the caller was not traced). Called when spans.On.
func serveStart(ctx context.Context, traceparent, shard []byte, id RequestID) (context.Context, trace.Span) {
	ctx = spans.WithRemoteParent(ctx, traceparent)
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return ctx, nil
	}
	return serveSpan(ctx, shard, id, false)
}

// serveSpan starts the span "scatter.serve" of one shard under ctx's (remote) span; nil when
// it does not record.
func serveSpan(ctx context.Context, shard []byte, id RequestID, batch bool) (context.Context, trace.Span) {
	attrs := []attribute.KeyValue{attrShard.String(string(shard)), attrRequestID.String(id.String())}
	if batch {
		attrs = append(attrs, attrBatch.Bool(true))
	}
	ctx, span := spans.Start(ctx, "scatter.serve", trace.SpanKindServer, attrs...)
	if !span.IsRecording() {
		return ctx, nil
	}
	return ctx, span
}

// serveEnd ends the endpoint's span.
func serveEnd(span trace.Span, err error) {
	if errors.Is(err, ErrDuplicate) {
		span.SetAttributes(attrDuplicate.Bool(true))
	}
	spans.End(span, err)
}

// appendTraceparent appends the traceparent of ctx's span to dst when that span is sampled
// (an unsampled one tells the peer nothing it would act on). Called when spans.On.
func appendTraceparent(dst []byte, ctx context.Context) []byte {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsSampled() {
		return dst
	}
	return spans.AppendTraceparent(dst, sc)
}
