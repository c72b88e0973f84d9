// Package supervisor runs a pod: it loads the pod's modules into a runtime engine, starts them
// in the pod's start order (helpers before main), probes them, restarts failed ones with
// CrashLoopBackOff delays, schedules CPU by priority (low-priority guests are parked while work
// of higher priority is in flight, see Scheduler), keeps their state across stops and upgrades
// in snapshot files, upgrades and rolls back module versions while the pod serves, and stops
// everything in reverse order within the pod's grace period.
//
// The supervisor knows nothing of HTTP: the admin and ingress servers (package admin) drive it
// through its methods.
package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	goruntime "runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wasmpod/wasmpod/host/internal/logbuf"
	"github.com/wasmpod/wasmpod/host/internal/podspec"
	"github.com/wasmpod/wasmpod/host/internal/snapshot"
	"github.com/wasmpod/wasmpod/internal/spans"
	"github.com/wasmpod/wasmpod/runtime"
)

// Sentinel errors, for callers to map with errors.Is.
var (
	// ErrNotFound: no module of that name in the pod.
	ErrNotFound = errors.New("no such module")
	// ErrNotReady: the module has no running version ready for traffic.
	ErrNotReady = errors.New("module not ready")
	// ErrDraining: the pod is shutting down and admits no new calls.
	ErrDraining = errors.New("pod is shutting down")
	// ErrInvalid: the request is not valid (e.g. a scale outside the spec's bounds).
	ErrInvalid = errors.New("invalid request")
	// ErrConflict: the operation does not fit the module's current state.
	ErrConflict = errors.New("conflicting module state")
	// ErrUpgradeFailed: the new version could not be loaded or never got ready; the old version
	// keeps serving.
	ErrUpgradeFailed = errors.New("upgrade failed")
	// ErrNoPrevious: there is no previous version to roll back to.
	ErrNoPrevious = errors.New("no previous version")
	// ErrClosed: the supervisor has shut down.
	ErrClosed = errors.New("supervisor closed")
)

// Config configures a Supervisor. Start from DefaultConfig.
type Config struct {
	// Pod is the pod to run. Required; it must have passed podspec.Load or Validate.
	Pod *podspec.Pod
	// StateDir holds snapshots, the compilation cache and emptyDir volumes. Required.
	StateDir string
	// CacheMaxBytes bounds the compilation cache in StateDir (runtime.Config.CacheMaxBytes):
	// 0 is the runtime's default, negative no bound.
	CacheMaxBytes int64
	// Logger is the host's structured log. Nil discards.
	Logger *slog.Logger
	// Logs receives the modules' log lines; nil creates a Hub with logbuf.DefaultConfig.
	Logs *logbuf.Hub
	// CPUBudget is how many processors the pod's calls may use. Low-priority calls and ticks
	// run on at most CPUBudget-1 of them at once (at least 1), so one is always left for the
	// ingress and the work of higher priority. 0 means GOMAXPROCS.
	CPUBudget int
	// LowQuiet is how long the host must have run no normal or high priority work before
	// low-priority guest code runs again (see Scheduler). 0 means 1ms.
	LowQuiet time.Duration
	// LowYieldInterval is how many loop iterations a low-priority guest runs between two calls
	// to the scheduler, which parks it while the host is busy: at roughly a nanosecond per
	// iteration, 1024 (the default when 0) gives a busy host its core back within a few
	// microseconds, for a call out to Go per ~1 us of guest work (a few per cent).
	LowYieldInterval int32
	// UpgradeReadyTimeout is how long a new version may take to report ready when its module
	// has no readiness probe (with one, the probe's own thresholds decide).
	UpgradeReadyTimeout time.Duration
	// ProbePoll is how often an upgrade polls a new version's health without a readiness probe.
	ProbePoll time.Duration
	// Imports are extra host functions the pod's modules may import (runtime.Config.Imports),
	// e.g. the cluster's election functions.
	Imports []runtime.HostFunction
}

// DefaultConfig returns the host's defaults.
func DefaultConfig() Config {
	return Config{
		// GOMAXPROCS: one running call per processor Go may use is full use of the CPU we have.
		CPUBudget: 0,
		// 1ms: far above the gap between back-to-back requests, far below a tick interval.
		LowQuiet: time.Millisecond,
		// 1024: see the field.
		LowYieldInterval: 1024,
		// 30s: a Go guest instantiates in milliseconds; a version not ready after 30s is broken.
		UpgradeReadyTimeout: 30 * time.Second,
		// 100ms: a new version starts serving promptly without busy-polling its health export.
		ProbePoll: 100 * time.Millisecond,
	}
}

