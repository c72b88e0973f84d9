// Package spans is the one switch and the few helpers behind every OpenTelemetry span site of
// wasmpod (ingress, module calls, scatter requests and their shard attempts, merges, queue task
// attempts), shared by host/ and cluster/.
//
// Tracing is off by default, and then free: every span site is guarded by On, a single atomic
// load, and does nothing else (no allocation, no context lookup). host/internal/tracing turns
// it on (Install) when an OTLP endpoint is configured. Only the OpenTelemetry API appears here;
// the SDK (sampling, batching, export) is the host's business.
//
// Span sites follow two rules: a root site (ingress, a scatter request without a parent, a
// queue task attempt) always asks the tracer, whose sampler decides; a child site (a module
// call, a shard attempt, a merge) starts a span only when its parent records, so a request the
// sampler dropped costs one context lookup per child site and nothing more.
package spans

import (
	"context"
	"sync/atomic"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// ScopeName is the instrumentation scope of wasmpod's spans.
const ScopeName = "github.com/wasmpod/wasmpod"

var (
	on     atomic.Bool
	tracer atomic.Pointer[tracerBox]
)

type tracerBox struct{ t trace.Tracer }

// On reports whether tracing is on. Every span site checks it first.
func On() bool { return on.Load() }

// Install makes tp the provider of every span site and turns tracing on; a nil tp turns it
// off. It returns a function that restores the previous state (for tests). Safe for concurrent
// use with the span sites: a site that saw On just before a switch may still use the previous
// tracer.
func Install(tp trace.TracerProvider) (restore func()) {
	prevOn, prev := on.Load(), tracer.Load()
	if tp == nil {
		on.Store(false)
		tracer.Store(nil)
	} else {
		tracer.Store(&tracerBox{t: tp.Tracer(ScopeName)})
		on.Store(true)
	}
	return func() {
		tracer.Store(prev)
		on.Store(prevOn)
	}
}

var noopTracer = noop.NewTracerProvider().Tracer(ScopeName)

// Tracer returns the installed tracer (a no-op one when tracing is off).
func Tracer() trace.Tracer {
	if b := tracer.Load(); b != nil {
		return b.t
	}
	return noopTracer
}

// Start starts a span named name as a child of ctx's span, or as a root the sampler decides
// on. Call it only when On.
func Start(ctx context.Context, name string, kind trace.SpanKind, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	return Tracer().Start(ctx, name, trace.WithSpanKind(kind), trace.WithAttributes(attrs...))
}

// Child starts a span named name under ctx's span when that span records (it was sampled);
// otherwise it returns ctx and nil. Call it only when On.
func Child(ctx context.Context, name string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	if !trace.SpanFromContext(ctx).IsRecording() {
		return ctx, nil
	}
	return Tracer().Start(ctx, name, trace.WithAttributes(attrs...))
}

// Recording returns ctx's span when it records, else nil. Call it only when On.
func Recording(ctx context.Context) trace.Span {
	if s := trace.SpanFromContext(ctx); s.IsRecording() {
		return s
	}
	return nil
}

// End ends span (nil is allowed), recording err as its error status when err is not nil.
func End(span trace.Span, err error) {
	if span == nil {
		return
	}
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}
