package supervisor

import (
	"context"
	"fmt"

	"go.opentelemetry.io/otel/trace"

	"github.com/wasmpod/wasmpod/cluster/scatter"
	"github.com/wasmpod/wasmpod/host/internal/podspec"
	"github.com/wasmpod/wasmpod/internal/spans"
	"github.com/wasmpod/wasmpod/runtime"
)

// Handle is a long-lived reference to one module of the pod for the scatter/gather service:
// the module is looked up once, and every call goes to whichever version runs at the time
// (upgrades, rollbacks and restarts included), scheduled by priority like Supervisor.Call.
//
// A leaf module's Handle is a scatter.LocalLeaf (a Gather runs it on its workers); a merge
// module's Handle is a scatter.Merger. Neither admits the call as ingress traffic: the ingress
// route does that once per request with AdmitIngress.
type Handle struct {
	s *Supervisor
	u *unit
}

var (
	_ scatter.LocalLeaf = (*Handle)(nil)
	_ scatter.Merger    = (*Handle)(nil)
)

// Handle returns a handle on the named module, which must have the given role (leaf or
// merge): ErrNotFound for no such module, ErrInvalid for another role.
func (s *Supervisor) Handle(name string, role podspec.Role) (*Handle, error) {
	u, err := s.unit(name)
	if err != nil {
		return nil, err
	}
	if u.sp().Role != role {
		return nil, fmt.Errorf("module %q has role %s, not %s: %w", name, u.sp().Role, role, ErrInvalid)
	}
	if role != podspec.RoleLeaf && role != podspec.RoleMerge {
		return nil, fmt.Errorf("module %q: a handle is for leaf or merge modules, not %s: %w", name, role, ErrInvalid)
	}
	return &Handle{s: s, u: u}, nil
}

// Name is the module's name.
func (h *Handle) Name() string { return h.u.sp().Name }

// Ready reports whether the module has a running version ready for traffic.
func (h *Handle) Ready() bool {
	g := h.u.active.Load()
	// A paused module keeps its ready flag but admits no calls: not ready, as for /readyz.
	return g != nil && g.ready.Load() && g.state() == runtime.StateRunning
}

// RunsLocally is true: the module runs in this process (scatter.LocalLeaf).
func (h *Handle) RunsLocally() bool { return true }

// Call calls a leaf module's handler (scatter.Leaf). The request id is not needed locally.
func (h *Handle) Call(ctx context.Context, _ scatter.RequestID, in, dst []byte) ([]byte, error) {
	ctx, g, done, err := h.enter(ctx)
	if err != nil {
		return dst, err
	}
	defer done()
	if spans.On() {
		return tracedCall(ctx, g.mod, runtime.RoleLeaf, in, dst)
	}
	return g.mod.Call(ctx, runtime.RoleLeaf, in, dst)
}

// Merge calls a merge module's handler on parts (scatter.Merger).
func (h *Handle) Merge(ctx context.Context, parts []runtime.Part, dst []byte) ([]byte, error) {
	ctx, g, done, err := h.enter(ctx)
	if err != nil {
		return dst, err
	}
	defer done()
	if spans.On() {
		var span trace.Span
		ctx, span = callSpan(ctx, g.mod, runtime.RoleMerge)
		out, err := g.mod.Merge(ctx, parts, dst)
		spans.End(span, err)
		return out, err
	}
	return g.mod.Merge(ctx, parts, dst)
}

// enter picks the version to call and admits the call with the scheduler; the call runs with
// the returned context (a low-priority call's marks it as scavenging work), and done ends it.
func (h *Handle) enter(ctx context.Context) (_ context.Context, g *generation, done func(), err error) {
	g = h.u.active.Load()
	if g == nil || !g.ready.Load() {
		return ctx, nil, nil, fmt.Errorf("module %q: %w", h.u.sp().Name, ErrNotReady)
	}
	s := h.s
	if h.u.low {
		lctx, err := s.sched.AcquireLow(ctx)
		if err != nil {
			return ctx, nil, nil, fmt.Errorf("module %q: no spare CPU for a low-priority call: %w: %w", h.u.sp().Name, runtime.ErrOverloaded, err)
		}
		ctx, done = lctx, s.sched.ReleaseLow
	} else {
		s.sched.Enter()
		done = s.sched.Exit
	}
	if err := g.awaitHandover(ctx); err != nil {
		done()
		return ctx, nil, nil, err
	}
	return ctx, g, done, nil
}

// AdmitIngress admits one ingress request that is not a call to the main module (a scatter
// root request, or a shard call from another node's root): Drain waits for it, and it fails
// with ErrDraining once the pod is shutting down. Call release when the request is done.
func (s *Supervisor) AdmitIngress() (release func(), err error) {
	s.inflight.Add(1)
	if s.draining.Load() {
		s.inflight.Add(-1)
		return nil, ErrDraining
	}
	return s.releaseIngress, nil
}

func (s *Supervisor) releaseIngress() { s.inflight.Add(-1) }
