package ingress

import (
	"context"
	"errors"
	"strings"

	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/trace"

	"github.com/wasmpod/wasmpod/cluster/scatter"
	"github.com/wasmpod/wasmpod/runtime"
)

// ScatterRoot answers scatter/gather requests: the host's scatter service around a
// scatter.Gather.
type ScatterRoot interface {
	// Do fans req out to every shard and appends the merged answer to dst; a partial answer
	// is not an error (see scatter.Gather.Do).
	Do(ctx context.Context, req, dst []byte) ([]byte, scatter.Result, error)
}

// Response headers of the scatter route.
const (
	// HeaderPartial is "true" when shards are missing from the answer.
	HeaderPartial = "Wasmpod-Partial"
	// HeaderMissingShards lists the missing shards, comma-separated, in shard order.
	HeaderMissingShards = "Wasmpod-Missing-Shards"
	// HeaderRequestID is the request's id, as sent to the other nodes.
	HeaderRequestID = scatter.HeaderRequestID
)

// serveScatter answers a scatter root request: 200 with the merged body (partial answers
// flagged in headers), 405 for a method other than POST, 503 when overloaded or shutting
// down, 504 when even the merge missed the deadline, 500 for a failed merge.
func (h *Handler) serveScatter(ctx *fasthttp.RequestCtx, span trace.Span, b *callBuf) {
	if !ctx.IsPost() {
		ctx.Response.Header.Set("Allow", "POST")
		ctx.Error("POST only\n", fasthttp.StatusMethodNotAllowed)
		return
	}
	// The request's context ends when its client goes away: the root stops waiting, its local
	// shards are cut and its remote attempts abandoned (see scatter.Gather.Do).
	cctx := b.watch.arm(h.ctx, ctx.Conn())
	if span != nil {
		cctx = trace.ContextWithSpan(cctx, span)
	}
	out, res, err := h.scatter.Do(cctx, ctx.PostBody(), b.out[:0])
	b.watch.disarm()
	b.out = out
	if err != nil {
		switch {
		case errors.Is(err, scatter.ErrOverloaded), errors.Is(err, scatter.ErrClosed):
			err = errors.Join(err, runtime.ErrOverloaded) // 503, like an overloaded module
		case errors.Is(err, scatter.ErrDeadline):
			err = errors.Join(err, runtime.ErrDeadline)
		}
		writeCallError(ctx, err)
		return
	}
	ctx.Response.Header.Set(HeaderRequestID, res.ID.String())
	if res.Partial {
		ctx.Response.Header.Set(HeaderPartial, "true")
		ctx.Response.Header.Set(HeaderMissingShards, strings.Join(res.Missing, ","))
	}
	ctx.SetContentTypeBytes(octetStream)
	ctx.SetBody(out)
}