// Supervisor runs one pod. Its methods are safe for concurrent use.
type Supervisor struct {
	cfg    Config
	pod    *podspec.Pod
	log    *slog.Logger
	logs   *logbuf.Hub
	engine *runtime.Engine
	store  *snapshot.Store
	sched  *Scheduler

	units  []*unit // in start order
	byName map[string]*unit
	main   *unit

	ctx    context.Context // ends at Shutdown; owns every background goroutine
	cancel context.CancelFunc

	mu       sync.Mutex // guards closed and wg.Add
	closed   bool
	wg       sync.WaitGroup
	draining atomic.Bool
	inflight atomic.Int64 // ingress calls in flight
	// strays counts the probe and tick calls of stopped versions still running in a trusted
	// guest (never cut) after their stop gave up waiting for them; see Shutdown.
	strays atomic.Int64

	shutdownOnce sync.Once
	shutdownErr  error
	emptyDirs    []string

	workDir             string // where command stage runs make their private directories
	maxInput, maxOutput uint32 // the engine's limits on one call's input and output
}

// New prepares a supervisor for cfg.Pod: it reads every wasm file (checking declared digests),
// creates the engine (compilation cache under the state dir) and the snapshot store. Nothing
// runs until Start.
func New(ctx context.Context, cfg Config) (*Supervisor, error) {
	if cfg.Pod == nil {
		return nil, fmt.Errorf("supervisor: %w: no pod", ErrInvalid)
	}
	if cfg.StateDir == "" {
		return nil, fmt.Errorf("supervisor: %w: no state dir", ErrInvalid)
	}
	d := DefaultConfig()
	if cfg.CPUBudget <= 0 {
		cfg.CPUBudget = goruntime.GOMAXPROCS(0)
	}
	if cfg.UpgradeReadyTimeout <= 0 {
		cfg.UpgradeReadyTimeout = d.UpgradeReadyTimeout
	}
	if cfg.ProbePoll <= 0 {
		cfg.ProbePoll = d.ProbePoll
	}
	if cfg.LowQuiet <= 0 {
		cfg.LowQuiet = d.LowQuiet
	}
	if cfg.LowYieldInterval <= 0 {
		cfg.LowYieldInterval = d.LowYieldInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Logs == nil {
		lc := logbuf.DefaultConfig()
		lc.Logger = cfg.Logger
		cfg.Logs = logbuf.New(lc)
	}
	pod := cfg.Pod
	s := &Supervisor{cfg: cfg, pod: pod, log: cfg.Logger.With("pod", pod.Metadata.Name), logs: cfg.Logs, byName: map[string]*unit{}}
	s.sched = NewScheduler(SchedulerConfig{Quiet: cfg.LowQuiet, LowSlots: max(cfg.CPUBudget-1, 1)})
	for _, m := range pod.StartOrder() {
		file, err := pod.WasmFile(m)
		if err != nil {
			return nil, fmt.Errorf("supervisor: module %q: %w", m.Name, err)
		}
		// Bounded by the compile budget of the engine made below (runtime.DefaultConfig's): a
		// larger file is refused from its size, unread.
		wasm, err := runtime.ReadModuleFile(file, runtime.DefaultConfig().CompileBudget)
		if err != nil {
			return nil, fmt.Errorf("supervisor: module %q: %w", m.Name, err)
		}
		if err := m.CheckDigest(wasm); err != nil {
			return nil, fmt.Errorf("supervisor: module %q: %w", m.Name, err)
		}
		u := newUnit(s, m, wasm)
		s.units = append(s.units, u)
		s.byName[m.Name] = u
		if m.Role == podspec.RoleMain {
			s.main = u
		}
	}
	s.workDir = stageWorkDir(cfg.StateDir, pod.Metadata.Name)
	if len(s.StageModules()) > 0 {
		// Run directories left by a host that died mid-run hold nothing anyone will read.
		if err := os.RemoveAll(s.workDir); err != nil {
			return nil, fmt.Errorf("supervisor: stage work dir: %w", err)
		}
	}
	store, err := snapshot.NewStore(filepath.Join(cfg.StateDir, "pods", pod.Metadata.Name, "snapshots"))
	if err != nil {
		return nil, err
	}
	s.store = store
	ecfg := runtime.DefaultConfig()
	ecfg.CacheDir = filepath.Join(cfg.StateDir, "cache")
	if cfg.CacheMaxBytes != 0 {
		ecfg.CacheMaxBytes = cfg.CacheMaxBytes
	}
	ecfg.Logs = s.logs
	ecfg.Imports = cfg.Imports
	s.maxInput, s.maxOutput = ecfg.MaxInputBytes, ecfg.MaxOutputBytes
	ecfg.Events = func(e runtime.Event) {
		s.log.Debug("module state", "module", e.Module, "from", e.From.String(), "to", e.To.String(), "reason", e.Reason)
	}
	if err := os.MkdirAll(ecfg.CacheDir, 0o700); err != nil {
		return nil, fmt.Errorf("supervisor: cache dir: %w", err)
	}
	eng, err := runtime.NewEngine(ctx, ecfg)
	if err != nil {
		return nil, fmt.Errorf("supervisor: engine: %w", err)
	}
	s.engine = eng
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// Pod returns the pod being run.
func (s *Supervisor) Pod() *podspec.Pod { return s.pod }

// Logs returns the modules' log hub.
func (s *Supervisor) Logs() *logbuf.Hub { return s.logs }

// Modules returns the module names in start order.
func (s *Supervisor) Modules() []string {
	out := make([]string, len(s.units))
	for i, u := range s.units {
		out[i] = u.sp().Name
	}
	return out
}

// Start starts the modules in start order, each once the one before it runs. A module that
// cannot be loaded (invalid wasm, missing role export) fails Start, which then stops what it
// started. A module that loads but fails to start (start export, corrupt snapshot) is handed to
// the restart policy and Start goes on, as Kubernetes keeps a pod whose container crash-loops.
//
// A Shutdown that begins meanwhile cuts the start under way (a wasmpod_start that would run to
// its deadline) and Start returns an error wrapping ErrClosed.
func (s *Supervisor) Start(ctx context.Context) error {
	ctx, cancel := s.opContext(ctx)
	defer cancel()
	for _, u := range s.units {
		if err := u.checkLoad(ctx); err != nil {
			return err
		}
	}
	for _, u := range s.units {
		u.opMu.Lock()
		u.wantRunning = true
		err := u.launch(ctx)
		if err != nil {
			u.failedLocked(err)
		}
		u.opMu.Unlock()
		if err != nil && (errors.Is(err, ErrClosed) || s.ctx.Err() != nil) {
			return fmt.Errorf("supervisor: start of module %q: %w: %w", u.sp().Name, ErrClosed, err)
		}
	}
	return nil
}

// opContext returns a context that ends with ctx and also when Shutdown begins (its cause is
// then ErrClosed). The operations that hold a module's operation lock while guest code runs or
// a new version is probed (start, restart, upgrade, rollback, reload) run under it: Shutdown
// takes that lock to stop the module, so an operation not cut by it would hold the shutdown up
// for as long as the operation's own bounds allow (a call deadline per instance started, a
// readiness window), far past the pod's grace period. Call cancel when the operation ends.
func (s *Supervisor) opContext(ctx context.Context) (_ context.Context, cancel func()) {
	ctx, cancelCause := context.WithCancelCause(ctx)
	stop := context.AfterFunc(s.ctx, func() { cancelCause(ErrClosed) })
	return ctx, func() {
		stop()
		cancelCause(nil)
	}
}

// Ready reports whether the pod serves: not draining, and every module that should run is
// running (not paused) and ready. The second result lists what is not.
//
// A paused version keeps its readiness (its probes are not what stopped it), but it refuses
// every call: ingress answers 503 for a paused main. Counting it ready would keep the host in
// a load balancer's rotation while it turns all traffic away, so Ready asks the version's
// lifecycle state as well, as the module's status does.
func (s *Supervisor) Ready() (bool, []string) {
	var why []string
	if s.draining.Load() {
		why = append(why, "pod is shutting down")
	}
	for _, u := range s.units {
		g := u.active.Load()
		if g == nil {
			why = append(why, u.sp().Name+": not running")
			continue
		}
		switch st := g.state(); {
		case st == runtime.StatePaused:
			why = append(why, u.sp().Name+": paused (admits no calls until resumed)")
		case st != runtime.StateRunning:
			why = append(why, u.sp().Name+": "+st.String())
		case !g.ready.Load():
			why = append(why, u.sp().Name+": not ready")
		}
	}
	return len(why) == 0, why
}

// Drain stops admitting ingress calls (they fail with ErrDraining) and waits until the calls in
// flight have finished or ctx ends.
func (s *Supervisor) Drain(ctx context.Context) error {
	s.draining.Store(true)
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for s.inflight.Load() > 0 {
		select {
		case <-ctx.Done():
			return fmt.Errorf("supervisor: drain: %d calls still in flight: %w", s.inflight.Load(), ctx.Err())
		case <-t.C:
		}
	}
	return nil
}

// Draining reports whether Drain or Shutdown has begun.
func (s *Supervisor) Draining() bool { return s.draining.Load() }

// Shutdown drains, then stops the modules in stop order (snapshotting their state) within ctx,
// then releases the engine. It is idempotent; later calls return the first result.
func (s *Supervisor) Shutdown(ctx context.Context) error {
	s.shutdownOnce.Do(func() {
		var errs []error
		if err := s.Drain(ctx); err != nil {
			errs = append(errs, err)
		}
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		s.cancel()
		for i := len(s.units) - 1; i >= 0; i-- {
			u := s.units[i]
			u.opMu.Lock()
			u.wantRunning = false
			u.closed = true
			if u.retry != nil {
				u.retry.Stop()
			}
			if err := u.halt(ctx, "pod shutdown", true); err != nil {
				errs = append(errs, err)
			}
			u.opMu.Unlock()
		}
		s.wg.Wait()
		// Calls still running in the guest (a trusted module's probe or tick, which nothing
		// cuts) keep what they use: the engine releases it when the last of them returns, and
		// its Close says so (runtime.ErrCallsRunning).
		if err := s.engine.Close(ctx); err != nil {
			if n := s.strays.Load(); n > 0 {
				err = fmt.Errorf("supervisor: %d probe or tick call(s) of a trusted module still run in the guest past the grace period: %w", n, err)
			}
			errs = append(errs, err)
		}
		for _, d := range s.emptyDirs {
			os.RemoveAll(d)
		}
		s.shutdownErr = errors.Join(errs...)
	})
	return s.shutdownErr
}

// goBackground runs fn on a goroutine owned by the supervisor (Shutdown waits for it). It
// reports false, and runs nothing, after Shutdown began.
func (s *Supervisor) goBackground(fn func()) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		fn()
	}()
	return true
}

