package supervisor

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/wasmpod/wasmpod/host/internal/podspec"
	"github.com/wasmpod/wasmpod/host/internal/snapshot"
	"github.com/wasmpod/wasmpod/runtime"
)

// ErrBusy: another operation holds the module (an upgrade waiting for its new version to get
// ready, a start in a slow wasmpod_start, ...); the error names it and since when. Try again,
// or stop the module, which cuts it.
var ErrBusy = errors.New("module busy")

// lockUnit finds a module and takes its operation lock for what, waiting until ctx ends (then
// the error wraps ErrBusy), and refuses a module that is closed. ctx is the operation's: an
// operator's stop cuts it. The caller must call end.
func (s *Supervisor) lockUnit(ctx context.Context, name, what string) (u *unit, _ context.Context, end func(), err error) {
	u, err = s.unit(name)
	if err != nil {
		return nil, nil, nil, err
	}
	ctx, end, err = u.beginOp(ctx, what)
	if err != nil {
		return nil, nil, nil, err
	}
	if u.closed {
		end()
		return nil, nil, nil, ErrClosed
	}
	return u, ctx, end, nil
}

// StopModule stops a module at an operator's request: drained, snapshotted, and not restarted
// until StartModule. An operator who says stop means now: an operation under way on the
// module (an upgrade, rollback, reload or restart waiting for its new version to get ready, a
// start in a slow wasmpod_start) is cut, and fails as it does when it cannot complete (an
// upgrade leaves the old version and spec), and then the module stops. What it cannot cut (the
// stop of a failed version, which saves its state within the grace period; the pod's start or
// shutdown) it waits for, until ctx ends (the error then wraps ErrBusy).
func (s *Supervisor) StopModule(ctx context.Context, name string) error {
	u, err := s.unit(name)
	if err != nil {
		return err
	}
	if err := u.opMu.lockCutting(ctx, name, "a stop", errStopped); err != nil {
		return err
	}
	defer u.opMu.Unlock()
	if u.closed {
		return ErrClosed
	}
	u.markStopped()
	return u.halt(ctx, "stopped by operator", true)
}

// markStopped records an operator's stop: not wanted running, no restart scheduled. StopModule
// calls it, and so does every start or restart cut by a stop (cutByStop) before it returns: the
// stop that cut it may still fail to take the lock (its context ended while something it
// cannot cut took the lock first), and the module must not then stay down as if it were
// waiting for a restart that nothing schedules. With opMu held.
func (u *unit) markStopped() {
	u.wantRunning = false
	if u.retry != nil {
		u.retry.Stop()
	}
	u.mu.Lock()
	u.reason = "Stopped"
	u.nextRestart = time.Time{}
	u.mu.Unlock()
}

// StartModule starts a module an operator stopped, or one waiting in back-off (at once, with its
// failure count reset).
func (s *Supervisor) StartModule(ctx context.Context, name string) error {
	ctx, cancel := s.opContext(ctx)
	defer cancel()
	u, ctx, end, err := s.lockUnit(ctx, name, "a start")
	if err != nil {
		return err
	}
	defer end()
	if u.gen != nil {
		return fmt.Errorf("module %q is already running: %w", name, ErrConflict)
	}
	u.wantRunning = true
	if u.retry != nil {
		u.retry.Stop()
	}
	u.mu.Lock()
	u.failures = 0
	u.mu.Unlock()
	if err := u.launch(ctx); err != nil {
		if cutByStop(ctx) {
			u.markStopped()
			return fmt.Errorf("module %q: start cut: %w (%w): %v", name, errStopped, ErrConflict, err)
		}
		u.failedLocked(err)
		return err
	}
	return nil
}

