package supervisor

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wasmpod/wasmpod/host/internal/podspec"
	"github.com/wasmpod/wasmpod/host/internal/snapshot"
	"github.com/wasmpod/wasmpod/runtime"
)

// unit supervises one module of the pod across its versions and restarts.
type unit struct {
	s *Supervisor
	// spec is the module's spec; a pod reload swaps it (Reconfigure) under opMu, so read it
	// with sp() anywhere.
	spec atomic.Pointer[podspec.Module]
	low  bool

	// opMu serializes lifecycle operations (launch, halt, upgrade, operator commands); it
	// says which one holds it, and an operator's stop cuts that one (see opLock).
	opMu        opLock
	wasm        []byte
	sha         string
	prevWasm    []byte
	prevSHA     string
	version     int
	wantRunning bool
	closed      bool
	retry       *time.Timer
	gen         *generation // the running version, also in active once started

	// mu guards the status fields below, read by Status without opMu.
	mu          sync.Mutex
	restarts    int
	failures    int
	lastError   string
	reason      string
	nextRestart time.Time
	lastBackoff time.Duration
	totals      counters
	// retiring are the versions being stopped, whose counters are not in totals yet: Metrics
	// adds them, so that the counters do not go back while a version drains and runs its
	// snapshot and stop hooks (stopVersionState moves them into totals).
	retiring map[*generation]struct{}

	// ver is the version information Status shows, replaced whole on every switch.
	ver atomic.Pointer[versionInfo]

	// active is the version traffic goes to; nil when none runs.
	active atomic.Pointer[generation]

	// runSlots bounds a stage module's runs in flight (of every version) to its concurrency.
	runSlots chan struct{}
}

// opLock is a module's operation lock: a mutex for its lifecycle operations that also knows
// which operation holds it and since when (ErrBusy names it), lets a waiter give up when its
// context ends, and lets an operator's stop cut the holder (cutHolder). Make ch with one slot.
type opLock struct {
	ch chan struct{} // holds one token while the lock is held

	mu    sync.Mutex // guards the holder's description below
	what  string
	since time.Time
	cut   context.CancelCauseFunc // nil when the holder cannot be cut
}

// Lock takes the lock for the pod's start or shutdown (supervisor.go), which nothing cuts but
// the shutdown itself.
func (l *opLock) Lock() { l.lockFor("the pod's start or shutdown") }

// lockFor takes the lock for what, waiting as long as it takes; what cannot be cut.
func (l *opLock) lockFor(what string) {
	l.ch <- struct{}{}
	l.hold(what, nil)
}

// Unlock releases the lock.
func (l *opLock) Unlock() {
	l.hold("", nil)
	<-l.ch
}

func (l *opLock) hold(what string, cut context.CancelCauseFunc) {
	l.mu.Lock()
	l.what, l.since, l.cut = what, time.Now(), cut
	l.mu.Unlock()
}

// lock takes the lock for what (cut, when not nil, ends what's context; see cutHolder), or fails
// with busy's error and the context's cause once ctx ends.
func (l *opLock) lock(ctx context.Context, module, what string, cut context.CancelCauseFunc) error {
	select {
	case l.ch <- struct{}{}:
	default:
		select {
		case l.ch <- struct{}{}:
		case <-ctx.Done():
			return fmt.Errorf("%w: %w", l.busy(module), context.Cause(ctx))
		}
	}
	l.hold(what, cut)
	return nil
}

// lockQuick takes the lock for a command that acts at once (pause, resume, scale): it waits at
// most busyWait for the holder to finish, then fails with ErrBusy.
func (l *opLock) lockQuick(module, what string) error {
	ctx, cancel := context.WithTimeout(context.Background(), busyWait)
	defer cancel()
	err := l.lock(ctx, module, what, nil)
	if err != nil {
		return l.busy(module) // the timeout is ours, not the caller's: ErrBusy says it
	}
	return nil
}

// busyWait is how long a pause, resume or scale waits for another operation on the module
// before it fails with ErrBusy: long enough for the quick ones (another pause, a status
// change), far shorter than the slow ones (a readiness wait, a wasmpod_start).
const busyWait = 250 * time.Millisecond

