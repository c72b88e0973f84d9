package spans

import (
	"context"
	"encoding/hex"

	"go.opentelemetry.io/otel/trace"
)

// HeaderTraceparent is the W3C Trace Context header (https://www.w3.org/TR/trace-context/)
// that carries a span's context to another process: the ingress reads it, the scatter client
// sends it to peers, and a queue job keeps it for its tasks.
const HeaderTraceparent = "traceparent"

// traceparentLen is the length of a version-00 traceparent: 00-<32 hex>-<16 hex>-<2 hex>.
const traceparentLen = 55

// AppendTraceparent appends the traceparent of sc to dst (nothing when sc is not valid).
func AppendTraceparent(dst []byte, sc trace.SpanContext) []byte {
	if !sc.IsValid() {
		return dst
	}
	tid, sid := sc.TraceID(), sc.SpanID()
	dst = append(dst, "00-"...)
	dst = hex.AppendEncode(dst, tid[:])
	dst = append(dst, '-')
	dst = hex.AppendEncode(dst, sid[:])
	dst = append(dst, '-')
	return hex.AppendEncode(dst, []byte{byte(sc.TraceFlags())})
}

// Traceparent returns the traceparent of ctx's span, or "" when ctx has no valid span.
func Traceparent(ctx context.Context) string {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return ""
	}
	var b [traceparentLen]byte
	return string(AppendTraceparent(b[:0], sc))
}

// ParseTraceparent parses a W3C traceparent header into a remote span context. It accepts
// version 00 exactly, and a later version's first four fields (as the specification asks);
// ok is false for anything else: wrong length or separators, upper-case or non-hex digits,
// version ff, or an all-zero trace or parent id.
func ParseTraceparent(b []byte) (sc trace.SpanContext, ok bool) {
	if len(b) < traceparentLen || b[2] != '-' || b[35] != '-' || b[52] != '-' {
		return sc, false
	}
	var ver [1]byte
	if !lowerHex(ver[:], b[0:2]) || ver[0] == 0xff || ver[0] == 0 && len(b) != traceparentLen ||
		ver[0] != 0 && len(b) > traceparentLen && b[traceparentLen] != '-' {
		return sc, false
	}
	var tid trace.TraceID
	var sid trace.SpanID
	var flags [1]byte
	if !lowerHex(tid[:], b[3:35]) || !lowerHex(sid[:], b[36:52]) || !lowerHex(flags[:], b[53:55]) {
		return sc, false
	}
	sc = trace.NewSpanContext(trace.SpanContextConfig{
		TraceID:    tid,
		SpanID:     sid,
		TraceFlags: trace.TraceFlags(flags[0]) & trace.FlagsSampled,
		Remote:     true,
	})
	return sc, sc.IsValid()
}

// lowerHex decodes src (lower-case hex digits only, as the specification requires) into dst.
func lowerHex(dst, src []byte) bool {
	if len(src) != 2*len(dst) {
		return false
	}
	for i := range dst {
		hi, ok1 := nibble(src[2*i])
		lo, ok2 := nibble(src[2*i+1])
		if !ok1 || !ok2 {
			return false
		}
		dst[i] = hi<<4 | lo
	}
	return true
}

func nibble(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

// WithRemoteParent returns ctx with the span context of traceparent as its remote parent, or
// ctx itself when traceparent is empty or malformed (a malformed header starts a new trace,
// as the specification asks).
func WithRemoteParent(ctx context.Context, traceparent []byte) context.Context {
	if len(traceparent) == 0 {
		return ctx
	}
	if sc, ok := ParseTraceparent(traceparent); ok {
		return trace.ContextWithRemoteSpanContext(ctx, sc)
	}
	return ctx
}