// RestartModule restarts a module the way Upgrade switches versions, with the same version:
// fresh instances are started (from the stored snapshot) and must get ready, then traffic
// switches to them and the old ones drain, so a restart drops no request. A stateful module
// (one that exports wasmpod_snapshot and wasmpod_restore) hands its state over as in Upgrade:
// calls arriving during the handover wait (they are not refused) for the drain, snapshot and
// restore, a pause of milliseconds for small states. If the fresh instances cannot start or
// get ready, the running ones keep serving and the error wraps ErrUpgradeFailed. A module
// that is not running (failed, in back-off, stopped) or a WASI command stage is simply
// started again.
//
// The module's Restarts count one when the fresh instances took over (also when they refused
// the handed-over state and the old version was started again from it), not when the running
// ones kept serving: that restarted nothing. Starting a module that was not running counts as
// the restart policy's starts do, whether or not it starts.
func (s *Supervisor) RestartModule(ctx context.Context, name string) error {
	ctx, cancel := s.opContext(ctx)
	defer cancel()
	u, ctx, end, err := s.lockUnit(ctx, name, "a restart")
	if err != nil {
		return err
	}
	defer end()
	u.wantRunning = true
	if u.retry != nil {
		u.retry.Stop()
	}
	if old := u.gen; old != nil && old.cmd == nil {
		err := u.upgrade(ctx, u.wasm, whatRestart, nil)
		if u.gen != nil && u.gen != old {
			u.countRestart()
		}
		return err
	}
	if err := u.halt(ctx, "restarted by operator", true); err != nil {
		return err
	}
	if cutByStop(ctx) {
		u.markStopped()
		return fmt.Errorf("module %q: restart cut: %w (%w)", name, errStopped, ErrConflict)
	}
	err = u.launch(ctx)
	if err != nil && cutByStop(ctx) {
		u.markStopped()
		return fmt.Errorf("module %q: restart cut: %w (%w): %v", name, errStopped, ErrConflict, err)
	}
	u.countRestart()
	if err != nil {
		u.failedLocked(err)
		return err
	}
	return nil
}

func (u *unit) countRestart() {
	u.mu.Lock()
	u.restarts++
	u.mu.Unlock()
}

// whatRestart is the upgrade that keeps the version: RestartModule.
const whatRestart = "restart"

// Pause stops a module admitting calls and ticks; in-flight calls finish. It acts at once or
// not at all: while another operation holds the module (an upgrade waiting for its new version
// to get ready, say) it fails with ErrBusy, naming that operation, after at most busyWait.
func (s *Supervisor) Pause(name string) error { return s.pauseResume(name, true) }

// Resume admits calls again after Pause. Like Pause, it fails with ErrBusy while another
// operation holds the module.
func (s *Supervisor) Resume(name string) error { return s.pauseResume(name, false) }

func (s *Supervisor) pauseResume(name string, pause bool) error {
	u, err := s.unit(name)
	if err != nil {
		return err
	}
	if err := u.opMu.lockQuick(name, map[bool]string{true: "a pause", false: "a resume"}[pause]); err != nil {
		return err
	}
	defer u.opMu.Unlock()
	if u.gen == nil {
		return fmt.Errorf("module %q is not running: %w", name, ErrConflict)
	}
	if u.gen.cmd != nil {
		return fmt.Errorf("module %q is a WASI command stage: it has no instances to pause or resume (each run is its own): %w", name, ErrConflict)
	}
	if pause {
		err = u.gen.mod.Pause()
	} else {
		err = u.gen.mod.Resume()
	}
	if errors.Is(err, runtime.ErrIllegalTransition) {
		return fmt.Errorf("%w: %w", ErrConflict, err)
	}
	return err
}

// ScaleBounds returns the warm pool sizes an operator or the module may ask for: the spec's
// allowScale bounds when set, else 1 to resources.concurrency.
func ScaleBounds(m *podspec.Module) (lo, hi int) {
	if m.AllowScale != nil {
		return int(m.AllowScale.Min), int(m.AllowScale.Max)
	}
	return 1, int(m.Resources.Concurrency)
}

// Scale sets a module's warm pool size, within ScaleBounds. Like Pause, it fails with ErrBusy
// while another operation holds the module: the version it would scale may be about to go.
func (s *Supervisor) Scale(name string, n int) error {
	u, err := s.unit(name)
	if err != nil {
		return err
	}
	lo, hi := ScaleBounds(u.sp())
	if n < lo || n > hi {
		return fmt.Errorf("%w: module %q: replicas %d outside the spec's bounds [%d, %d]", ErrInvalid, name, n, lo, hi)
	}
	if err := u.opMu.lockQuick(name, "a scale"); err != nil {
		return err
	}
	defer u.opMu.Unlock()
	if u.gen == nil {
		return fmt.Errorf("module %q is not running: %w", name, ErrConflict)
	}
	if u.gen.cmd != nil {
		return fmt.Errorf("module %q is a WASI command stage: it has no warm pool to scale (resources.concurrency bounds its runs): %w", name, ErrConflict)
	}
	return u.gen.mod.Scale(n)
}

