package admin

import (
	"bytes"
	"errors"

	"github.com/valyala/fasthttp"
)

// Request smuggling: a request that carries both Content-Length and Transfer-Encoding is
// framed two ways (and so are the other cases of framingError). fasthttp reads such a body as chunked and keeps the connection open, so a
// proxy in front that trusted Content-Length and this host disagree on where the request ends,
// and the rest of the body is served as a second request nobody sent. RFC 9112 §6.1 lets a
// server reject such a message, and requires the connection be closed if it is processed; we
// reject it with 400 and close, on both listeners, before its body is read.

var (
	headerContentLength    = []byte("Content-Length")
	headerTransferEncoding = []byte("Transfer-Encoding")
	headerHost             = []byte("Host")
	codingChunked          = []byte("chunked")

	errAmbiguousFraming = errors.New("request has both Content-Length and Transfer-Encoding (RFC 9112 §6.1): refused, connection closed")
	errTransferCoding   = errors.New(`request's Transfer-Encoding is not one "chunked" (RFC 9112 §6.1; no other coding is supported): refused, connection closed`)
	errObsFold          = errors.New("request has a folded header line (obs-fold, RFC 9112 §5.2): refused, connection closed")
	errContentLength    = errors.New("request has several Content-Length values, or one that is not a decimal number (RFC 9112 §6.3): refused, connection closed")
	errHostCount        = errors.New("request has several Host headers, or none in HTTP/1.1 (RFC 9112 §3.2): refused, connection closed")
	errAbsoluteForm     = errors.New("request's absolute-form target names another host than its Host header (RFC 9112 §3.2.2; this is no proxy): refused, connection closed")
)

// framingError is why h, as received, could be framed or routed differently by another HTTP
// implementation on the way (a proxy in front): both Content-Length and Transfer-Encoding, a
// transfer coding other than one "chunked", a folded header line, several Content-Length values,
// several Host headers (or none in HTTP/1.1), or an absolute-form target naming another host.
// nil when there is none. fasthttp keeps only the framing it chose in the parsed header (and
// reads a folded line as its own header), so the raw header block is scanned.
func framingError(h *fasthttp.RequestHeader) error {
	var cl, te, hosts int
	var clValue, host []byte
	for line := range bytes.Lines(h.RawHeaders()) {
		if line[0] == ' ' || line[0] == '\t' {
			return errObsFold
		}
		key, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		key, value = bytes.TrimSpace(key), bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(key, headerContentLength):
			// One decimal number; a repeat of the same value is what fasthttp allows too.
			if cl++; !isDecimal(value) || cl > 1 && !bytes.Equal(value, clValue) {
				return errContentLength
			}
			clValue = value
		case bytes.EqualFold(key, headerTransferEncoding):
			if te++; te > 1 || !bytes.EqualFold(value, codingChunked) {
				return errTransferCoding
			}
		case bytes.EqualFold(key, headerHost):
			hosts++
			host = value
		}
	}
	switch {
	case cl > 0 && te > 0:
		return errAmbiguousFraming
	case hosts > 1, hosts == 0 && h.IsHTTP11():
		return errHostCount
	}
	if authority, ok := absoluteFormAuthority(h.RequestURI()); ok && !bytes.EqualFold(authority, host) {
		return errAbsoluteForm
	}
	return nil
}

// isDecimal reports whether b is a non-empty run of ASCII digits.
func isDecimal(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return len(b) > 0
}

// absoluteFormAuthority is the authority of an absolute-form request target
// ("http://host:port/path"), and whether uri is one.
func absoluteFormAuthority(uri []byte) ([]byte, bool) {
	scheme, rest, ok := bytes.Cut(uri, []byte("://"))
	if !ok || len(scheme) == 0 || bytes.IndexByte(scheme, '/') >= 0 {
		return nil, false
	}
	if i := bytes.IndexAny(rest, "/?#"); i >= 0 {
		rest = rest[:i]
	}
	return rest, true
}

// ambiguousFraming reports whether h, as received, has a framingError.
func ambiguousFraming(h *fasthttp.RequestHeader) bool { return framingError(h) != nil }

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
	err := framingError(&ctx.Request.Header)
	if err == nil {
		err = errAmbiguousFraming
	}
	ctx.SetConnectionClose()
	ctx.Error(err.Error()+"\n", fasthttp.StatusBadRequest)
}
