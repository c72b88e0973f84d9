//go:build !wasip1

package pod

import (
	"errors"
	"sync"
)

// Host stands in for the host's call and call_result imports when the SDK is compiled natively
// (for unit tests of plugin logic). It is not used on wasip1.
var Host = NewFakeHost()

// FakeHost is an in-memory pod: Modules maps a module name to its handler. It follows the
// host's rules: an unknown target is "no such module", a handler error is "target failed" with
// the error's text, Self may not call itself, and a response above MaxResponse is too large.
type FakeHost struct {
	mu sync.Mutex
	// Modules are the pod's modules by name.
	Modules map[string]func(in []byte) ([]byte, error)
	// Self is the calling module's name.
	Self string
	// MaxResponse bounds responses (0: 16 MiB).
	MaxResponse int
	// Calls records every call's target, in order.
	Calls []string

	result    []byte
	hasResult bool
}

// NewFakeHost returns a pod with no other modules, calling as "main".
func NewFakeHost() *FakeHost {
	return &FakeHost{Modules: map[string]func([]byte) ([]byte, error){}, Self: "main"}
}

func (h *FakeHost) keep(code int32, b []byte) int32 {
	h.result, h.hasResult = b, true
	return code
}

func hostCall(target string, in []byte) int32 {
	h := Host
	h.mu.Lock()
	h.Calls = append(h.Calls, target)
	fn, ok := h.Modules[target]
	self, limit := h.Self, h.MaxResponse
	h.mu.Unlock()
	if limit == 0 {
		limit = 16 << 20
	}
	var code int32
	var out []byte
	switch {
	case target == self:
		code, out = codeNotAllowed, []byte("a module may not call itself")
	case !ok:
		code, out = codeNoModule, []byte("call \""+target+"\": no such module")
	default:
		r, err := fn(append([]byte(nil), in...))
		switch {
		case err != nil:
			code, out = codeFailed, []byte("call \""+target+"\": "+err.Error())
		case len(r) > limit:
			code, out = codeTooLarge, []byte(errors.New("response too large").Error())
		default:
			code, out = int32(len(r)), r
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.keep(code, out)
}

func hostCallResult(b []byte) int32 {
	h := Host
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.hasResult {
		return -1
	}
	n := len(h.result)
	if n > len(b) {
		return int32(n)
	}
	copy(b, h.result)
	h.result, h.hasResult = nil, false
	return int32(n)
}
