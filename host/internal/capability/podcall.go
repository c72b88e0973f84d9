package capability

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/wasmpod/wasmpod/internal/spans"
	"github.com/wasmpod/wasmpod/runtime"
)

// Result codes of the call import (guest-sdk/ABI.md §4). After any of them call_result yields a
// message saying why.
const (
	CallNoModule   int32 = -1 // no module of that name in the pod
	CallFailed     int32 = -2 // the target failed (guest error, trap, deadline, not ready ...)
	CallNotAllowed int32 = -3 // the caller may not call the target (itself, policy, depth)
	CallTooLarge   int32 = -4 // the response exceeds the host's limit
	CallBadArgs    int32 = -5 // pointers out of memory, or a target name longer than 253 bytes
)

// maxTargetName bounds a target name (pod module names are DNS labels of at most 63 bytes).
const maxTargetName = 253

type chainKey struct{}

// callChain is the modules the context's pod-local calls came through, first caller first.
func callChain(ctx context.Context) []string {
	c, _ := ctx.Value(chainKey{}).([]string)
	return c
}

// PodCallFunctions returns the pod-local call imports: call and call_result.
func (h *Host) PodCallFunctions() []runtime.HostFunction {
	return []runtime.HostFunction{
		{
			Name:    "call",
			Params:  []runtime.ValueType{runtime.I32, runtime.I32, runtime.I32, runtime.I32},
			Results: []runtime.ValueType{runtime.I32},
			Fn: func(ctx context.Context, c runtime.Caller, stack []uint64) {
				stack[0] = i32(h.call(ctx, c, stack[0], stack[1], stack[2], stack[3]))
			},
		},
		{
			Name:    "call_result",
			Params:  []runtime.ValueType{runtime.I32, runtime.I32},
			Results: []runtime.ValueType{runtime.I32},
			Fn: func(ctx context.Context, c runtime.Caller, stack []uint64) {
				stack[0] = i32(h.callResult(c, uint32(stack[0]), uint32(stack[1])))
			},
		},
	}
}

// call runs one pod-local call and keeps its response (or the failure's message) for
// call_result. It returns the response length or a negative code.
func (h *Host) call(ctx context.Context, c runtime.Caller, tPtr, tLen, inPtr, inLen uint64) int32 {
	st := h.state(c)
	if st == nil {
		return CallNotAllowed
	}
	target, ok1 := readBytes(c, tPtr, tLen, maxTargetName)
	in, ok2 := readBytes(c, inPtr, inLen, 1<<31-1)
	if !ok1 || !ok2 {
		return st.keep(CallBadArgs, []byte("call: target or input out of guest memory, or target name too long"))
	}
	code, out := h.doCall(ctx, c, st.mod, string(target), in)
	return st.keep(code, out)
}

// doCall decides and runs a call: (length, response) or (code, message).
func (h *Host) doCall(ctx context.Context, c runtime.Caller, caller *runtime.Module, target string, in []byte) (int32, []byte) {
	from := caller.Name()
	chain := callChain(ctx)
	if len(chain) == 0 || chain[len(chain)-1] != from {
		chain = []string{from} // the first call of a chain
	}
	if slices.Contains(chain, target) {
		return CallNotAllowed, fmt.Appendf(nil, "call %q: a cycle: %s -> %s", target, strings.Join(chain, " -> "), target)
	}
	if d := len(chain); d > h.cfg.MaxCallDepth {
		return CallNotAllowed, fmt.Appendf(nil, "call %q: nested %d pod-local calls deep (limit %d)", target, d-1, h.cfg.MaxCallDepth)
	}
	if !h.cfg.Allow(from, target) {
		return CallNotAllowed, fmt.Appendf(nil, "call %q: module %q may not call it", target, from)
	}
	if h.cfg.Resolve == nil {
		return CallNoModule, fmt.Appendf(nil, "call %q: %v (this host has no pod-local calls)", target, ErrNoModule)
	}
	m, err := h.cfg.Resolve(target)
	if err != nil {
		if errors.Is(err, ErrNoModule) {
			return CallNoModule, fmt.Appendf(nil, "call %q: %v", target, err)
		}
		return CallFailed, fmt.Appendf(nil, "call %q: %v", target, err)
	}
	if m == caller {
		return CallNotAllowed, fmt.Appendf(nil, "call %q: a module may not call itself", target)
	}
	next := append(slices.Clip(chain), target)
	// The callee gets what is left of the caller's deadline, not a fresh timeout: a chain of
	// calls ends when its first caller is cut.
	cctx, cancel := context.WithDeadline(context.WithValue(ctx, chainKey{}, next), deadline(ctx, c))
	defer cancel()
	var span trace.Span
	if spans.On() { // a pod-local call is a module call under the caller's
		cctx, span = spans.Child(cctx, "module.call", attribute.String("wasmpod.module", target),
			attribute.String("wasmpod.role", runtime.RoleHandle.String()), attribute.String("wasmpod.caller", from))
	}
	out, err := m.Call(cctx, runtime.RoleHandle, in, nil)
	spans.End(span, err)
	if err != nil {
		return CallFailed, fmt.Appendf(nil, "call %q: %v", target, err)
	}
	if len(out) > h.cfg.MaxResponseBytes {
		return CallTooLarge, fmt.Appendf(nil, "call %q: response of %d bytes exceeds the limit of %d", target, len(out), h.cfg.MaxResponseBytes)
	}
	return int32(len(out)), out
}

// keep stores the outcome of a call for call_result and returns code.
func (st *instState) keep(code int32, b []byte) int32 {
	st.mu.Lock()
	st.result, st.hasResult = b, true
	st.mu.Unlock()
	return code
}

// callResult copies the kept response into the guest when it fits and forgets it; otherwise it
// only reports the length (the guest asks again with a larger buffer). -1: no response kept;
// -5: the buffer is out of guest memory.
func (h *Host) callResult(c runtime.Caller, ptr, capacity uint32) int32 {
	st := h.state(c)
	if st == nil {
		return -1
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if !st.hasResult {
		return -1
	}
	n := len(st.result)
	if uint64(n) > uint64(capacity) {
		return int32(n)
	}
	if n > 0 && !c.Write(ptr, st.result) {
		return CallBadArgs
	}
	st.result, st.hasResult = nil, false
	return int32(n)
}