// lockCutting takes the lock for what, cutting with cause whatever holds it meanwhile (also an
// operation that takes it first, queued behind the one cut), until ctx ends.
func (l *opLock) lockCutting(ctx context.Context, module, what string, cause error) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case l.ch <- struct{}{}:
			l.hold(what, nil)
			return nil
		default:
		}
		l.cutHolder(cause)
		select {
		case l.ch <- struct{}{}:
			l.hold(what, nil)
			return nil
		case <-ctx.Done():
			return fmt.Errorf("%w: %w", l.busy(module), context.Cause(ctx))
		case <-t.C:
		}
	}
}

// cutHolder ends the context of the operation holding the lock with cause, if it can be cut.
func (l *opLock) cutHolder(cause error) {
	l.mu.Lock()
	cut := l.cut
	l.mu.Unlock()
	if cut != nil {
		cut(cause)
	}
}

// busy describes the holder: "module "web": an upgrade is under way (since 12.3s); ...".
func (l *opLock) busy(module string) error {
	l.mu.Lock()
	what, since := l.what, l.since
	l.mu.Unlock()
	if what == "" {
		what, since = "another operation", time.Now()
	}
	return fmt.Errorf("module %q: %s is under way (since %s); try again, or stop the module, which cuts it: %w",
		module, what, time.Since(since).Round(100*time.Millisecond), ErrBusy)
}

// errStopped is the cause of an operation cut by an operator's stop (StopModule).
var errStopped = errors.New("stopped by an operator")

// cutByStop reports whether ctx was cut by an operator's stop.
func cutByStop(ctx context.Context) bool { return errors.Is(context.Cause(ctx), errStopped) }

// beginOp takes u's operation lock for what, waiting until ctx ends (then the error wraps
// ErrBusy and the context's cause), and returns the operation's context: it ends with ctx and
// when an operator's stop cuts the operation (cause errStopped). Call end when the operation
// is over: it releases the lock.
func (u *unit) beginOp(ctx context.Context, what string) (_ context.Context, end func(), _ error) {
	octx, cut := context.WithCancelCause(ctx)
	if err := u.opMu.lock(ctx, u.sp().Name, what, cut); err != nil {
		cut(nil)
		return nil, nil, err
	}
	return octx, func() {
		u.opMu.Unlock()
		cut(nil)
	}, nil
}

// generation is one started instance of a module version: a loaded module, or for a stage
// module whose version is a WASI command, the compiled command (see stage.go).
type generation struct {
	mod     *runtime.Module  // nil for a command
	cmd     *runtime.Command // nil for a module
	role    runtime.Role
	sha     string
	ready   atomic.Bool
	started time.Time
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	// hold, when not nil, is closed once a stateful upgrade's handover restored the old
	// version's state into this one; calls admitted to it wait for that. Set before the
	// generation is published, never changed after.
	hold chan struct{}

	runs     runGate   // the stage runs admitted to this version (AcquireStage)
	runStats *runStats // a command's runs; a module's calls are counted by the runtime
	// stopping and stopped give a command a lifecycle state (a module has its own).
	stopping, stopped atomic.Bool
}

// awaitHandover waits until g may serve calls (see hold), or ctx ends.
func (g *generation) awaitHandover(ctx context.Context) error {
	if g.hold == nil {
		return nil
	}
	select {
	case <-g.hold:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("module %q: waiting for the upgrade handover: %w: %w", g.mod.Name(), ErrNotReady, ctx.Err())
	}
}

// hasLifecycle reports whether a version has the named lifecycle export (snapshot, restore); a
// command has none.
func (g *generation) hasLifecycle(name string) bool {
	return g.mod != nil && slices.Contains(g.mod.Info().Lifecycle, name)
}

// close releases a version that is not running (never started, or stopped).
func (g *generation) close(ctx context.Context) error {
	g.runs.cut()
	if g.cmd != nil {
		return g.cmd.Close(ctx)
	}
	return g.mod.Close(ctx)
}

