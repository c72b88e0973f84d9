package admin

import (
	"bytes"
	"errors"

	"github.com/valyala/fasthttp"
)

// Request smuggling: a request that carries both Content-Length and Transfer-Encoding is
// framed two ways. fasthttp reads such a body as chunked and keeps the connection open, so a
// proxy in front that trusted Content-Length and this host disagree on where the request ends,
// and the rest of the body is served as a second request nobody sent. RFC 9112 §6.1 lets a
// server reject such a message, and requires the connection be closed if it is processed; we
// reject it with 400 and close, on both listeners, before its body is read.

var (
	headerContentLength    = []byte("Content-Length")
	headerTransferEncoding = []byte("Transfer-Encoding")
	errAmbiguousFraming    = errors.New("request has both Content-Length and Transfer-Encoding (RFC 9112 §6.1): refused, connection closed")
)

// ambiguousFraming reports whether h, as received, names both Content-Length and
// Transfer-Encoding. fasthttp keeps only the framing it chose in the parsed header, so the raw
// header block is scanned.
func ambiguousFraming(h *fasthttp.RequestHeader) bool {
	var cl, te bool
	for line := range bytes.Lines(h.RawHeaders()) {
		key, _, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		key = bytes.TrimSpace(key)
		cl = cl || bytes.EqualFold(key, headerContentLength)
		te = te || bytes.EqualFold(key, headerTransferEncoding)
	}
	return cl && te
}

// framingHeaderHook wraps a HeaderReceived hook (nil: none): a request with ambiguous framing
// is marked to close its connection and gets a 1-byte body limit, so that no more than a byte
// of its body is read before the handler (or the error handler) answers 400.
func framingHeaderHook(next func(*fasthttp.RequestHeader) fasthttp.RequestConfig) func(*fasthttp.RequestHeader) fasthttp.RequestConfig {
	return func(h *fasthttp.RequestHeader) fasthttp.RequestConfig {
		if ambiguousFraming(h) {
			h.SetConnectionClose()
			return fasthttp.RequestConfig{MaxRequestBodySize: 1}
		}
		if next == nil {
			return fasthttp.RequestConfig{}
		}
		return next(h)
	}
}

// rejectAmbiguousFraming wraps a handler: a request with both framings is answered 400 and its
// connection closed, so nothing after it on the connection is served.
func rejectAmbiguousFraming(next fasthttp.RequestHandler) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		if ambiguousFraming(&ctx.Request.Header) {
			writeAmbiguousFraming(ctx)
			return
		}
		next(ctx)
	}
}

func writeAmbiguousFraming(ctx *fasthttp.RequestCtx) {
	ctx.SetConnectionClose()
	ctx.Error(errAmbiguousFraming.Error()+"\n", fasthttp.StatusBadRequest)
}
