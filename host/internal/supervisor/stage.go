package supervisor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wasmpod/wasmpod/host/internal/podspec"
	"github.com/wasmpod/wasmpod/runtime"
)

// Stage modules (role stage) come in two kinds, told apart by their exports each time a version
// is loaded (so an upgrade may switch kinds):
//
//   - a module exporting wasmpod_stage (or an Extism plugin), loaded like every other module:
//     warm instances, probes, lifecycle exports; a run is one call of its stage export;
//   - a plain WASI command, exporting _start and not wasmpod_stage: it is compiled once
//     (runtime.Command) and every run instantiates it afresh on its input files. It has no
//     instances between runs, no probes and no state: it is ready once compiled, and stopping
//     it waits for its runs, then releases the compiled code.

// exportStage and exportStart are the exports that tell the two kinds apart.
const (
	exportStage = "wasmpod_stage"
	exportStart = "_start"
)

// isCommandStage reports whether wasm should run as this module's WASI command: the module has
// role stage and the native ABI, and the bytes export _start but not wasmpod_stage. Bytes that do
// not decode are not a command; loading them as a module reports what is wrong.
func (u *unit) isCommandStage(wasm []byte) bool {
	if u.sp().Role != podspec.RoleStage || u.sp().ABI == podspec.ABIExtism {
		return false
	}
	d, err := runtime.Describe(wasm)
	if err != nil {
		return false
	}
	start, stage := false, false
	for _, e := range d.Exports {
		if e.Kind != "func" {
			continue
		}
		switch e.Name {
		case exportStart:
			start = true
		case exportStage:
			stage = true
		}
	}
	return start && !stage
}

// commandMisfits lists the fields of a stage module's spec that a WASI command cannot honor: it
// sees only its files in /in and /out, takes no config, has no exports to probe or tick, no warm
// pool to scale, and always runs guarded.
func commandMisfits(m *podspec.Module) []string {
	var bad []string
	add := func(set bool, field string) {
		if set {
			bad = append(bad, field)
		}
	}
	add(len(m.VolumeMounts) > 0, "volumeMounts")
	add(len(m.Config) > 0, "config")
	add(m.LivenessProbe != nil, "livenessProbe")
	add(m.ReadinessProbe != nil, "readinessProbe")
	add(m.StartupProbe != nil, "startupProbe")
	add(m.TickInterval > 0, "tickInterval")
	add(m.AllowScale != nil, "allowScale")
	add(m.Trusted, "trusted")
	return bad
}

// loadCommand compiles wasm as this stage module's WASI command.
func (u *unit) loadCommand(ctx context.Context, wasm []byte) (*runtime.Command, error) {
	m := u.sp()
	if bad := commandMisfits(m); len(bad) > 0 {
		return nil, fmt.Errorf("module %q: load: %w: the wasm file is a WASI command (it exports %s, not %s), which sees only its files in /in and /out; a command stage cannot have %s (remove them from the spec, or build the module with the wasmpod SDK's stage package)",
			m.Name, ErrInvalid, exportStart, exportStage, strings.Join(bad, ", "))
	}
	cfg := runtime.DefaultCommandConfig(m.Name)
	cfg.MaxMemoryPages = m.Resources.MemoryPages()
	cfg.Timeout = m.Resources.Timeout.Std()
	cfg.WorkDir = u.s.workDir
	cfg.LogLinesPerSecond, cfg.LogLineBurst, cfg.LogBytesPerSecond, cfg.LogByteBurst = logLimits(m.Resources.Logs)
	if err := os.MkdirAll(cfg.WorkDir, 0o700); err != nil {
		return nil, fmt.Errorf("module %q: work dir: %w", m.Name, err)
	}
	c, err := u.s.engine.LoadCommand(ctx, wasm, cfg)
	if err != nil {
		return nil, fmt.Errorf("module %q: load: %w", m.Name, err)
	}
	return c, nil
}

// logLimits is resources.logs as the runtime's log rate limit fields (of a module or a command):
// lines a second and their burst, bytes a second and their burst. A zero field keeps the
// runtime's default; unlimited turns both buckets off.
func logLimits(l *podspec.LogLimits) (lines, lineBurst int, bytes, byteBurst int64) {
	if l == nil {
		return 0, 0, 0, 0
	}
	if l.Unlimited {
		return -1, 0, -1, 0
	}
	return int(l.LinesPerSecond), int(l.Burst), l.BytesPerSecond.Bytes(), l.BurstBytes.Bytes()
}