func newUnit(s *Supervisor, m *podspec.Module, wasm []byte) *unit {
	u := &unit{s: s, low: m.Priority < 0, wasm: wasm, sha: digest(wasm), version: 1}
	u.opMu.ch = make(chan struct{}, 1)
	u.spec.Store(m)
	if m.Role == podspec.RoleStage {
		u.runSlots = make(chan struct{}, max(m.Resources.Concurrency, 1))
	}
	u.ver.Store(&versionInfo{version: 1, sha: u.sha})
	return u
}

// sp returns the module's current spec.
func (u *unit) sp() *podspec.Module { return u.spec.Load() }

func digest(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// callRole returns the export calls go to (podspec's Module.CallRole), or an error naming
// what the role needs when the module serves nothing it calls.
func (u *unit) callRole(m *runtime.Module) (runtime.Role, error) {
	r, ok := u.sp().CallRole(m.HasRole)
	if ok {
		return r, nil
	}
	if u.sp().ABI == podspec.ABIExtism {
		if fn := u.sp().ExtismFunction(); fn != "" {
			return 0, fmt.Errorf("module %q (Extism): role %s calls function %q, which the module does not export: %w", u.sp().Name, u.sp().Role, fn, runtime.ErrNoExport)
		}
		return 0, fmt.Errorf("module %q (Extism): role %s calls a function named %s; name another with extism.function: %w", u.sp().Name, u.sp().Role, r, runtime.ErrNoExport)
	}
	switch u.sp().Role {
	case podspec.RoleMain:
		return 0, fmt.Errorf("module %q: role main needs export wasmpod_http or wasmpod_handle: %w", u.sp().Name, runtime.ErrNoExport)
	case podspec.RoleStage:
		return 0, fmt.Errorf("module %q: role stage needs export wasmpod_stage (or be a WASI command exporting %s): %w", u.sp().Name, exportStart, runtime.ErrNoExport)
	}
	return 0, fmt.Errorf("module %q: role %s needs export wasmpod_%s: %w", u.sp().Name, u.sp().Role, r, runtime.ErrNoExport)
}

func (u *unit) moduleConfig() (runtime.ModuleConfig, error) {
	m := u.sp()
	c := runtime.DefaultModuleConfig(m.Name)
	c.MaxMemoryPages = m.Resources.MemoryPages()
	c.CallTimeout = m.Resources.Timeout.Std()
	c.MaxConcurrency = int(m.Resources.Concurrency)
	c.MinInstances = int(m.Resources.MinInstances)
	c.StopGrace = u.s.pod.Spec.GracePeriod()
	c.Trusted = m.Trusted
	if m.AllowScale != nil {
		// The guest's scale import moves the warm pool within the spec's bounds, never outside.
		c.AllowScale = true
		c.ScaleMin = max(int(m.AllowScale.Min), 1)
		c.ScaleMax = max(int(m.AllowScale.Max), c.ScaleMin)
		c.MinInstances = min(max(c.MinInstances, c.ScaleMin), c.ScaleMax)
	}
	if u.low && !m.Trusted {
		// Low priority: the guest calls the scheduler every LowYieldInterval loop iterations,
		// which parks it while the host is busy (see Scheduler). Trusted modules are not
		// instrumented, so they are only admitted at the start of each call.
		c.Yield = u.s.sched.Yield
		c.YieldInterval = u.s.cfg.LowYieldInterval
	}
	c.Config = m.Config
	c.LogLinesPerSecond, c.LogLineBurst, c.LogBytesPerSecond, c.LogByteBurst = logLimits(m.Resources.Logs)
	if m.ABI == podspec.ABIExtism {
		// Extism plugins run unchanged; the spec's capabilities become Extism's allowed hosts
		// (network.allow, deny by default) and allowed paths (the mounts), extism.function
		// serves the role, and resources.vars bounds the vars.
		c.ABI = runtime.ABIExtism
		c.ExtismFunctions = m.ExtismFunctions()
		c.MaxVarBytes = m.Resources.Vars.Bytes()
	}
	if m.Network != nil {
		c.AllowedHosts = append([]string(nil), m.Network.Allow...)
	}
	for _, vm := range m.VolumeMounts {
		v := u.s.pod.Volume(vm.Name)
		if v == nil {
			return c, fmt.Errorf("module %q: volume %q: %w", m.Name, vm.Name, ErrInvalid)
		}
		var dir string
		switch {
		case v.HostPath != nil:
			dir = u.s.pod.ResolvePath(v.HostPath.Path)
			if v.HostPath.Type == podspec.HostPathDirectoryOrCreate {
				if err := os.MkdirAll(dir, 0o755); err != nil {
					return c, fmt.Errorf("module %q: volume %q: %w", m.Name, vm.Name, err)
				}
			}
		default:
			dir = filepath.Join(u.s.cfg.StateDir, "pods", u.s.pod.Metadata.Name, "volumes", v.Name)
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return c, fmt.Errorf("module %q: volume %q: %w", m.Name, vm.Name, err)
			}
		}
		mt := runtime.Mount{HostPath: dir, GuestPath: vm.MountPath, ReadOnly: vm.ReadOnly}
		if v.EmptyDir != nil {
			mt.SizeLimit = int64(v.EmptyDir.SizeLimit)
		}
		c.Mounts = append(c.Mounts, mt)
	}
	return c, nil
}

