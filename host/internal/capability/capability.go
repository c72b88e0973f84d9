// Package capability provides the host functions behind a pod's plumbing (guest-sdk/ABI.md §4):
//
//   - pod-local calls: a module calls another module of its pod by name (call, call_result), so
//     an ambassador can sit between main and the outside world, and main can be pointed at a
//     real service instead;
//   - outbound network for modules granted it (net_dial, net_write, net_read, net_close,
//     net_error): TCP connections to an allowlist of host:port destinations, deny by default,
//     checked on every dial, including the addresses a name resolves to.
//
// A Host hands its functions to the runtime through runtime.Config.Imports:
//
//	caps := capability.New(capability.Config{Resolve: ..., Allowlist: ...})
//	defer caps.Close()
//	ecfg.Imports = caps.Functions()
//
// Per-instance state (the last call's response, open connections) lives on the runtime's
// instance seam (runtime.Caller.State): it is created when an instance first uses one of these
// functions and closed when the runtime discards the instance, for any reason (trap, deadline,
// stop, scale-down), so a connection never outlives the instance that opened it.
//
// Deadlines: a host function's I/O ends by the caller's own deadline (runtime.Caller.Deadline:
// the moment the runtime cuts the call), and a pod-local call passes what is left of it to the
// callee, so a chain of calls shares the first caller's deadline.
package capability

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wasmpod/wasmpod/runtime"
)

// Sentinel errors.
var (
	// ErrNoModule: the target of a pod-local call is not a module of the pod. Resolvers wrap it.
	ErrNoModule = errors.New("no such module")
	// ErrNotAllowed: the capability is not granted (the runtime's ErrNotAllowed, so hosts can test
	// either).
	ErrNotAllowed = runtime.ErrNotAllowed
)

// Config configures a Host. A zero field takes its default.
type Config struct {
	// Resolve finds the module a pod-local call goes to by name. It returns an error wrapping
	// ErrNoModule when there is no such module, or another error (e.g. not ready), which fails
	// the call. Nil: every pod-local call fails with "no such module".
	Resolve func(target string) (*runtime.Module, error)

	// Allow, if set, says whether caller may call target. Default: any module of the pod may call
	// any other module, but not itself (a module calling itself can wait on its own instances).
	Allow func(caller, target string) bool

	// Allowlist returns the outbound destinations a module may dial, each "host:port" (the pod
	// spec's network.allow). Nil, or an empty list: no network (deny by default).
	Allowlist func(module string) []string

	// MaxCallDepth bounds chains of pod-local calls (a calls b calls c ...: two). Default 4: enough
	// for main -> ambassador -> helper. A call back into a module already in the chain (a cycle)
	// is refused at any depth, since it could wait forever on its own busy instances.
	MaxCallDepth int

	// MaxResponseBytes bounds a pod-local call's response. Default 16 MiB, the runtime's output
	// limit.
	MaxResponseBytes int

	// MaxHandles bounds the connections one instance may have open at once. Default 64: a pool of
	// a few connections per backend for a handful of backends, while one runaway guest cannot
	// exhaust the host's descriptors.
	MaxHandles int

	// MaxReadBytes bounds one net_read. Default 64 KiB.
	MaxReadBytes int

	// Resolver resolves names for net_dial. Nil: net.DefaultResolver.
	Resolver *net.Resolver
}

// Defaults.
const (
	DefaultMaxCallDepth     = 4
	DefaultMaxResponseBytes = 16 << 20
	DefaultMaxHandles       = 64
	DefaultMaxReadBytes     = 64 << 10
)