// Upgrade replaces a module's version while the pod serves: the new version is loaded, its pool
// warmed (with the stored snapshot restored), and it must report ready within its readiness
// probe's thresholds (or UpgradeReadyTimeout); then traffic switches to it atomically and the
// old version drains. If the new version fails to load, start or get ready, it is discarded and
// the old one keeps serving: the error wraps ErrUpgradeFailed.
//
// State carries across when the old version exports wasmpod_snapshot and the new one
// wasmpod_restore (a stateful module). Then the switch is a handover, in this order:
//
//  1. switch: calls go to the new version, but wait (they are not refused) before running;
//  2. the old version drains: calls admitted to it before the switch finish on it;
//  3. its snapshot is taken (after the drain, so it holds every write it acknowledged) and
//     persisted to the snapshot store (atomically; the old version's digest in the header);
//  4. the snapshot is restored into every instance of the new version;
//  5. the waiting calls run, on the restored state.
//
// So no write is lost and none is applied to a state that is about to be replaced: a call
// either completed on the old version (and is in the snapshot) or runs on the new one after the
// restore. The price is a pause of the drain plus snapshot and restore (milliseconds for small
// states; the drain is bounded by the pod's grace period). If the new version refuses the state,
// it is stopped and the old version is started again from that snapshot (automatic rollback);
// the error wraps ErrUpgradeFailed. An empty snapshot hands nothing over (it is what a Go guest
// without a snapshot hook answers): the new version keeps the stored snapshot it started with.
// Without the exports the switch does not pause, and the old version's state (if any) is only
// persisted.
func (s *Supervisor) Upgrade(ctx context.Context, name string, wasm []byte) error {
	u, err := s.unit(name)
	if err != nil {
		return err
	}
	ctx, cancel := s.opContext(ctx)
	defer cancel()
	// Load the new version once before taking the module's operation lock: an upload that is
	// refused, or whose start function or _initialize runs into its deadline, fails here and
	// never holds up restart or another upgrade. (The load under the lock finds the compiled
	// code in the cache.)
	g, err := u.load(ctx, wasm, digest(wasm))
	if err != nil {
		err = fmt.Errorf("module %q: upgrade to %.12s: %w: %w", name, digest(wasm), ErrUpgradeFailed, err)
		u.mu.Lock()
		u.lastError = err.Error()
		u.mu.Unlock()
		u.s.log.Warn("upgrade failed, old version keeps serving", "module", name, "err", err)
		return err
	}
	g.close(ctx)
	ctx, end, err := u.beginOp(ctx, "an upgrade")
	if err != nil {
		return err
	}
	defer end()
	return u.upgrade(ctx, wasm, "upgrade", nil)
}

// Rollback goes back to the version before the last successful upgrade (or rollback).
func (s *Supervisor) Rollback(ctx context.Context, name string) error {
	u, err := s.unit(name)
	if err != nil {
		return err
	}
	ctx, cancel := s.opContext(ctx)
	defer cancel()
	ctx, end, err := u.beginOp(ctx, "a rollback")
	if err != nil {
		return err
	}
	defer end()
	if u.prevWasm == nil {
		return fmt.Errorf("module %q: %w", name, ErrNoPrevious)
	}
	return u.upgrade(ctx, u.prevWasm, "rollback", nil)
}