// load compiles wasm (whose digest is sha) as a version of this module, not started: a
// runtime.Module with its role export checked or, for a stage module whose bytes are a WASI
// command, a runtime.Command. Nothing is kept on error.
func (u *unit) load(ctx context.Context, wasm []byte, sha string) (*generation, error) {
	g := &generation{sha: sha}
	g.runs.init()
	if u.isCommandStage(wasm) {
		c, err := u.loadCommand(ctx, wasm)
		if err != nil {
			return nil, err
		}
		g.cmd, g.runStats = c, newRunStats()
		return g, nil
	}
	cfg, err := u.moduleConfig()
	if err != nil {
		return nil, err
	}
	m, err := u.s.engine.Load(ctx, wasm, cfg)
	if err != nil {
		return nil, fmt.Errorf("module %q: load: %w", u.sp().Name, err)
	}
	role, err := u.callRole(m)
	if err != nil {
		m.Close(ctx)
		return nil, err
	}
	g.mod, g.role = m, role
	return g, nil
}

// checkLoad loads and releases the current version: a module that cannot load fails the pod.
func (u *unit) checkLoad(ctx context.Context) error {
	g, err := u.load(ctx, u.wasm, u.sha)
	if err != nil {
		return err
	}
	return g.close(ctx)
}

// launch starts the current version with the stored snapshot and makes it active. Call with
// opMu held.
func (u *unit) launch(ctx context.Context) error {
	if u.closed {
		return ErrClosed
	}
	if u.gen != nil {
		return nil
	}
	snap, err := u.s.store.Load(u.sp().Name)
	if err != nil {
		return fmt.Errorf("module %q: %w", u.sp().Name, err)
	}
	g, err := u.startVersion(ctx, u.wasm, u.sha, snap)
	if err != nil {
		return err
	}
	u.activate(g)
	return nil
}

// startVersion loads and starts one version. With a readiness probe it starts not ready. A
// command has nothing to start: it runs once per stage run.
func (u *unit) startVersion(ctx context.Context, wasm []byte, sha string, snap *snapshot.Snapshot) (*generation, error) {
	g, err := u.load(ctx, wasm, sha)
	if err != nil {
		return nil, err
	}
	if g.cmd != nil {
		g.started = time.Now()
		return g, nil
	}
	m := g.mod
	var opts runtime.StartOptions
	if snap != nil {
		if g.hasLifecycle("restore") {
			opts.State = snap.State
		} else {
			// The snapshot stays on disk for a version that can read it (a rollback).
			u.s.log.Warn("module does not export wasmpod_restore: starting without its snapshot", "module", u.sp().Name, "sha256", sha)
		}
	}
	if err := m.Start(ctx, opts); err != nil {
		g.close(ctx)
		return nil, fmt.Errorf("module %q: start: %w", u.sp().Name, err)
	}
	g.started = time.Now()
	return g, nil
}