func (s *Supervisor) unit(name string) (*unit, error) {
	u := s.byName[name]
	if u == nil {
		return nil, fmt.Errorf("module %q: %w", name, ErrNotFound)
	}
	return u, nil
}

// Lease is one admitted ingress call to the main module. Release it when done.
type Lease struct {
	s *Supervisor
	g *generation
}

// AcquireMain admits one ingress call to the main module: it fails with ErrDraining while the
// pod shuts down and ErrNotReady when main has no ready version.
func (s *Supervisor) AcquireMain() (Lease, error) {
	if s.main == nil {
		return Lease{}, fmt.Errorf("pod has no main module: %w", ErrNotReady)
	}
	s.inflight.Add(1)
	if s.draining.Load() {
		s.inflight.Add(-1)
		return Lease{}, ErrDraining
	}
	g := s.main.active.Load()
	if g == nil || !g.ready.Load() {
		s.inflight.Add(-1)
		return Lease{}, ErrNotReady
	}
	s.sched.Enter()
	return Lease{s: s, g: g}, nil
}

// Role is the role the call goes to: http when the version exports it, else handle.
func (l Lease) Role() runtime.Role { return l.g.role }

// Call calls the main module's version admitted by the lease. During a stateful upgrade's
// handover it first waits (until ctx ends) for the old version's state to be restored.
func (l Lease) Call(ctx context.Context, in, dst []byte) ([]byte, error) {
	if err := l.g.awaitHandover(ctx); err != nil {
		return dst, err
	}
	if spans.On() {
		return tracedCall(ctx, l.g.mod, l.g.role, in, dst)
	}
	return l.g.mod.Call(ctx, l.g.role, in, dst)
}