// upgrade switches the module to wasm run under spec (nil: the current spec), as Upgrade
// describes. The version and the spec go together: on success both are the new ones; on any
// failure both are what they were, and whatever runs (the old version kept serving, or started
// again after a refused handover) runs under the old spec. Call with opMu held.
func (u *unit) upgrade(ctx context.Context, wasm []byte, what string, spec *podspec.Module) error {
	if u.closed {
		return ErrClosed
	}
	sha := digest(wasm)
	if what == whatRestart {
		sha = u.sha
	}
	prevSpec := u.sp()
	if spec != nil {
		// The new version is loaded, started and probed under its spec: moduleConfig and the
		// probes read the unit's spec, so it is stored now and put back by fail.
		u.spec.Store(spec)
	}
	fail := func(err error) error {
		u.spec.Store(prevSpec)
		if cutByStop(ctx) && errors.Is(err, context.Canceled) && !errors.Is(err, errStopped) {
			err = fmt.Errorf("%w: cut: %w", err, errStopped) // a guest call cut says only "canceled"
		}
		err = fmt.Errorf("module %q: %s to %.12s: %w: %w", u.sp().Name, what, sha, ErrUpgradeFailed, err)
		u.mu.Lock()
		u.lastError = err.Error()
		u.mu.Unlock()
		u.s.log.Warn("upgrade failed, old version keeps serving", "module", u.sp().Name, "err", err)
		return err
	}
	old := u.gen
	if old == nil && !u.wantRunning {
		// Stopped by an operator: check the new version loads, then it is what the next start
		// runs.
		g, err := u.load(ctx, wasm, sha)
		if err != nil {
			return fail(err)
		}
		g.close(ctx)
		u.commitVersion(wasm, sha, what)
		return nil
	}
	snap, err := u.s.store.Load(u.sp().Name)
	if err != nil {
		return fail(err)
	}
	g, err := u.startVersion(ctx, wasm, sha, snap)
	if err != nil {
		if old == nil {
			// Failed or in back-off: the new version is only committed once it has started, so
			// one that cannot start leaves the module as it was (its pending restart, if any,
			// retries the old version under the old spec) rather than the new bytes under the
			// old spec.
			return fail(fmt.Errorf("the module was not running and the new version did not start; version and spec stay as they were: %w", err))
		}
		return fail(err)
	}
	if old == nil {
		// As launch would, but with the new version: it takes traffic once its probes say so.
		u.commitVersion(wasm, sha, what)
		u.activate(g)
		u.s.log.Info("module upgraded", "module", u.sp().Name, "what", what, "sha256", sha, "version", u.version)
		return nil
	}
	if err := u.waitReady(ctx, g); err != nil {
		g.cancel = func() {}
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		if g.mod != nil {
			g.mod.Stop(sctx, runtime.StopOptions{}) // no snapshot: the old version's state stands
		}
		g.close(sctx)
		cancel()
		return fail(fmt.Errorf("new version never got ready, rolled back: %w", err))
	}
	carry := old.hasLifecycle("snapshot") && g.hasLifecycle("restore")
	if carry {
		g.hold = make(chan struct{})
	}
	if old.state() == runtime.StatePaused && g.mod != nil {
		// An operator's pause holds until Resume: the new version takes over paused, before
		// it is published, so no call gets in behind the operator's back.
		if err := g.mod.Pause(); err != nil {
			u.s.log.Warn("the new version could not be paused like the old one", "module", u.sp().Name, "err", err)
		}
	}
	// Switch: the new version takes traffic from now on; calls that already hold the old one
	// finish on it while it drains.
	u.retire(old)
	u.gen = nil
	u.activate(g)
	g.ready.Store(true)
	if !carry {
		u.commitVersion(wasm, sha, what)
		if err := u.stopVersion(ctx, old, what+": old version drained", true); err != nil {
			u.s.log.Warn("old version did not stop cleanly", "module", u.sp().Name, "err", err)
		}
		u.s.log.Info("module upgraded", "module", u.sp().Name, "what", what, "sha256", sha, "version", u.version)
		return nil
	}
	return u.handover(ctx, old, g, wasm, sha, what, prevSpec, fail)
}

