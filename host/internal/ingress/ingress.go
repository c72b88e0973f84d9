// Package ingress serves a pod's ingress requests: each goes to the pod's main module (framed
// for the http role, the raw body for the handle role), or, on the scatter path, to the pod's
// scatter/gather root. A call's context ends when its client goes away. The listener and its
// hardening (timeouts, limits, connections per IP) are the admin package's Server.
package ingress

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"sync"

	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/trace"

	"github.com/wasmpod/wasmpod/host/internal/httpframe"
	"github.com/wasmpod/wasmpod/host/internal/supervisor"
	"github.com/wasmpod/wasmpod/internal/spans"
	"github.com/wasmpod/wasmpod/runtime"
)

// Handler routes requests to the pod's main module: framed for the http role, the raw body
// for the handle role. Buffers are pooled: a steady request stream makes no garbage here.
type Handler struct {
	sup  *supervisor.Supervisor
	ctx  context.Context
	pool sync.Pool

	scatter     ScatterRoot // nil: no scatter route
	scatterPath []byte
}

type callBuf struct {
	in, out []byte
	resp    httpframe.Response
	watch   clientWatch // cancels the call's context when the client goes away
}

// New returns the handler of sup's ingress. Calls end when ctx does (the server's shutdown).
// With scatter set, POST requests to scatterPath (exact match) go to it.
func New(ctx context.Context, sup *supervisor.Supervisor, scatter ScatterRoot, scatterPath string) *Handler {
	h := &Handler{sup: sup, ctx: ctx, pool: sync.Pool{New: func() any { return new(callBuf) }}}
	if scatter != nil {
		h.scatter, h.scatterPath = scatter, []byte(scatterPath)
	}
	return h
}

var octetStream = []byte("application/octet-stream")

// Serve answers one ingress request.
func (h *Handler) Serve(ctx *fasthttp.RequestCtx) {
	b := h.pool.Get().(*callBuf)
	defer h.pool.Put(b)
	var span trace.Span
	if spans.On() {
		span = startSpan(h.ctx, ctx)
		defer endSpan(span, ctx)
	}
	if h.scatter != nil && bytes.Equal(ctx.Path(), h.scatterPath) {
		h.serveScatter(ctx, span, b)
		return
	}
	var err error
	cctx := b.watch.arm(h.ctx, ctx.Conn())
	if span != nil {
		cctx = trace.ContextWithSpan(cctx, span) // the watch's context is reused: add the span on top
	}
	defer b.watch.disarm()
	for attempt := 0; attempt < 2; attempt++ {
		err = h.call(ctx, cctx, b)
		// A version switch may retire the version a call was admitted to: try the new one once.
		if !errors.Is(err, runtime.ErrNotRunning) {
			break
		}
	}
	if err != nil {
		writeCallError(ctx, err)
	}
}

// call makes one call to the main module under cctx, which ends when the client goes away:
// the guest is cut then (runtime), within the same bound as a deadline, and its slot freed.
func (h *Handler) call(ctx *fasthttp.RequestCtx, cctx context.Context, b *callBuf) error {
	lease, err := h.sup.AcquireMain()
	if err != nil {
		return err
	}
	defer lease.Release()
	in := ctx.PostBody()
	if lease.Role() == runtime.RoleHTTP {
		req := &ctx.Request.Header
		in = httpframe.AppendRequestStart(b.in[:0], req.Method(), req.RequestURI(), req.Len())
		for k, v := range req.All() {
			in = httpframe.AppendString(in, k)
			in = httpframe.AppendString(in, v)
		}
		in = httpframe.AppendString(in, ctx.PostBody())
		b.in = in
	}
	out, err := lease.Call(cctx, in, b.out[:0])
	b.out = out
	if err != nil {
		return err
	}
	if lease.Role() != runtime.RoleHTTP {
		ctx.SetContentTypeBytes(octetStream)
		ctx.SetBody(out)
		return nil
	}
	if err := httpframe.DecodeResponse(out, &b.resp); err != nil {
		return err
	}
	ctx.SetStatusCode(b.resp.Status)
	for _, hd := range b.resp.Headers {
		if hopByHop(hd.Name) {
			continue
		}
		ctx.Response.Header.AddBytesKV(hd.Name, hd.Value)
	}
	ctx.SetBody(b.resp.Body)
	return nil
}

var hopHeaders = [][]byte{[]byte("Connection"), []byte("Content-Length"), []byte("Transfer-Encoding"),
	[]byte("Keep-Alive"), []byte("Upgrade"), []byte("Trailer"), []byte("Date"), []byte("Server")}

func hopByHop(name []byte) bool {
	for _, h := range hopHeaders {
		if bytes.EqualFold(name, h) {
			return true
		}
	}
	return false
}

// statusClientGone is what a call cut because its client went away is logged with (nginx's
// 499); nobody reads it.
const statusClientGone = 499

// writeCallError maps a call failure to a status: overload and not ready 503 (Retry-After),
// deadline 504, guest error and trap 500, bad input 400, malformed or oversized guest response
// 502, a call cut because its client went away 499 (and the connection closed).
func writeCallError(ctx *fasthttp.RequestCtx, err error) {
	status := fasthttp.StatusInternalServerError
	msg := err.Error()
	var ge *runtime.GuestError
	var te *runtime.TrapError
	switch {
	case errors.Is(err, supervisor.ErrDraining), errors.Is(err, supervisor.ErrNotReady), errors.Is(err, runtime.ErrNotRunning), errors.Is(err, runtime.ErrOverloaded):
		status = fasthttp.StatusServiceUnavailable
	case errors.Is(err, runtime.ErrDeadline):
		status = fasthttp.StatusGatewayTimeout
	case errors.Is(err, context.Canceled):
		status = statusClientGone
	case errors.As(err, &ge):
		msg = "guest error " + strconv.Itoa(int(ge.Code)) + ": " + ge.Message
	case errors.As(err, &te):
		msg = "guest trapped (" + te.Kind + ")"
	case errors.Is(err, runtime.ErrInput):
		status = fasthttp.StatusBadRequest
	case errors.Is(err, httpframe.ErrFraming), errors.Is(err, runtime.ErrOutput):
		status = fasthttp.StatusBadGateway
	}
	ctx.Response.Reset()
	ctx.SetStatusCode(status)
	if status == fasthttp.StatusServiceUnavailable {
		ctx.Response.Header.Set("Retry-After", "1")
		if errors.Is(err, supervisor.ErrDraining) {
			ctx.SetConnectionClose()
		}
	}
	if status == statusClientGone {
		ctx.SetConnectionClose()
	}
	ctx.SetContentType("text/plain; charset=utf-8")
	ctx.SetBodyString(msg + "\n")
}