// activate makes g the running version and starts its probes and ticks (a command, which has
// neither, is ready at once).
func (u *unit) activate(g *generation) {
	u.gen = g
	if g.cmd != nil || u.sp().ReadinessProbe == nil && u.sp().StartupProbe == nil {
		g.ready.Store(true)
	}
	ctx, cancel := context.WithCancel(u.s.ctx)
	g.cancel = cancel
	u.active.Store(g)
	u.mu.Lock()
	u.reason = ""
	u.nextRestart = time.Time{}
	u.mu.Unlock()
	if g.cmd != nil {
		return
	}
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		u.watch(ctx, g)
	}()
}

// halt stops the running version: out of traffic, probes stopped, drained, snapshotted (when
// save is set), closed. Call with opMu held. Counters of the version are kept in the totals.
func (u *unit) halt(ctx context.Context, why string, save bool) error {
	g := u.gen
	if g == nil {
		return nil
	}
	u.retire(g)
	u.gen = nil
	u.active.CompareAndSwap(g, nil)
	return u.stopVersion(ctx, g, why, save)
}

// retire marks g as being stopped (see retiring) before it leaves active.
func (u *unit) retire(g *generation) {
	u.mu.Lock()
	if u.retiring == nil {
		u.retiring = map[*generation]struct{}{}
	}
	u.retiring[g] = struct{}{}
	u.mu.Unlock()
}

func (u *unit) stopVersion(ctx context.Context, g *generation, why string, save bool) error {
	_, _, err := u.stopVersionState(ctx, g, why, save, false)
	return err
}

// stopVersionState stops g: probes and ticks end, in-flight stage runs and calls drain (within
// the grace period), then, when save is set, the state is taken (wasmpod_snapshot), persisted
// (unless it is empty and skipEmpty is set) and returned with taken set (taken is false if the
// version has no snapshot export or taking or persisting it failed), then the stop export runs
// and the version is closed. A command only drains its runs and is closed.
func (u *unit) stopVersionState(ctx context.Context, g *generation, why string, save, skipEmpty bool) (state []byte, taken bool, _ error) {
	u.retire(g)
	grace := u.s.pod.Spec.GracePeriod()
	if dl, ok := ctx.Deadline(); ok {
		grace = min(grace, time.Until(dl))
	}
	deadline := time.Now().Add(grace)
	g.cancel()
	// The probes and ticks end at once when cut, except a trusted guest's, which nothing cuts:
	// they get the grace period (and a second to unwind), as the runtime gives its calls, and
	// are left behind after that rather than holding the stop (and a shutdown) up for good.
	if !waitUntil(&g.wg, max(time.Until(deadline), time.Second)) {
		u.s.log.Warn("a probe or tick still runs in the guest after the grace period (a trusted module's call is never cut): stopping without it", "module", u.sp().Name, "sha256", g.sha)
		u.s.strays.Add(1)
		go func() {
			g.wg.Wait()
			u.s.strays.Add(-1)
		}()
	}
	grace = max(time.Until(deadline), 0)
	g.stopping.Store(true)
	var drainErr error
	if left := g.runs.drain(grace); left > 0 {
		drainErr = fmt.Errorf("module %q: %d stage run(s) still running a second after being cut at the end of the grace period", u.sp().Name, left)
	}
	if g.cmd != nil {
		u.mu.Lock()
		u.totals.add(g.stats(int(u.sp().Resources.Concurrency)))
		delete(u.retiring, g)
		u.mu.Unlock()
		cerr := g.close(ctx)
		g.stopped.Store(true)
		u.s.log.Info("module stopped", "module", u.sp().Name, "why", why, "sha256", g.sha)
		if drainErr != nil || cerr != nil {
			return nil, false, fmt.Errorf("module %q: stop: %w", u.sp().Name, errors.Join(drainErr, cerr))
		}
		return nil, false, nil
	}
	// What is left of the grace period (the runtime takes a zero Grace for its default).
	opts := runtime.StopOptions{Grace: max(time.Until(deadline), time.Nanosecond)}
	var saveErr error
	if save {
		opts.Snapshot = func(st []byte) error {
			if len(st) > 0 || !skipEmpty && !u.keepsOthersState(g) {
				saveErr = u.s.store.Save(snapshot.Snapshot{Module: u.sp().Name, WasmSHA256: g.sha, State: st})
			}
			if saveErr == nil {
				state, taken = st, true
			}
			return saveErr
		}
	}
	err := g.mod.Stop(ctx, opts)
	u.mu.Lock()
	u.totals.add(g.mod.Stats())
	delete(u.retiring, g)
	u.mu.Unlock()
	cerr := g.close(ctx)
	u.s.log.Info("module stopped", "module", u.sp().Name, "why", why, "sha256", g.sha)
	if drainErr != nil || err != nil || saveErr != nil || cerr != nil {
		return state, taken, fmt.Errorf("module %q: stop: %w", u.sp().Name, errors.Join(drainErr, err, saveErr, cerr))
	}
	return state, taken, nil
}

