package ingress

import (
	"context"

	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/wasmpod/wasmpod/internal/spans"
)

// startSpan starts the request's server span "ingress", a child of the client's traceparent
// when it sent one (its sampled flag then decides, with a parent-based sampler), else a root.
// Called only when spans.On.
func startSpan(base context.Context, ctx *fasthttp.RequestCtx) trace.Span {
	if tp := ctx.Request.Header.Peek(spans.HeaderTraceparent); len(tp) > 0 {
		base = spans.WithRemoteParent(base, tp)
	}
	_, span := spans.Start(base, "ingress", trace.SpanKindServer)
	if span.IsRecording() {
		span.SetAttributes(
			attribute.String("http.request.method", string(ctx.Method())),
			attribute.String("url.path", string(ctx.Path())),
		)
	}
	return span
}

// endSpan ends it with the response's status (5xx is an error, as OpenTelemetry's HTTP
// conventions say for a server).
func endSpan(span trace.Span, ctx *fasthttp.RequestCtx) {
	if span.IsRecording() {
		status := ctx.Response.StatusCode()
		span.SetAttributes(attribute.Int("http.response.status_code", status))
		if status >= 500 {
			span.SetStatus(codes.Error, string(ctx.Response.Body()))
		}
	}
	span.End()
}