func (c *Config) applyDefaults() {
	if c.MaxCallDepth <= 0 {
		c.MaxCallDepth = DefaultMaxCallDepth
	}
	if c.MaxResponseBytes <= 0 || c.MaxResponseBytes > 1<<31-1 {
		c.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if c.MaxHandles <= 0 {
		c.MaxHandles = DefaultMaxHandles
	}
	if c.MaxReadBytes <= 0 {
		c.MaxReadBytes = DefaultMaxReadBytes
	}
	if c.Resolver == nil {
		c.Resolver = net.DefaultResolver
	}
	if c.Allow == nil {
		c.Allow = func(caller, target string) bool { return caller != target }
	}
}

// Host holds the state of the pod-plumbing host functions. It is safe for concurrent use.
type Host struct {
	cfg Config

	open atomic.Int64 // connections open over all instances

	mu     sync.Mutex
	live   map[*instState]struct{} // states not yet closed, so Close can reach them
	closed bool
}

// stateKey identifies this package's state on the runtime's instance seam.
type stateKey struct{}

// instState is what one instance has host-side. An instance runs one call at a time, so its
// own host functions never race each other; the mutex orders them against Host.Close.
type instState struct {
	h   *Host
	mod *runtime.Module

	mu        sync.Mutex
	result    []byte // the last pod-local call's response (or error message)
	hasResult bool
	netErr    string
	conns     map[int32]net.Conn
	next      int32
	closed    bool
}

// New creates a Host. Close it when the engine using its functions is closed.
func New(cfg Config) *Host {
	cfg.applyDefaults()
	return &Host{cfg: cfg, live: map[*instState]struct{}{}}
}

// Functions returns every host function of the package: the pod-local call and the network
// functions. Give them to runtime.Config.Imports.
func (h *Host) Functions() []runtime.HostFunction {
	return append(h.PodCallFunctions(), h.NetFunctions()...)
}

// Close closes every connection. Functions called afterwards fail as not allowed. Idempotent.
func (h *Host) Close() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	live := h.live
	h.live = map[*instState]struct{}{}
	h.mu.Unlock()
	for st := range live {
		st.close()
	}
	return nil
}

// OpenConns returns the number of open connections over all instances (for tests and metrics).
func (h *Host) OpenConns() int { return int(h.open.Load()) }

// state returns the caller's state, creating it on the instance's first use. Nil when the host
// is closed or the caller is not an instance.
func (h *Host) state(c runtime.Caller) *instState {
	m := c.Module()
	if m == nil {
		return nil
	}
	s := c.State(stateKey{}, func() runtime.InstanceState {
		h.mu.Lock()
		defer h.mu.Unlock()
		if h.closed {
			return nil
		}
		st := &instState{h: h, mod: m}
		h.live[st] = struct{}{}
		return st
	})
	st, _ := s.(*instState)
	if st == nil {
		return nil
	}
	st.mu.Lock()
	closed := st.closed
	st.mu.Unlock()
	if closed { // Host.Close ran
		return nil
	}
	return st
}

// Close implements runtime.InstanceState: the runtime discarded the instance.
func (st *instState) Close() {
	st.h.mu.Lock()
	delete(st.h.live, st)
	st.h.mu.Unlock()
	st.close()
}

func (st *instState) close() {
	st.mu.Lock()
	conns := st.conns
	st.conns = nil
	st.closed = true
	st.result, st.hasResult = nil, false
	st.mu.Unlock()
	for _, c := range conns {
		c.Close()
		st.h.open.Add(-1)
	}
}

// deadline is when the caller's I/O must end: the caller's own deadline (when the runtime cuts
// its call), or for a trusted module now + its call timeout; and never after ctx's deadline.
func deadline(ctx context.Context, c runtime.Caller) time.Time {
	d, ok := c.Deadline()
	if !ok {
		d = time.Now().Add(c.Module().Config().CallTimeout)
	}
	if dl, ok := ctx.Deadline(); ok && dl.Before(d) {
		d = dl
	}
	return d
}

// readBytes reads n bytes of guest memory at ptr, refusing more than max.
// Parameters arrive as uint64 stack slots whose upper 32 bits are not defined for i32 values,
// so they are truncated first.
func readBytes(c runtime.Caller, ptr, n uint64, max int) ([]byte, bool) {
	p, k := uint32(ptr), uint32(n)
	if uint64(k) > uint64(max) {
		return nil, false
	}
	return c.Read(p, k)
}

// i32 encodes a signed result for the wasm stack.
func i32(v int32) uint64 { return uint64(uint32(v)) }