// keepsOthersState reports whether an empty snapshot of g must not be saved: the store holds a
// state that another version wrote. Between versions an empty snapshot cannot be told from "no
// state" (the Go SDK answers empty without a snapshot hook), so, as in the upgrade's handover,
// it replaces nothing: a stateless version that is stopped or crashes after an upgrade leaves
// its stateful predecessor's state for a rollback. A version's empty state over its own (or
// over no state, or a file that does not check out) is saved.
func (u *unit) keepsOthersState(g *generation) bool {
	snap, err := u.s.store.Load(u.sp().Name)
	if err != nil || snap == nil || len(snap.State) == 0 || snap.WasmSHA256 == g.sha {
		return false
	}
	u.s.log.Info("empty snapshot not saved: the stored state is another version's", "module", u.sp().Name, "sha256", g.sha, "storedBy", snap.WasmSHA256)
	return true
}

// waitUntil waits for wg at most d, and reports whether it was done by then.
func waitUntil(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

// failedLocked records a failure of the module and, as the restart policy says, schedules the
// next start after the backoff delay. Call with opMu held.
func (u *unit) failedLocked(err error) {
	u.s.log.Error("module failed", "module", u.sp().Name, "err", err)
	u.s.logs.Log(runtime.LogEntry{Time: time.Now(), Module: u.sp().Name, Level: runtime.LevelError, Source: "host", Message: err.Error()})
	u.mu.Lock()
	u.lastError = err.Error()
	u.failures++
	n := u.failures
	u.mu.Unlock()
	// A failure during the shutdown (a start it cut) schedules nothing: the module is about to
	// be stopped for good.
	if u.closed || !u.wantRunning || u.s.ctx.Err() != nil || u.s.pod.Spec.RestartPolicy == podspec.RestartNever {
		u.mu.Lock()
		u.reason = "Failed"
		u.mu.Unlock()
		return
	}
	delay := u.s.pod.Spec.RestartBackoff.Delay(n)
	u.mu.Lock()
	u.reason = "CrashLoopBackOff"
	u.lastBackoff = delay
	u.nextRestart = time.Now().Add(delay)
	u.mu.Unlock()
	u.s.log.Info("module restart scheduled", "module", u.sp().Name, "in", delay.String(), "failures", n)
	if u.retry != nil {
		u.retry.Stop()
	}
	u.retry = time.AfterFunc(delay, func() {
		u.s.goBackground(func() {
			// An operator's stop cuts this start (a wasmpod_start that spins to its deadline).
			ctx, end, err := u.beginOp(u.s.ctx, "a restart after a failure")
			if err != nil {
				return // the shutdown began
			}
			defer end()
			if u.closed || !u.wantRunning || u.gen != nil {
				return
			}
			// Every start the policy makes counts, also one that fails again (Kubernetes'
			// restartCount): a crash loop climbs.
			u.mu.Lock()
			u.restarts++
			u.mu.Unlock()
			if err := u.launch(ctx); err != nil {
				if cutByStop(ctx) {
					u.markStopped()
				} else {
					u.failedLocked(err)
				}
			}
		})
	})
}

// crash handles a failure noticed by a watcher of g: stop g, then restart per policy.
func (u *unit) crash(g *generation, why string) {
	u.s.goBackground(func() {
		// Not cut by an operator's stop: this stop saves the state within the grace period,
		// and an operator's stop waits for it.
		u.opMu.lockFor("the stop of a failed version")
		defer u.opMu.Unlock()
		if u.gen != g {
			return // already replaced or stopped
		}
		if ran := time.Since(g.started); ran >= u.s.pod.Spec.RestartBackoff.ResetAfter.Std() {
			u.mu.Lock()
			u.failures = 0 // it ran healthy long enough: start the schedule again
			u.mu.Unlock()
		}
		ctx, cancel := context.WithTimeout(u.s.ctx, u.s.pod.Spec.GracePeriod())
		u.halt(ctx, why, true)
		cancel()
		u.failedLocked(fmt.Errorf("module %q: %s", u.sp().Name, why))
	})
}

// watch runs g's probes and ticks until ctx ends.
func (u *unit) watch(ctx context.Context, g *generation) {
	events, unsub := g.mod.Subscribe(16)
	defer unsub()
	var wg sync.WaitGroup
	defer wg.Wait()
	run := func(fn func()) {
		wg.Add(1)
		go func() { defer wg.Done(); fn() }()
	}
	run(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case e, ok := <-events:
				if !ok {
					return
				}
				if e.To == runtime.StateFailed {
					u.crash(g, "failed: "+e.Reason)
					return
				}
			}
		}
	})
	if iv := u.sp().TickInterval.Std(); iv > 0 {
		run(func() { u.tickLoop(ctx, g, iv) })
	}
	if p := u.sp().StartupProbe; p != nil {
		if !u.startupProbe(ctx, g, p) {
			return
		}
		if u.sp().ReadinessProbe == nil {
			g.ready.Store(true)
		}
	}
	if p := u.sp().ReadinessProbe; p != nil {
		run(func() { u.readinessLoop(ctx, g, p) })
	}
	if p := u.sp().LivenessProbe; p != nil {
		run(func() { u.livenessLoop(ctx, g, p) })
	}
	<-ctx.Done()
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// probe runs g's health check. busy is set, and nothing else, when every instance is busy with
// calls (or stayed busy for the probe's timeout): that is load, not ill health, so the caller
// keeps the last known result. A probe never queues behind user traffic: with every slot
// taken it does not wait for one (Kubernetes' probes do not queue behind requests either).
func (u *unit) probe(ctx context.Context, g *generation, p *podspec.Probe) (h runtime.Health, busy bool, err error) {
	if g.mod.State() != runtime.StateRunning {
		return runtime.NotReady, false, fmt.Errorf("module is %s", g.mod.State())
	}
	if st := g.mod.Stats(); st.Busy > 0 && st.Busy >= g.mod.Config().MaxConcurrency {
		return 0, true, nil
	}
	pctx, cancel := context.WithTimeout(ctx, p.Timeout())
	defer cancel()
	h, err = g.mod.Health(pctx)
	if err != nil && noFreeInstance(err) {
		return 0, true, nil
	}
	return h, false, err
}