// handover carries the old version's state into g, which already takes (and holds) traffic.
// See Upgrade for the order. prevSpec is the spec old ran under, which a rollback restarts it
// under. Call with opMu held.
func (u *unit) handover(ctx context.Context, old, g *generation, wasm []byte, sha, what string, prevSpec *podspec.Module, fail func(error) error) error {
	defer close(g.hold)
	// Past the switch the handover must finish even if the caller goes away: it is bounded by
	// the grace period (drain) and the readiness timeout (snapshot and restore).
	hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), u.s.pod.Spec.GracePeriod()+u.s.cfg.UpgradeReadyTimeout)
	defer cancel()
	state, taken, err := u.stopVersionState(hctx, old, what+": old version drained for the handover", true, true)
	if err != nil {
		u.s.log.Warn("old version did not stop cleanly", "module", u.sp().Name, "err", err)
	}
	if taken && len(state) == 0 {
		// An empty snapshot hands nothing over: it is what a version without a snapshot hook
		// answers (the Go SDK always exports the lifecycle functions), so between versions it
		// cannot be told from "no state". The new version keeps the state it started with (the
		// stored snapshot, which stays on disk).
		u.commitVersion(wasm, sha, what)
		u.s.log.Info("module upgraded", "module", u.sp().Name, "what", what, "sha256", sha, "version", u.version, "stateBytes", 0)
		return nil
	}
	if !taken {
		// Nothing to carry: the new version serves the state it started with (the last stored
		// snapshot). Said loudly, since writes made since that snapshot are not in it.
		u.commitVersion(wasm, sha, what)
		msg := fmt.Sprintf("module %q: %s: the old version's snapshot could not be taken; the new version serves the last stored snapshot: %v", u.sp().Name, what, err)
		u.mu.Lock()
		u.lastError = msg
		u.mu.Unlock()
		u.s.log.Error("upgrade handover without state", "module", u.sp().Name, "err", err)
		return nil
	}
	if rerr := g.mod.Restore(hctx, state); rerr != nil {
		// The new version refused the state: back to the old version, from that snapshot.
		u.retire(g)
		u.gen = nil
		u.active.CompareAndSwap(g, nil)
		u.stopVersion(hctx, g, what+": new version refused the state", false)
		// The old version comes back as it ran: under its own spec (config, memory, mounts,
		// network), not the one that came with the refused version. The spec goes back before
		// the start since startVersion and the probes read it from the unit; so does a restart
		// scheduled if this start fails.
		u.spec.Store(prevSpec)
		// The drain may have used up hctx: the old version gets a budget of its own to start.
		// A shutdown that began meanwhile cuts it: the state is persisted already, and Shutdown
		// would stop the old version again at once.
		bctx, bcancel := context.WithTimeout(context.WithoutCancel(ctx), u.s.pod.Spec.GracePeriod()+u.s.cfg.UpgradeReadyTimeout)
		defer bcancel()
		bctx, bstop := u.s.opContext(bctx)
		defer bstop()
		back, err := u.startVersion(bctx, u.wasm, u.sha, &snapshot.Snapshot{Module: u.sp().Name, WasmSHA256: old.sha, State: state})
		if err != nil {
			u.failedLocked(err)
		} else {
			u.activate(back)
		}
		return fail(fmt.Errorf("new version refused the old version's state, rolled back: %w", rerr))
	}
	u.commitVersion(wasm, sha, what)
	u.s.log.Info("module upgraded", "module", u.sp().Name, "what", what, "sha256", sha, "version", u.version, "stateBytes", len(state))
	return nil
}

// commitVersion makes wasm the module's version after a successful switch; a restart keeps the
// version it restarted.
func (u *unit) commitVersion(wasm []byte, sha, what string) {
	if what != whatRestart {
		u.switchVersion(wasm, sha)
	}
}

func (u *unit) switchVersion(wasm []byte, sha string) {
	u.prevWasm, u.prevSHA = u.wasm, u.sha
	u.wasm, u.sha = wasm, sha
	u.version++
	u.ver.Store(&versionInfo{u.version, u.sha, u.prevSHA})
}

type versionInfo struct {
	version   int
	sha, prev string
}

// waitReady waits for g to get ready the way its probes would take it into traffic. With a
// startup probe: one ready answer within that probe's window (InitialDelay, then Period *
// FailureThreshold), as Kubernetes holds the other probes until the startup probe succeeds;
// that is all without a readiness probe. With a readiness probe: SuccessThreshold ready answers
// in a row within InitialDelay, then Period * (FailureThreshold + SuccessThreshold - 1): room
// for the failures the probe tolerates and then the successes it needs (a window of
// FailureThreshold periods alone could never see more successes than that). With neither: one
// ready answer within UpgradeReadyTimeout, polled every ProbePoll.
func (u *unit) waitReady(ctx context.Context, g *generation) error {
	if g.cmd != nil {
		return nil // compiled is ready
	}
	sp, rp := u.sp().StartupProbe, u.sp().ReadinessProbe
	if sp != nil {
		if err := u.pollReady(ctx, g, "startup probe", *sp, sp.Period(), time.Duration(sp.FailureThreshold)*sp.Period(), 1); err != nil {
			return err
		}
		if rp == nil {
			return nil
		}
	}
	if rp != nil {
		window := time.Duration(rp.FailureThreshold+rp.SuccessThreshold-1) * rp.Period()
		return u.pollReady(ctx, g, "readiness probe", *rp, rp.Period(), window, int(rp.SuccessThreshold))
	}
	probe := podspec.DefaultProbe()
	return u.pollReady(ctx, g, "no readiness probe", probe, u.s.cfg.ProbePoll, u.s.cfg.UpgradeReadyTimeout, 1)
}