// runGate counts the stage runs admitted to one version, so that stopping the version waits for
// them (and no run starts on a version being stopped).
type runGate struct {
	mu      sync.Mutex
	running int
	closed  bool
	idle    chan struct{} // closed when running drops to 0 after close
	ctx     context.Context
	cut     context.CancelFunc // cuts the runs still going when the stop's grace is over
}

func (r *runGate) init() { r.ctx, r.cut = context.WithCancel(context.Background()) }

// enter admits a run unless the gate is closed.
func (r *runGate) enter() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	r.running++
	return true
}

func (r *runGate) exit() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.running--
	if r.running == 0 && r.idle != nil {
		close(r.idle)
		r.idle = nil
	}
}

func (r *runGate) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.running
}

// drain closes the gate and waits for the admitted runs until grace ends; then it cuts them
// (through their contexts) and gives them a second more to unwind. It reports how many were
// still running at the end.
func (r *runGate) drain(grace time.Duration) int {
	r.mu.Lock()
	r.closed = true
	if r.running == 0 {
		r.mu.Unlock()
		r.cut()
		return 0
	}
	idle := make(chan struct{})
	r.idle = idle
	r.mu.Unlock()
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-idle:
		r.cut()
		return 0
	case <-t.C:
	}
	r.cut()
	t.Reset(time.Second)
	select {
	case <-idle:
		return 0
	case <-t.C:
		return r.count()
	}
}

// runStats counts a command version's runs (a native version's calls are counted by the
// runtime), in the shape of runtime.Stats.
type runStats struct {
	calls, errs, traps, timeouts, guestErrs atomic.Uint64
	lat                                     []atomic.Uint64 // one per runtime.LatencyBounds, then one above them
	latSumNs                                atomic.Int64
}

func newRunStats() *runStats {
	return &runStats{lat: make([]atomic.Uint64, len(runtime.LatencyBounds)+1)}
}

func (r *runStats) observe(d time.Duration, err error) {
	r.calls.Add(1)
	i := 0
	for i < len(runtime.LatencyBounds) && d.Seconds() > runtime.LatencyBounds[i] {
		i++
	}
	r.lat[i].Add(1)
	r.latSumNs.Add(int64(d))
	if err == nil {
		return
	}
	r.errs.Add(1)
	switch {
	case errors.Is(err, runtime.ErrTrap):
		r.traps.Add(1)
	case errors.Is(err, runtime.ErrDeadline):
		r.timeouts.Add(1)
	case errors.Is(err, runtime.ErrGuest):
		r.guestErrs.Add(1)
	}
}

// stats returns the version's statistics: the runtime's for a module; for a command, its runs,
// with the runs in flight as its instances (each run is an instance of its own) and the module's
// concurrency as the target.
func (g *generation) stats(concurrency int) runtime.Stats {
	if g.mod != nil {
		return g.mod.Stats()
	}
	r := g.runStats
	h := runtime.Histogram{Bounds: runtime.LatencyBounds, Counts: make([]uint64, len(r.lat))}
	for i := range r.lat {
		h.Counts[i] = r.lat[i].Load()
		h.Count += h.Counts[i]
	}
	h.Sum = time.Duration(r.latSumNs.Load()).Seconds()
	running := g.runs.count()
	lines, bytes := g.cmd.LogsDropped()
	return runtime.Stats{
		Module: g.cmd.Name(), State: g.state(),
		Calls: r.calls.Load(), Errors: r.errs.Load(), Traps: r.traps.Load(), Timeouts: r.timeouts.Load(), GuestErrors: r.guestErrs.Load(),
		Instances: running, Busy: running, Target: concurrency,
		Latency:         h,
		LogLinesDropped: lines, LogBytesDropped: bytes,
	}
}

// state is the version's lifecycle state; a command is running until it is being stopped.
func (g *generation) state() runtime.State {
	if g.mod != nil {
		return g.mod.State()
	}
	if g.stopped.Load() {
		return runtime.StateStopped
	}
	if g.stopping.Load() {
		return runtime.StateStopping
	}
	return runtime.StateRunning
}