// noFreeInstance reports whether a health check failed only because no instance was free to
// run it: overloaded, or the probe's timeout passed while it waited for one (a check that ran
// and was cut at its deadline wraps runtime.ErrDeadline instead).
func noFreeInstance(err error) bool {
	return errors.Is(err, runtime.ErrOverloaded) ||
		errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, runtime.ErrDeadline)
}

func (u *unit) startupProbe(ctx context.Context, g *generation, p *podspec.Probe) bool {
	if !sleepCtx(ctx, p.InitialDelay()) {
		return false
	}
	for fails := 0; ; {
		if g.mod.State() == runtime.StatePaused {
			// Paused by an operator: no answer to count either way, as for liveness.
			if !sleepCtx(ctx, p.Period()) {
				return false
			}
			continue
		}
		h, busy, err := u.probe(ctx, g, p)
		if ctx.Err() != nil {
			return false
		}
		if err == nil && h == runtime.Ready {
			return true
		}
		if busy {
			// Every instance busy (ticks): neither a success nor a failure; ask again.
			if !sleepCtx(ctx, p.Period()) {
				return false
			}
			continue
		}
		if fails++; fails >= int(p.FailureThreshold) {
			u.crash(g, fmt.Sprintf("startup probe failed %d times: health %s %v", fails, h, errOrNil(err)))
			return false
		}
		if !sleepCtx(ctx, p.Period()) {
			return false
		}
	}
}