// Release ends the lease.
func (l Lease) Release() {
	if l.s != nil {
		l.s.sched.Exit()
		l.s.inflight.Add(-1)
	}
}

// Call calls a module's handler by name, scheduled by priority: a low-priority module's call
// waits (until ctx ends) for a quiet host and is parked while it runs whenever work of higher
// priority comes in (see Scheduler). It is for pod-internal and test traffic; ingress uses
// AcquireMain.
func (s *Supervisor) Call(ctx context.Context, module string, role runtime.Role, in, dst []byte) ([]byte, error) {
	u, err := s.unit(module)
	if err != nil {
		return dst, err
	}
	g := u.active.Load()
	if g == nil || !g.ready.Load() {
		return dst, fmt.Errorf("module %q: %w", module, ErrNotReady)
	}
	if g.cmd != nil {
		return dst, fmt.Errorf("module %q is a WASI command stage: it runs on files (pipelines), it takes no calls: %w", module, ErrInvalid)
	}
	if u.low {
		lctx, err := s.sched.AcquireLow(ctx)
		if err != nil {
			return dst, fmt.Errorf("module %q: no spare CPU for a low-priority call: %w: %w", module, runtime.ErrOverloaded, err)
		}
		defer s.sched.ReleaseLow()
		ctx = lctx
	} else {
		s.sched.Enter()
		defer s.sched.Exit()
	}
	if err := g.awaitHandover(ctx); err != nil {
		return dst, err
	}
	if spans.On() {
		return tracedCall(ctx, g.mod, role, in, dst)
	}
	return g.mod.Call(ctx, role, in, dst)
}

// Scheduler returns the pod's CPU scheduler (for status and tests).
func (s *Supervisor) Scheduler() *Scheduler { return s.sched }