// pollReady waits probe's initial delay, then polls g's health every poll until it reported
// ready need times in a row, or fails once the next poll would come after window. what names
// the probe in the error.
func (u *unit) pollReady(ctx context.Context, g *generation, what string, probe podspec.Probe, poll, window time.Duration, need int) error {
	if !sleepCtx(ctx, probe.InitialDelay()) {
		return fmt.Errorf("%s: waiting for its initial delay: %w", what, context.Cause(ctx))
	}
	deadline := time.Now().Add(window)
	var last string
	for succ := 0; ; {
		h, busy, err := u.probe(ctx, g, &probe)
		if busy {
			err = errors.New("every instance busy") // not yet taking traffic: cannot be load
		}
		if err == nil && h == runtime.Ready {
			if succ++; succ >= need {
				return nil
			}
		} else {
			succ = 0
			last = "health " + h.String()
			if err != nil {
				last += ": " + err.Error()
			}
		}
		if time.Now().Add(poll).After(deadline) {
			return fmt.Errorf("%s: not ready within %s (%d of %d ready answers in a row; last failure: %s)", what, window, succ, need, last)
		}
		if !sleepCtx(ctx, poll) {
			return fmt.Errorf("%s: waiting for ready (last failure: %s): %w", what, last, context.Cause(ctx))
		}
	}
}

// ModuleStatus is what the admin API says about one module.
type ModuleStatus struct {
	Name     string           `json:"name"`
	Role     podspec.Role     `json:"role"`
	Priority podspec.Priority `json:"priority"`
	// State is the lifecycle state of the running version (stopped or failed when none runs).
	State runtime.State `json:"state"`
	// Reason qualifies the state: CrashLoopBackOff, Failed, Stopped (by an operator), or empty.
	Reason string `json:"reason,omitempty"`
	Ready  bool   `json:"ready"`
	// Version counts the versions this module has run (1 at start, +1 per upgrade or rollback).
	Version        int    `json:"version"`
	SHA256         string `json:"sha256"`
	PreviousSHA256 string `json:"previousSha256,omitempty"`
	// Calls is the export traffic goes to (http or handle for main), or "command" for a stage
	// module whose version is a WASI command.
	Calls string `json:"calls,omitempty"`
	// Restarts counts the times the module was started again: each start the restart policy
	// makes after a failure (as Kubernetes' restartCount, also one that fails again, so a
	// crash loop climbs), and each operator restart that replaced the running instances. A
	// restart whose fresh instances never took over (the running ones kept serving) restarted
	// nothing and is not counted; its error is in LastError.
	Restarts int `json:"restarts"`
	Failures int `json:"failures"`
	// Runs is how many stage runs are in flight on the running version (stage modules only).
	Runs int `json:"runs,omitempty"`
	// Image says whether the running version's instances (a module's) or runs (a command's)
	// start from an instance image: "ready: ...", "pending: ..." or "refused: <why>"
	// (runtime.Info.Image, runtime.Command.Image).
	Image string `json:"image,omitempty"`
	// LastBackoff is the delay before the last scheduled restart; NextRestart when it happens.
	LastBackoff string            `json:"lastBackoff,omitempty"`
	NextRestart *time.Time        `json:"nextRestart,omitempty"`
	LastError   string            `json:"lastError,omitempty"`
	StartedAt   *time.Time        `json:"startedAt,omitempty"`
	Instances   int               `json:"instances"`
	Target      int               `json:"target"`
	Config      map[string]string `json:"config,omitempty"`
	Spec        *podspec.Module   `json:"spec"`
}

// Status returns the named module's status.
func (s *Supervisor) Status(name string) (ModuleStatus, error) {
	u, err := s.unit(name)
	if err != nil {
		return ModuleStatus{}, err
	}
	return u.status(), nil
}

// Statuses returns every module's status, in start order.
func (s *Supervisor) Statuses() []ModuleStatus {
	out := make([]ModuleStatus, len(s.units))
	for i, u := range s.units {
		out[i] = u.status()
	}
	return out
}