// StageRun is one admitted run of a stage module on the version that was current when it was
// admitted: an upgrade, rollback or restart takes effect for the next run, while this one
// finishes on its version (the old version is released once its runs are done). Exactly one of
// Module and Command is set. End it with Done.
type StageRun struct {
	// Name is the module's name.
	Name string
	// Module is the version when it is a loaded module (it exports wasmpod_stage, or is an
	// Extism plugin): a run is one call of runtime.RoleStage.
	Module *runtime.Module
	// Command is the version when it is a WASI command: a run is one RunInputs.
	Command *runtime.Command
	// SHA256 is the version's digest.
	SHA256 string
	// MaxInputBytes and MaxOutputBytes are the engine's limits on one call's input (after
	// framing) and output: a Module run cannot take or give files larger than that.
	MaxInputBytes, MaxOutputBytes int64

	g        *generation
	u        *unit
	release  func()
	stopCut  func() bool
	cancel   context.CancelFunc
	start    time.Time
	doneOnce sync.Once
}

// AcquireStage admits one run of the named module, which must have role stage (ErrNotFound for
// no such module, ErrInvalid for another role, ErrNotReady when no version is ready, as after
// Shutdown). Runs are not ingress: Drain does not refuse them (the host stops its pipeline
// workers, which finish their runs, before it stops the modules).
//
// At most resources.concurrency runs of a module are admitted at once, whichever pipelines they
// serve: a run waits for a slot until its deadline (then it fails with runtime.ErrOverloaded).
// Like Supervisor.Call it is scheduled by priority: a low-priority module's run waits for a
// quiet host. The returned context is the one to run with: it carries ctx's deadline, or the
// module's resources.timeout when ctx has none, and it is cancelled (cutting the run) when the
// version is stopped and its grace period is over.
func (s *Supervisor) AcquireStage(parent context.Context, name string) (context.Context, *StageRun, error) {
	ctx := parent
	u, err := s.unit(name)
	if err != nil {
		return parent, nil, err
	}
	if u.sp().Role != podspec.RoleStage {
		return parent, nil, fmt.Errorf("module %q has role %s, not stage: %w", name, u.sp().Role, ErrInvalid)
	}
	var cancel context.CancelFunc
	if _, ok := ctx.Deadline(); !ok {
		ctx, cancel = context.WithTimeout(ctx, u.sp().Resources.Timeout.Std())
	} else {
		ctx, cancel = context.WithCancel(ctx)
	}
	select {
	case u.runSlots <- struct{}{}:
	default:
		select {
		case u.runSlots <- struct{}{}:
		case <-ctx.Done():
			cancel()
			return parent, nil, fmt.Errorf("module %q: all %d run slots (resources.concurrency) stayed busy: %w: %w", name, cap(u.runSlots), runtime.ErrOverloaded, ctx.Err())
		}
	}
	g := u.active.Load()
	if g == nil || !g.ready.Load() || !g.runs.enter() {
		<-u.runSlots
		cancel()
		return parent, nil, fmt.Errorf("module %q: %w", name, ErrNotReady)
	}
	r := &StageRun{Name: name, Module: g.mod, Command: g.cmd, SHA256: g.sha, g: g, u: u, cancel: cancel, start: time.Now(),
		MaxInputBytes: int64(s.maxInput), MaxOutputBytes: int64(s.maxOutput)}
	r.stopCut = context.AfterFunc(g.runs.ctx, r.cancel)
	if u.low {
		lctx, err := s.sched.AcquireLow(ctx)
		if err != nil {
			r.end()
			return parent, nil, fmt.Errorf("module %q: no spare CPU for a low-priority run: %w: %w", name, runtime.ErrOverloaded, err)
		}
		ctx, r.release = lctx, s.sched.ReleaseLow
	} else {
		s.sched.Enter()
		r.release = s.sched.Exit
	}
	if err := g.awaitHandover(ctx); err != nil {
		r.release()
		r.end()
		return parent, nil, err
	}
	return ctx, r, nil
}

// Done ends the run; err is its outcome, counted in a command version's statistics (a module's
// calls are counted by the runtime). Idempotent.
func (r *StageRun) Done(err error) {
	r.doneOnce.Do(func() {
		if r.Command != nil {
			r.g.runStats.observe(time.Since(r.start), err)
		}
		if r.release != nil {
			r.release()
		}
		r.end()
	})
}

func (r *StageRun) end() {
	r.stopCut()
	r.cancel()
	r.g.runs.exit()
	<-r.u.runSlots
}

// StageModules returns the names of the modules with role stage, in start order.
func (s *Supervisor) StageModules() []string {
	var out []string
	for _, u := range s.units {
		if u.sp().Role == podspec.RoleStage {
			out = append(out, u.sp().Name)
		}
	}
	return out
}

// stageWorkDir is where command runs make their private directories.
func stageWorkDir(stateDir, pod string) string {
	return filepath.Join(stateDir, "pods", pod, "runs")
}
