// Package capability provides the host functions behind a pod's plumbing (guest-sdk/ABI.md §4):
//
//   - pod-local calls: a module calls another module of its pod by name (call, call_result), so
//     an ambassador can sit between main and the outside world, and main can be pointed at a
//     real service instead;
//   - outbound network for modules granted it (net_dial, net_write, net_read, net_close,
//     net_error): TCP connections to an allowlist of host:port destinations, deny by default,
//     checked on every dial, including the addresses a name resolves to.
//
// A Host holds the per-instance state these functions need (the last call's response, open
// connections) and hands its functions to the runtime through runtime.Config.Imports:
//
//	caps := capability.New(capability.Config{Resolve: ..., Allowlist: ...})
//	defer caps.Close()
//	ecfg.Imports = caps.Functions()
//
// The runtime has no instance-close hook, so state is keyed by the calling instance
// (runtime.Caller) and swept by a background goroutine the Host owns: an instance's state goes
// when its module has stopped or failed, or when it has been idle for Config.IdleTimeout.
//
// Deadlines: a host function sees the caller's context, whose deadline (when it has one) is the
// request's; the call's own timeout is not visible to host functions, so the deadline used is
// the earlier of the context's and now + the calling module's CallTimeout, an upper bound of
// what the caller has left.
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

	// IdleTimeout is how long an instance's state (open connections, an unfetched response) is
	// kept after its last use, since the runtime does not say when an instance is discarded.
	// Default 60s. A guest pooling connections must expect a pooled connection to fail
	// (idle-closed here, or by the server) and dial again.
	IdleTimeout time.Duration

	// SweepInterval is how often state is swept. Default 1s.
	SweepInterval time.Duration

	// Resolver resolves names for net_dial. Nil: net.DefaultResolver.
	Resolver *net.Resolver
}

// Defaults.
const (
	DefaultMaxCallDepth     = 4
	DefaultMaxResponseBytes = 16 << 20
	DefaultMaxHandles       = 64
	DefaultMaxReadBytes     = 64 << 10
	DefaultIdleTimeout      = 60 * time.Second
	DefaultSweepInterval    = time.Second
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
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.SweepInterval <= 0 {
		c.SweepInterval = DefaultSweepInterval
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

	mu     sync.Mutex
	insts  map[runtime.Caller]*instState
	closed bool

	stop chan struct{}
	done chan struct{}
}

// instState is what one instance has host-side. An instance runs one call at a time, so its
// own host functions never race each other; the sweeper is the only other party.
type instState struct {
	mod  *runtime.Module
	last atomic.Int64 // unix nanos of the last use
	busy atomic.Int32 // host functions of this instance running now

	mu        sync.Mutex
	result    []byte // the last pod-local call's response (or error message)
	hasResult bool
	netErr    string
	conns     map[int32]net.Conn
	next      int32
	closed    bool
}

// New creates a Host and starts its sweeper. Close it when the engine using its functions is
// closed.
func New(cfg Config) *Host {
	cfg.applyDefaults()
	h := &Host{cfg: cfg, insts: map[runtime.Caller]*instState{}, stop: make(chan struct{}), done: make(chan struct{})}
	go h.sweeper()
	return h
}

// Functions returns every host function of the package: the pod-local call and the network
// functions. Give them to runtime.Config.Imports.
func (h *Host) Functions() []runtime.HostFunction {
	return append(h.PodCallFunctions(), h.NetFunctions()...)
}

// Close stops the sweeper and closes every connection. Functions called afterwards fail as
// not allowed. Idempotent.
func (h *Host) Close() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	insts := h.insts
	h.insts = map[runtime.Caller]*instState{}
	h.mu.Unlock()
	close(h.stop)
	<-h.done
	for _, st := range insts {
		st.close()
	}
	return nil
}

// OpenConns returns the number of open connections over all instances (for tests and metrics).
func (h *Host) OpenConns() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, st := range h.insts {
		st.mu.Lock()
		n += len(st.conns)
		st.mu.Unlock()
	}
	return n
}

// state returns the caller's state, creating it, and marks it busy; release with done. Nil when
// the host is closed or the caller is not a module.
func (h *Host) state(c runtime.Caller) *instState {
	m := c.Module()
	if m == nil {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil
	}
	st := h.insts[c]
	if st == nil {
		st = &instState{mod: m, conns: map[int32]net.Conn{}}
		h.insts[c] = st
	}
	st.busy.Add(1)
	st.last.Store(time.Now().UnixNano())
	return st
}

// peek returns the caller's state without creating it (nil if none), marked busy.
func (h *Host) peek(c runtime.Caller) *instState {
	h.mu.Lock()
	defer h.mu.Unlock()
	st := h.insts[c]
	if st != nil {
		st.busy.Add(1)
		st.last.Store(time.Now().UnixNano())
	}
	return st
}

func (st *instState) done() {
	st.last.Store(time.Now().UnixNano())
	st.busy.Add(-1)
}

func (st *instState) close() {
	st.mu.Lock()
	conns := st.conns
	st.conns = map[int32]net.Conn{}
	st.closed = true
	st.result, st.hasResult = nil, false
	st.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

func (h *Host) sweeper() {
	defer close(h.done)
	t := time.NewTicker(h.cfg.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-h.stop:
			return
		case <-t.C:
			h.sweep(time.Now())
		}
	}
}

// sweep drops the state of instances whose module is gone, or that have been idle too long.
func (h *Host) sweep(now time.Time) {
	var drop []*instState
	h.mu.Lock()
	for k, st := range h.insts {
		if st.busy.Load() > 0 {
			continue
		}
		s := st.mod.State()
		gone := s == runtime.StateStopped || s == runtime.StateFailed
		idle := now.Sub(time.Unix(0, st.last.Load())) > h.cfg.IdleTimeout
		if gone || idle {
			delete(h.insts, k)
			drop = append(drop, st)
		}
	}
	h.mu.Unlock()
	for _, st := range drop {
		st.close()
	}
}

// deadline is the earlier of ctx's deadline and now + the calling module's call timeout.
func deadline(ctx context.Context, m *runtime.Module) time.Time {
	d := time.Now().Add(m.Config().CallTimeout)
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