func errOrNil(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func (u *unit) livenessLoop(ctx context.Context, g *generation, p *podspec.Probe) {
	if !sleepCtx(ctx, p.InitialDelay()) {
		return
	}
	fails := 0
	for {
		if g.mod.State() != runtime.StatePaused {
			h, busy, err := u.probe(ctx, g, p)
			if ctx.Err() != nil {
				return
			}
			switch {
			case busy:
				// Busy is alive: the last result stands, and a busy module is never restarted.
			case err != nil || h == runtime.Unhealthy:
				if fails++; fails >= int(p.FailureThreshold) {
					u.crash(g, fmt.Sprintf("liveness probe failed %d times in a row: health %s %s", fails, h, errOrNil(err)))
					return
				}
			default:
				fails = 0
			}
		}
		if !sleepCtx(ctx, p.Period()) {
			return
		}
	}
}

func (u *unit) readinessLoop(ctx context.Context, g *generation, p *podspec.Probe) {
	if !sleepCtx(ctx, p.InitialDelay()) {
		return
	}
	succ, fails := 0, 0
	for {
		h, busy, err := u.probe(ctx, g, p)
		if ctx.Err() != nil {
			return
		}
		switch {
		case busy:
			// Every instance is busy with calls: the last known readiness stands. Taking a
			// module out of traffic because it is busy would cascade (every replica busy, so
			// every replica unready: a total outage).
		case err == nil && h == runtime.Ready:
			fails = 0
			if succ++; succ >= int(p.SuccessThreshold) && !g.ready.Load() {
				g.ready.Store(true)
				u.s.log.Info("module ready", "module", u.sp().Name)
			}
		default:
			succ = 0
			if fails++; fails >= int(p.FailureThreshold) && g.ready.Load() {
				g.ready.Store(false)
				u.s.log.Warn("module not ready", "module", u.sp().Name, "health", h.String(), "err", errOrNil(err))
			}
		}
		if !sleepCtx(ctx, p.Period()) {
			return
		}
	}
}

// tickLoop calls g's tick export every iv until ctx ends: the supervisor is the only owner of
// ticks (the runtime has no tick schedule of its own), so a low-priority module's ticks wait
// for a quiet host and give way to higher-priority work like its calls.
func (u *unit) tickLoop(ctx context.Context, g *generation, iv time.Duration) {
	t := time.NewTicker(iv)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if g.mod.State() != runtime.StateRunning {
			continue
		}
		if u.low {
			// Waits for a quiet host (ticks missed meanwhile are dropped by the ticker), and is
			// parked while it runs whenever higher priority work comes in.
			lctx, err := u.s.sched.AcquireLow(ctx)
			if err != nil {
				return
			}
			g.mod.Tick(lctx)
			u.s.sched.ReleaseLow()
		} else {
			u.s.sched.Enter()
			g.mod.Tick(ctx)
			u.s.sched.Exit()
		}
	}
}

// counters accumulates the statistics of stopped versions, so exported counters never go back.
type counters struct {
	calls, errors, traps, timeouts, overloads, guestErrors uint64
	logLinesDropped, logBytesDropped                       uint64
	latCounts                                              []uint64
	latSum                                                 float64
	latCount                                               uint64
}

func (c *counters) add(s runtime.Stats) {
	c.calls += s.Calls
	c.errors += s.Errors
	c.traps += s.Traps
	c.timeouts += s.Timeouts
	c.overloads += s.Overloads
	c.guestErrors += s.GuestErrors
	c.logLinesDropped += s.LogLinesDropped
	c.logBytesDropped += s.LogBytesDropped
	if len(c.latCounts) < len(s.Latency.Counts) {
		c.latCounts = append(c.latCounts, make([]uint64, len(s.Latency.Counts)-len(c.latCounts))...)
	}
	for i, n := range s.Latency.Counts {
		c.latCounts[i] += n
	}
	c.latSum += s.Latency.Sum
	c.latCount += s.Latency.Count
}