func (u *unit) status() ModuleStatus {
	st := ModuleStatus{Name: u.sp().Name, Role: u.sp().Role, Priority: u.sp().Priority, Config: u.sp().Config, Spec: u.sp()}
	g := u.active.Load()
	u.mu.Lock()
	st.Restarts, st.Failures, st.Reason = u.restarts, u.failures, u.reason
	st.LastError = u.lastError
	if u.lastBackoff > 0 {
		st.LastBackoff = u.lastBackoff.String()
	}
	if !u.nextRestart.IsZero() {
		t := u.nextRestart
		st.NextRestart = &t
	}
	u.mu.Unlock()
	if v := u.ver.Load(); v != nil {
		st.Version, st.SHA256, st.PreviousSHA256 = v.version, v.sha, v.prev
	}
	if g != nil {
		st.State = g.state()
		st.Ready = g.ready.Load() && st.State == runtime.StateRunning
		t := g.started
		st.StartedAt = &t
		// A command has no instances between runs: each run in flight is one, and the module's
		// concurrency is the most it has.
		ms := g.stats(int(u.sp().Resources.Concurrency))
		st.Instances, st.Target = ms.Instances, ms.Target
		st.Runs = g.runs.count()
		if g.cmd != nil {
			st.Calls, st.Image = "command", g.cmd.Image()
		} else {
			st.Calls, st.Image = g.role.String(), g.mod.Info().Image
			if st.LastError == "" {
				st.LastError = g.mod.LastError()
			}
		}
	} else if st.Reason == "Stopped" || st.Reason == "" {
		st.State = runtime.StateStopped
	} else {
		st.State = runtime.StateFailed
	}
	return st
}

// Reconfigure runs a module under a new spec (a pod file reload): a version of wasm loaded
// under m is loaded, warmed, probed and switched in like an upgrade, with the old version's
// state handed over. It applies whole or not at all: if it fails (the error wraps
// ErrUpgradeFailed), the module keeps its version, bytes and spec, and the old version runs
// under the old spec, also when it is started again after the new one refused its state. A
// module that is not running but should be (failed, in back-off) switches only if the new
// version starts. The name, role and priority cannot change while the pod runs (ErrInvalid),
// nor a stage module's concurrency.
func (s *Supervisor) Reconfigure(ctx context.Context, m *podspec.Module, wasm []byte) error {
	u, err := s.unit(m.Name)
	if err != nil {
		return err
	}
	ctx, cancel := s.opContext(ctx)
	defer cancel()
	ctx, end, err := u.beginOp(ctx, "a reload")
	if err != nil {
		return err
	}
	defer end()
	old := u.sp()
	if why := RestartOnlyChange(old, m); why != "" {
		return fmt.Errorf("module %q: %s changed, which needs a restart of the pod: %w", m.Name, why, ErrInvalid)
	}
	// upgrade switches spec and version together and puts both back on failure, including
	// before it starts the old version again after a refused handover.
	return u.upgrade(ctx, wasm, "reload", m)
}

// RestartOnlyChange names the field of a module's spec that changed from old to m and cannot be
// applied while the pod runs, or returns "".
func RestartOnlyChange(old, m *podspec.Module) string {
	switch {
	case old.Name != m.Name:
		return "name"
	case old.Role != m.Role:
		return "role"
	case old.Priority != m.Priority:
		return "priority"
	case old.Role == podspec.RoleStage && old.Resources.Concurrency != m.Resources.Concurrency:
		return "resources.concurrency (of a stage module)"
	}
	return ""
}

// Wasm returns the bytes and digest of the version the module runs (stopped or failed: the one
// its next start runs), which a failed pod reload puts back. The bytes are the supervisor's own
// and must not be modified. It waits for an operation under way on the module to end.
func (s *Supervisor) Wasm(name string) ([]byte, string, error) {
	u, err := s.unit(name)
	if err != nil {
		return nil, "", err
	}
	u.opMu.lockFor("a read of its version")
	defer u.opMu.Unlock()
	return u.wasm, u.sha, nil
}

// ModuleSpec returns the named module's current spec (it changes with Reconfigure), or nil.
func (s *Supervisor) ModuleSpec(name string) *podspec.Module {
	if u := s.byName[name]; u != nil {
		return u.sp()
	}
	return nil
}
