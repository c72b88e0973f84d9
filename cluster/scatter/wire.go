package scatter

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/wasmpod/wasmpod/runtime"
)

// The internal peer endpoint's wire format, version 1 (plain HTTP/1.1, keep-alive):
//
//	POST /_wasmpod/scatter/v1/<shard>
//	Wasmpod-Request-Id: <32 hex digits>       the root request's id (duplicates are dropped)
//	Wasmpod-Budget-Us: <decimal microseconds>  time left before the root's deadline
//	traceparent: <W3C trace context>           optional: the root's attempt span, when traced
//	body: the leaf input
//
// A root whose request was cancelled (its client went away) tells the peer to stop the shard:
// the same request with the header Wasmpod-Cancel: 1 (any body) cuts the attempt of that id for
// that shard if it runs, and drops it if it has not arrived yet; the answer is 200. Over
// net/http the root closes the connection instead, which cancels the request's context.
//
// The answer is 200 with the part as the body, or an error status with a short text message:
// 400 malformed, 404 unknown shard, 409 duplicate request id for this shard, 503 overloaded or
// not running, 504 deadline, 500 any other failure. The budget is relative, so the peers' clocks
// need not agree; the peer's own deadline is now + budget.
const (
	// PathPrefix is the path of the internal endpoint; the shard name follows it.
	PathPrefix = "/_wasmpod/scatter/v1/"
	// HeaderRequestID carries the RequestID.
	HeaderRequestID = "Wasmpod-Request-Id"
	// HeaderBudget carries the time left, in microseconds.
	HeaderBudget = "Wasmpod-Budget-Us"
	// HeaderCancel, set to 1, makes the request a cancellation of the attempt with the same
	// request id and shard.
	HeaderCancel = "Wasmpod-Cancel"
	// maxShardName bounds a shard name on the wire.
	maxShardName = 256
	// maxMessage bounds the error text of an answer.
	maxMessage = 512
)

// WireRequest is one internal-endpoint request as a transport received it, before parsing.
// The byte slices may alias the transport's buffers for the duration of the call.
type WireRequest struct {
	Path      []byte // the URL path, e.g. /_wasmpod/scatter/v1/shard-3
	RequestID []byte // the Wasmpod-Request-Id header
	Budget    []byte // the Wasmpod-Budget-Us header
	Body      []byte
	Cancel    bool // the Wasmpod-Cancel header is 1: cancel the attempt, do not run it
	// Traceparent is the W3C traceparent header: the root's attempt span (of a batch: the
	// batch's span), when traced. A transport need only fill it when spans.On (tracing is
	// configured).
	Traceparent []byte
}

// parsed is a WireRequest after validation.
type parsed struct {
	shard  []byte
	id     RequestID
	budget time.Duration
}

// parseWire validates a request's framing. maxBudget caps the budget a caller may ask for.
func parseWire(r WireRequest, maxBudget time.Duration) (parsed, error) {
	var p parsed
	if len(r.Path) <= len(PathPrefix) || string(r.Path[:len(PathPrefix)]) != PathPrefix {
		return p, fmt.Errorf("%w: path must be %s<shard>", ErrMalformed, PathPrefix)
	}
	p.shard = r.Path[len(PathPrefix):]
	if len(p.shard) > maxShardName {
		return p, fmt.Errorf("%w: shard name longer than %d bytes", ErrMalformed, maxShardName)
	}
	for _, c := range p.shard {
		if c <= ' ' || c == '/' || c >= 0x7f {
			return p, fmt.Errorf("%w: shard name has a byte %#x that is not allowed", ErrMalformed, c)
		}
	}
	var err error
	if p.id, err = ParseRequestID(r.RequestID); err != nil {
		return p, err
	}
	if len(r.Budget) == 0 || len(r.Budget) > 12 {
		return p, fmt.Errorf("%w: budget: want 1 to 12 decimal digits of microseconds", ErrMalformed)
	}
	var us int64
	for _, c := range r.Budget {
		if c < '0' || c > '9' {
			return p, fmt.Errorf("%w: budget: not a decimal number", ErrMalformed)
		}
		us = us*10 + int64(c-'0')
	}
	if us == 0 {
		return p, fmt.Errorf("%w: budget is zero", ErrDeadline)
	}
	p.budget = min(time.Duration(us)*time.Microsecond, maxBudget)
	return p, nil
}

// appendBudget appends the wire form of a budget (at least 1 us) to dst.
func appendBudget(dst []byte, d time.Duration) []byte {
	return strconv.AppendInt(dst, max(int64(d/time.Microsecond), 1), 10)
}

// statusOf maps a Serve error to the answer's status code.
func statusOf(err error) int {
	switch {
	case err == nil:
		return http.StatusOK
	case errors.Is(err, ErrMalformed), errors.Is(err, runtime.ErrInput):
		return http.StatusBadRequest
	case errors.Is(err, ErrUnknownShard):
		return http.StatusNotFound
	case errors.Is(err, ErrDuplicate):
		return http.StatusConflict
	case errors.Is(err, ErrDeadline), errors.Is(err, runtime.ErrDeadline):
		return http.StatusGatewayTimeout
	case errors.Is(err, ErrOverloaded), errors.Is(err, ErrClosed), errors.Is(err, runtime.ErrOverloaded),
		errors.Is(err, runtime.ErrNotRunning), errors.Is(err, runtime.ErrClosed):
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}

// errorBody is the message of a failed answer, bounded.
func errorBody(err error) []byte {
	msg := err.Error()
	if len(msg) > maxMessage {
		msg = msg[:maxMessage]
	}
	return []byte(msg)
}

// decodeAnswer turns a peer's answer into the part (appended to dst) or an error wrapping the
// sentinel its status stands for. body is untrusted.
func decodeAnswer(status int, body, dst []byte) ([]byte, error) {
	if status == http.StatusOK {
		return append(dst, body...), nil
	}
	msg := body
	if len(msg) > maxMessage {
		msg = msg[:maxMessage]
	}
	var kind error
	switch status {
	case http.StatusBadRequest:
		kind = ErrMalformed
	case http.StatusNotFound:
		kind = ErrUnknownShard
	case http.StatusConflict:
		kind = ErrDuplicate
	case http.StatusGatewayTimeout:
		kind = ErrDeadline
	case http.StatusServiceUnavailable:
		kind = ErrOverloaded
	default:
		kind = ErrRemote
	}
	return dst, fmt.Errorf("%w: status %d: %q", kind, status, msg)
}
