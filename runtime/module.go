package runtime

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"

	"github.com/wasmpod/wasmpod/runtime/internal/instrument"
)

// Module is a loaded module: a pool of warm instances with a lifecycle. All methods are safe
// for concurrent use. Calls are admitted only while the module is running.
type Module struct {
	e      *Engine
	cm     wazero.CompiledModule // native modules
	ext    *extismModule         // Extism modules
	cfg    ModuleConfig
	baseMC wazero.ModuleConfig // what every instance's wazero configuration shares (baseConfig)
	info   Info
	has    [numExports]bool
	digest string

	state atomic.Int32 // State

	pool    pool
	metrics guestMetrics
	// logs is the module's log rate limit and its drop counters (logs.go).
	logs   logLimiter
	lat    latencyHist
	target atomic.Int32 // warm pool size

	yieldInterval      int32 // fuel per refill (ModuleConfig.YieldInterval, defaulted)
	scaleMin, scaleMax int   // bounds of the guest's scale import

	calls                                             atomic.Uint64 // calls that ended without a slot; the others count in their slot (stateBits)
	latWish                                           atomic.Bool   // Stats was read: time the next call (takeLatencyWish)
	errs, traps, timeouts, overloads, guestErrs       atomic.Uint64
	instantiations, coldStarts, discards, ticksFailed atomic.Uint64

	lifeMu  sync.Mutex // serializes Start, Pause, Resume, Stop
	lastErr atomic.Pointer[string]
	subsMu  sync.Mutex
	subs    map[*subscription]struct{}

	bgCancel context.CancelFunc
	bgDone   chan struct{} // closed when the refill goroutine has returned
	refill   chan struct{}

	// cmMu guards the compiled code against its release: every instantiation holds it for
	// reading and fails with ErrNotRunning once released is set, so none can reach wazero with
	// closed code.
	cmMu     sync.RWMutex
	released bool
	// releasing is set by the first releaseAll, once no slot can be taken any more. finalized
	// is set by the one finalRelease that releases the compiled code: releaseAll's at once, or
	// that of the last call still running in a revoked slot as it returns (pool.outstanding).
	releasing, finalized atomic.Bool

	// Instance images (image.go): the capture is taken while the module loads, the image built
	// in the background when first needed and released with the compiled code. prepared and
	// imgFacts serve the capture only.
	img       atomic.Pointer[image]
	imgNote   atomic.Pointer[string] // Info().Image
	pending   *imageCapture          // set before the module is shared; the image's makings
	imgOnce   sync.Once
	imgWG     sync.WaitGroup // the goroutine building the image
	prepared  []byte
	imgFacts  instrument.ImageFacts
	fromImage atomic.Uint64 // instances made from img
	// command marks a WASI command's module (Command): it speaks no wasmpod ABI, and its image
	// is its memory right after instantiation.
	command bool
}

func newModule(ctx context.Context, e *Engine, cm wazero.CompiledModule, cfg ModuleConfig, digest string, prepared []byte, facts instrument.ImageFacts) (*Module, error) {
	has, info, err := inspect(cm, &cfg, e.hostFns)
	if err != nil {
		return nil, err
	}
	info.Name, info.SHA256, info.Trusted = cfg.Name, digest, cfg.Trusted
	m := &Module{
		e: e, cm: cm, cfg: cfg, info: info, has: has, digest: digest, baseMC: baseConfig(&cfg),
		pool:     newPool(cfg.MaxConcurrency),
		refill:   make(chan struct{}, 1),
		subs:     map[*subscription]struct{}{},
		prepared: prepared, imgFacts: facts,
	}
	if err := m.warmFirstCtx(ctx); err != nil {
		return nil, err
	}
	return m, nil
}

// warmFirstCtx sets the warm pool's target and instantiates once now: this proves the module
// links, initializes and speaks its ABI, so a bad module fails at load, not at its first call.
// The instance becomes the first warm one. The initialisation (start section, _initialize) runs
// under the earlier of ctx's end and the module's CallTimeout: a load whose caller went away or
// whose deadline passed ends then.
func (m *Module) warmFirstCtx(ctx context.Context) error {
	m.pool.drained = m.callsDrained
	m.target.Store(int32(max(m.cfg.MinInstances, 1)))
	m.yieldInterval = m.cfg.YieldInterval
	if m.yieldInterval == 0 {
		m.yieldInterval = yieldEvery
	}
	// A call's deadline timer is armed at its first yield (instance.yielded), so a refill must
	// come round often enough for that: at most 2^20 checks (milliseconds of guest work).
	m.yieldInterval = min(m.yieldInterval, maxYieldInterval)
	m.scaleMin, m.scaleMax = m.cfg.ScaleMin, m.cfg.ScaleMax
	if m.scaleMin == 0 {
		m.scaleMin = max(m.cfg.MinInstances, 1)
	}
	if m.scaleMax == 0 {
		m.scaleMax = m.cfg.MaxConcurrency
	}
	// The first instance is initialised, never made from an image: when the module may have
	// one, its initialisation is recorded and becomes the image (image.go).
	var inst *instance
	var err error
	rec := m.imageRecord()
	if m.ext != nil {
		inst, err = m.newExtismInstance(ctx)
	} else if inst, err = m.initInstance(ctx, rec); err == nil && rec != nil {
		m.captureImage(inst, rec)
	}
	if err != nil {
		return err
	}
	m.pool.slots[0].inst.Store(inst)
	m.pool.slots[0].set(slotIdle, 0)
	return nil
}

// Name returns the module's configured name.
func (m *Module) Name() string { return m.cfg.Name }

// Info describes what the module exports and declares.
func (m *Module) Info() Info {
	info := m.info
	if p := m.imgNote.Load(); p != nil {
		info.Image = *p
	}
	return info
}

// Config returns the module's configuration.
func (m *Module) Config() ModuleConfig { return m.cfg }

// HasRole reports whether the module exports the role's handler.
func (m *Module) HasRole(r Role) bool { return r >= 0 && r < numRoles && m.has[r] }

// State returns the current lifecycle state.
func (m *Module) State() State { return State(m.state.Load()) }

// LastError returns the last error that changed the module's state, or "".
func (m *Module) LastError() string {
	if p := m.lastErr.Load(); p != nil {
		return *p
	}
	return ""
}

// transition moves the module to `to` if that is legal from its current state, or returns
// ErrIllegalTransition. Lifecycle operations hold lifeMu; the background refill may fail the
// module concurrently, which the compare-and-swap settles.
func (m *Module) transition(to State, reason string) error {
	for {
		from := State(m.state.Load())
		if !CanTransition(from, to) {
			return fmt.Errorf("module %q: %w: %s -> %s", m.cfg.Name, ErrIllegalTransition, from, to)
		}
		if m.state.CompareAndSwap(int32(from), int32(to)) {
			m.emit(Event{Module: m.cfg.Name, From: from, To: to, Time: time.Now(), Reason: reason})
			return nil
		}
	}
}

func (m *Module) fail(reason error) {
	msg := reason.Error()
	m.lastErr.Store(&msg)
	m.log(LevelError, "runtime", msg)
	_ = m.transition(StateFailed, msg)
}

// StartOptions are the options of [Module.Start].
type StartOptions struct {
	// State, if set, is restored into every instance created while starting (wasmpod_restore).
	State []byte
}

// Start moves a created module to running: it starts the warm instances (start export, then
// restore of opts.State), and then admits calls. On failure the module is failed.
func (m *Module) Start(ctx context.Context, opts StartOptions) error {
	m.lifeMu.Lock()
	defer m.lifeMu.Unlock()
	if err := m.transition(StateStarting, "start"); err != nil {
		return err
	}
	if opts.State != nil && !m.has[expRestore] {
		err := fmt.Errorf("module %q: a saved state was given but the module does not export wasmpod_restore", m.cfg.Name)
		m.fail(err)
		return err
	}
	target := int(m.target.Load())
	for k := 0; k < target; k++ {
		s := &m.pool.slots[k]
		if s.state() == slotEmpty {
			inst, err := m.newInstance(ctx)
			if err != nil {
				m.fail(err)
				return err
			}
			s.inst.Store(inst)
			s.set(slotIdle, 0)
		}
		if err := m.startHooks(ctx, s.inst.Load(), opts.State); err != nil {
			m.fail(err)
			return err
		}
	}
	bg, cancel := context.WithCancel(context.Background())
	m.bgCancel = cancel
	m.bgDone = make(chan struct{})
	go m.refillLoop(bg, m.bgDone)
	return m.transition(StateRunning, "started")
}

// startHooks runs the start export and, with a state, the restore export on a new instance.
func (m *Module) startHooks(ctx context.Context, inst *instance, state []byte) error {
	if m.has[expStart] {
		if err := inst.callRaw(ctx, expStart); err != nil {
			return fmt.Errorf("module %q: wasmpod_start: %w", m.cfg.Name, err)
		}
		if rc := int32(inst.stack[0]); rc != 0 {
			return fmt.Errorf("module %q: wasmpod_start returned %d%s", m.cfg.Name, rc, inst.errSuffix())
		}
	}
	if state != nil {
		return inst.restore(ctx, state)
	}
	return nil
}

// restore feeds a saved state to the instance's wasmpod_restore export.
func (i *instance) restore(ctx context.Context, state []byte) error {
	name := i.m.cfg.Name
	n, err := i.writeInput(ctx, state, nil, false)
	if err != nil {
		return fmt.Errorf("module %q: restore: %w", name, err)
	}
	i.stack[0] = uint64(n)
	i.hasErrMsg = false
	if err := i.callRaw(ctx, expRestore); err != nil {
		return fmt.Errorf("module %q: wasmpod_restore: %w", name, err)
	}
	if rc := int32(i.stack[0]); rc != 0 {
		return fmt.Errorf("module %q: wasmpod_restore refused the state (code %d)%s", name, rc, i.errSuffix())
	}
	return nil
}

func (i *instance) errSuffix() string {
	if i.hasErrMsg {
		return ": " + string(i.errMsg)
	}
	return ""
}

// startInstance creates an instance and runs its start export (not restore).
func (m *Module) startInstance(ctx context.Context) (*instance, error) {
	inst, err := m.newInstance(ctx)
	if err != nil {
		return nil, err
	}
	if err := m.startHooks(ctx, inst, nil); err != nil {
		inst.close(ctx)
		return nil, err
	}
	return inst, nil
}

// Pause stops admitting calls (they fail with ErrNotRunning) and ticks; in-flight calls finish.
func (m *Module) Pause() error {
	m.lifeMu.Lock()
	defer m.lifeMu.Unlock()
	return m.transition(StatePaused, "pause requested")
}

// Resume admits calls again after Pause.
func (m *Module) Resume() error {
	m.lifeMu.Lock()
	defer m.lifeMu.Unlock()
	if m.State() != StatePaused {
		return fmt.Errorf("module %q: %w: resume from %s", m.cfg.Name, ErrIllegalTransition, m.State())
	}
	return m.transition(StateRunning, "resume requested")
}

// StopOptions are the options of [Module.Stop].
type StopOptions struct {
	// Grace is how long in-flight calls may take to finish; 0 means the module's StopGrace.
	// The context's deadline, if earlier, wins.
	Grace time.Duration
	// Snapshot, if set and the module exports wasmpod_snapshot, receives its state after the
	// in-flight calls drained and before the stop export runs.
	Snapshot func(state []byte) error
}

// Stop stops admitting calls, lets in-flight calls finish within the grace period (then cuts
// them), takes the snapshot, calls the stop export on every instance and closes them. The module
// ends stopped even when a step fails; the failures are returned. Stopping a stopped module is a
// no-op.
func (m *Module) Stop(ctx context.Context, opts StopOptions) error {
	return m.stop(ctx, opts, false)
}

// stop is Stop; closing is set for Close's stop, which does not wait for calls that nothing
// can cut (a trusted module's) longer than for cut calls to unwind: what they use is released
// when they return (releaseAll), and Close says so.
func (m *Module) stop(ctx context.Context, opts StopOptions, closing bool) error {
	m.lifeMu.Lock()
	defer m.lifeMu.Unlock()
	if m.State() == StateStopped {
		return nil
	}
	grace := opts.Grace
	if grace <= 0 {
		grace = m.cfg.StopGrace
	}
	deadline := time.Now().Add(grace)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	switch m.State() {
	case StateCreated, StateFailed:
		// A failed module admits nothing, but calls admitted while it ran may still hold or
		// be creating instances: let them finish (within the grace) before closing.
		m.stopBackground()
		m.pool.broadcast()
		m.drain(deadline)
		m.closeAll(ctx)
		return m.transition(StateStopped, "stop requested")
	}
	if err := m.transition(StateStopping, "stop requested"); err != nil {
		return err
	}
	m.pool.broadcast() // callers waiting for an instance see the state and give up
	var errs []error
	if !m.drain(deadline) {
		// Grace is over: cut what still runs, then give it a moment to unwind.
		cut := 0
		for k := range m.pool.slots {
			s := &m.pool.slots[k]
			if inst := s.inst.Load(); s.state() == slotBusy && inst != nil && !m.cfg.Trusted {
				inst.stopping.Store(true)
				inst.expire()
				cut++
			}
		}
		errs = append(errs, fmt.Errorf("module %q: grace period over, %d call(s) cut", m.cfg.Name, cut))
		hard := time.Second
		if m.cfg.Trusted {
			hard = m.cfg.CallTimeout // trusted code cannot be cut: wait for it to return
			if closing {
				hard = min(hard, time.Second)
			}
		}
		if !m.drain(time.Now().Add(hard)) && !closing { // Close reports them (releaseAll)
			_, busy := m.pool.counts()
			errs = append(errs, fmt.Errorf("module %q: %d call(s) still running after the grace period", m.cfg.Name, busy))
		}
	}
	m.stopBackground()
	hookCtx, cancel := context.WithDeadline(context.Background(), deadline.Add(m.cfg.CallTimeout))
	defer cancel()
	if opts.Snapshot != nil && m.has[expSnapshot] {
		if err := m.snapshot(hookCtx, opts.Snapshot); err != nil {
			errs = append(errs, err)
		}
	}
	if m.has[expStop] {
		left := time.Until(deadline)
		if left < 0 {
			left = 0
		}
		for k := range m.pool.slots {
			inst := m.pool.reserved(k)
			if inst == nil || inst.dead() {
				continue
			}
			inst.stack[0] = uint64(left.Milliseconds())
			inst.hasErrMsg = false
			if err := inst.callRaw(hookCtx, expStop); err != nil {
				errs = append(errs, fmt.Errorf("module %q: wasmpod_stop: %w", m.cfg.Name, err))
			} else if rc := int32(inst.stack[0]); rc != 0 {
				errs = append(errs, fmt.Errorf("module %q: wasmpod_stop returned %d%s", m.cfg.Name, rc, inst.errSuffix()))
			}
		}
	}
	m.closeAll(ctx)
	if err := m.transition(StateStopped, "stopped"); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (m *Module) snapshot(ctx context.Context, sink func([]byte) error) error {
	for k := range m.pool.slots {
		inst := m.pool.reserved(k)
		if inst == nil || inst.dead() {
			continue
		}
		inst.hasErrMsg = false
		if err := inst.callRaw(ctx, expSnapshot); err != nil {
			return fmt.Errorf("module %q: wasmpod_snapshot: %w", m.cfg.Name, err)
		}
		state, err := inst.readResult(int64(inst.stack[0]), nil)
		if err != nil {
			return fmt.Errorf("module %q: wasmpod_snapshot: %w", m.cfg.Name, err)
		}
		if state == nil {
			state = []byte{}
		}
		return sink(state)
	}
	// Say what each slot held: this should not happen after a drain that took every slot, and
	// when it does, which of them went where is what finding out why needs.
	names := [...]string{"empty", "idle", "busy", "creating", "closed", "revoked"}
	var why []string
	for k := range m.pool.slots {
		st, inst := m.pool.slots[k].state(), m.pool.slots[k].inst.Load()
		name := fmt.Sprint(st)
		if st >= 0 && int(st) < len(names) {
			name = names[st]
		}
		switch {
		case inst == nil:
			why = append(why, fmt.Sprintf("slot %d %s, no instance", k, name))
		default:
			why = append(why, fmt.Sprintf("slot %d %s, instance broken %v, expired %v", k, name, inst.broken, inst.expired.Load()))
		}
	}
	return fmt.Errorf("module %q: snapshot: no instance available (%s)", m.cfg.Name, strings.Join(why, "; "))
}

// refillWait bounds how long a stop waits for the refill goroutine once cancelled: a guarded
// instance start is cut at once; a trusted module's wasmpod_start cannot be, and its slot, still
// creating, is then revoked like a call that outlived the stop (closeAll): the refill releases
// what it uses when it returns.
const refillWait = time.Second

// stopBackground stops the refill goroutine and waits for it, at most refillWait.
func (m *Module) stopBackground() {
	if m.bgCancel != nil {
		m.bgCancel()
		t := time.NewTimer(refillWait)
		select {
		case <-m.bgDone:
		case <-t.C:
			m.log(LevelWarn, "runtime", fmt.Sprintf("stop: the refill is still creating an instance after %s (a trusted module's start that does not return); it is left to finish", refillWait))
		}
		t.Stop()
		m.bgCancel = nil
	}
}

// drain reserves every slot for the stopping module: idle and empty slots are taken at once,
// busy ones as their calls return. It reports whether all were taken before the deadline.
// Reserved slots keep their instances for the snapshot and stop exports.
func (m *Module) drain(deadline time.Time) bool {
	p := &m.pool
	p.waiters.Add(1) // so put() wakes us
	defer p.waiters.Add(-1)
	for {
		ch := p.wakeCh()
		pending := 0
		for k := range p.slots {
			s := &p.slots[k]
			switch s.state() {
			case slotIdle:
				if !s.move(slotIdle, slotClosed, 0) {
					pending++
				}
			case slotEmpty:
				if !s.move(slotEmpty, slotClosed, 0) {
					pending++
				}
			case slotBusy, slotCreating:
				pending++
			}
		}
		if pending == 0 {
			return true
		}
		d := time.Until(deadline)
		if d <= 0 {
			return false
		}
		t := time.NewTimer(min(d, 20*time.Millisecond))
		select {
		case <-ch:
		case <-t.C:
		}
		t.Stop()
	}
}

// closeAll closes every slot for good and the instances Stop owns. A slot still busy or
// creating (a call that outlived the grace period) is revoked instead: its owner closes the
// instance when it returns (see pool.put, publishBusy, clear), and is counted until then
// (pool.outstanding). Closed slots are never handed out again, so nothing admitted before Stop
// can instantiate afterwards. Called with lifeMu held.
func (m *Module) closeAll(ctx context.Context) {
	for k := range m.pool.slots {
		s := &m.pool.slots[k]
		for {
			st := s.state()
			if st == slotRevoked {
				break
			}
			if st == slotBusy || st == slotCreating {
				// Counted before the owner can see the slot revoked (and take the count back).
				m.pool.outstanding.Add(1)
				if s.move(st, slotRevoked, 0) {
					break
				}
				// Not the last: no slot is busy or creating after the first releaseAll, so
				// releasing is not set yet, and releaseAll looks at the count after it.
				m.pool.outstanding.Add(-1)
				continue
			}
			if s.move(st, slotClosed, 0) { // idle, empty or already reserved
				if inst := s.inst.Load(); inst != nil {
					inst.close(ctx)
					s.inst.Store(nil)
				}
				break
			}
		}
	}
}

// Close stops the module without grace if it is not stopped (cut calls get a second to
// unwind, calls that nothing cuts as long), releases its compiled code and removes it from the
// engine. Idempotent.
//
// A call still running after that (a trusted module's, which nothing cuts, or one blocked in a
// host function) keeps what it uses: its instance, the module's compiled code and the engine's
// wazero runtime are released by the last such call as it returns, not under it. Close then
// returns an error wrapping [ErrCallsRunning] that says how many; calls after Close fail with
// ErrNotRunning all the same.
func (m *Module) Close(ctx context.Context) error {
	var err error
	if m.State() != StateStopped {
		err = m.stop(ctx, StopOptions{Grace: time.Nanosecond}, true)
	}
	return errors.Join(err, m.releaseAll(ctx))
}

// releaseAll closes every slot, refuses instantiations and image builds from now on, and
// releases the compiled code (finalRelease) at once, or, when calls still run in revoked slots,
// leaves that to the last of them to return (callsDrained) and says so. Idempotent.
func (m *Module) releaseAll(ctx context.Context) error {
	m.lifeMu.Lock()
	defer m.lifeMu.Unlock()
	m.closeAll(ctx)
	m.imgOnce.Do(func() {}) // no image build starts from now on; wait for one under way
	m.imgWG.Wait()
	m.cmMu.Lock() // waits for instantiations under way; later ones fail with ErrNotRunning
	first := !m.released
	m.released = true
	m.cmMu.Unlock()
	var err error
	if first {
		// The engine keeps its runtime open until this module's release (Engine.Close); counted
		// before the module leaves the engine's list, so an Engine.Close that no longer finds
		// it still waits for it.
		m.e.deferred.Add(1)
		m.releasing.Store(true)
		if n := m.pool.outstanding.Load(); n > 0 {
			err = fmt.Errorf("module %q: %w: %d call(s) still run in the guest and cannot be cut; their instances and the module's compiled code are released when they return", m.cfg.Name, ErrCallsRunning, n)
		} else {
			m.finalRelease(ctx)
		}
	}
	m.e.forget(m)
	m.subsMu.Lock()
	for s := range m.subs {
		delete(m.subs, s)
		close(s.ch)
	}
	m.subsMu.Unlock()
	return err
}

// callsDrained runs on the goroutine of the last owner of a revoked slot to return, its
// instance closed (pool.drained): after releaseAll it releases what releaseAll left to it.
// Whichever of the two sees both releasing set and no call outstanding releases.
func (m *Module) callsDrained() {
	if m.releasing.Load() {
		m.finalRelease(context.Background())
	}
}

// finalRelease releases the compiled code and the image, once no instance of the module can run
// any more, and then lets the engine close its runtime if it waits for this module. Runs once.
func (m *Module) finalRelease(ctx context.Context) {
	if !m.finalized.CompareAndSwap(false, true) {
		return
	}
	if m.cm != nil {
		_ = m.cm.Close(ctx)
	}
	if m.ext != nil {
		_ = m.ext.cp.Close(ctx)
	}
	m.releaseImage(ctx)
	m.e.moduleReleased(ctx)
}

func (m *Module) notRunning(st State) error {
	return fmt.Errorf("module %q is %s: %w", m.cfg.Name, st, ErrNotRunning)
}

// holdCompiled keeps the compiled code from being released until the returned func is called,
// for one instantiation. After Close it fails with ErrNotRunning (and ErrClosed).
func (m *Module) holdCompiled() (unhold func(), err error) {
	m.cmMu.RLock()
	if m.released {
		m.cmMu.RUnlock()
		return nil, fmt.Errorf("module %q is closed: %w (%w)", m.cfg.Name, ErrNotRunning, ErrClosed)
	}
	return m.cmMu.RUnlock, nil
}

// admit refuses a call when the module is not running. A call admitted just before Stop still
// finds a warm slot (Stop waits for it) or none (it fails with ErrNotRunning): it does not cold
// start once the module stops running; see drain, closeAll and acquireSlow.
func (m *Module) admit() error {
	if st := State(m.state.Load()); st != StateRunning {
		return m.notRunning(st)
	}
	return nil
}

// Part is one input of a merge call.
type Part struct {
	Data []byte
	// Missing marks a part whose shard failed or missed its deadline.
	Missing bool
}

// Call calls the role's handler with in and appends the output to dst. It is the hot path:
// with a warm instance it makes one wasm call and allocates nothing itself.
func (m *Module) Call(ctx context.Context, role Role, in, dst []byte) ([]byte, error) {
	return m.call(ctx, role, in, nil, false, dst)
}

// Merge calls the merge handler with the framed parts and appends the output to dst.
func (m *Module) Merge(ctx context.Context, parts []Part, dst []byte) ([]byte, error) {
	return m.call(ctx, RoleMerge, nil, parts, true, dst)
}

func (m *Module) noRole(r Role) error {
	if r < 0 || r >= numRoles {
		return fmt.Errorf("module %q: %w: %s", m.cfg.Name, ErrNoExport, r)
	}
	return fmt.Errorf("module %q: %w: %s (role %s)", m.cfg.Name, ErrNoExport, exportTable[r].name, r)
}

// call is Call and Merge (framed). Call is a bare forward to it, so the compiler inlines Call
// into its callers, and the common case runs here without invoke's helpers: every call level
// on this path costs a noticeable share of a short call (RATIONALE.md, "Where a call's time
// goes").
func (m *Module) call(ctx context.Context, role Role, in []byte, parts []Part, framed bool, dst []byte) ([]byte, error) {
	if role < 0 || role >= numRoles || !m.has[role] {
		return dst, m.noRole(role)
	}
	if st := State(m.state.Load()); st != StateRunning { // admit
		return dst, m.notRunning(st)
	}
	// Latency is timed on a sample of calls (LatencySampleEvery): a clock read is the most
	// expensive thing a short call would otherwise do. A call that has to wait or create an
	// instance takes its start time anyway (that path is slow), and is sampled like the rest.
	var start int64
	s := m.pool.tryIdle()
	if s == nil {
		var err error
		if s, start, err = m.acquireTimed(ctx); err != nil {
			return dst, err
		}
	}
	inst := s.inst.Load()
	if !inst.lat.sample() && !m.takeLatencyWish() {
		start = 0
	} else if start == 0 {
		start = nanotime()
	}
	// The common case (plain input that fits the buffer, a handler already looked up) runs
	// here, without the helpers it shares with the lifecycle calls (invoke).
	out, err := dst, error(nil)
	switch f := inst.fns[role]; {
	case inst.ext != nil:
		out, err = inst.invokeExtism(ctx, int(role), in, parts, framed, dst)
	case framed || f == nil || uint64(len(in)) > uint64(inst.bufCap) || uint64(len(in)) > uint64(m.e.cfg.MaxInputBytes):
		out, err = inst.invoke(ctx, int(role), in, parts, framed, dst)
	case len(in) > 0 && !inst.mem.Write(inst.bufPtr, in):
		err = inst.errBufferRange()
	default:
		inst.stack[0] = uint64(len(in))
		inst.hasErrMsg = false
		if m.cfg.Trusted { // callGuarded's trusted branch, here to save a call level
			if e := f.CallWithStack(ctx, inst.stack[:]); e != nil {
				inst.broken = true
				err = inst.classify(e)
			}
		} else {
			err = inst.callGuarded(ctx, f)
		}
		if r := inst.stack[0]; err == nil && r>>32 != 0 { // an output or a guest error
			out, err = inst.readResult(int64(r), dst)
		}
	}
	// Release the slot; counts the call (Stats.Calls) in the slot's state word.
	if s.putCall(inst) {
		m.pool.wakeWaiters()
	} else {
		m.release(s, 1)
	}
	if start != 0 || err != nil {
		m.account(start, err)
	}
	return out, err
}

// acquireTimed is call's slow path to an instance (waiting or creating one): it takes the
// call's start time first, and accounts a call that gets none.
func (m *Module) acquireTimed(ctx context.Context) (*slot, int64, error) {
	start := nanotime()
	s, err := m.acquireSlow(ctx)
	if err != nil {
		if !sampleNoInstance() {
			start = 0
		}
		m.calls.Add(1)
		m.account(start, err)
	}
	return s, start, err
}

// takeLatencyWish reports whether a reader of Stats asked for a timed call since the last one
// (and takes the wish): so at a low call rate, where 1 in LatencySampleEvery could leave a
// metrics interval without any sample, every interval with calls still has one. One load of a
// read-mostly flag on the path of an unsampled call.
func (m *Module) takeLatencyWish() bool {
	return m.latWish.Load() && m.latWish.CompareAndSwap(true, false)
}

// sampleNoInstance samples a call that failed before it had an instance (overload, stop).
func sampleNoInstance() bool { return rand.Uint32()%LatencySampleEvery == 0 }

// account counts a finished call's error, and records its latency if it was sampled (start is
// its start time; 0 when it was not sampled). The call itself is counted where its slot is
// released, or in m.calls if it had none.
func (m *Module) account(start int64, err error) {
	if start != 0 {
		m.lat.observe(nanotime() - start)
	}
	if err == nil {
		return
	}
	m.errs.Add(1)
	switch {
	case errors.Is(err, ErrTrap):
		m.traps.Add(1)
		m.log(LevelWarn, "runtime", err.Error()+" (instance replaced)")
	case errors.Is(err, ErrDeadline):
		m.timeouts.Add(1)
	case errors.Is(err, ErrGuest):
		m.guestErrs.Add(1)
	}
}

// Health is the result of a health check.
type Health int

// Health results, as the ABI's wasmpod_health numbers them.
const (
	Ready     Health = 0 // healthy and ready for traffic
	NotReady  Health = 1 // alive, but send it no traffic
	Unhealthy Health = 2 // restart it
)

func (h Health) String() string {
	switch h {
	case Ready:
		return "ready"
	case NotReady:
		return "not-ready"
	}
	return "unhealthy"
}

// Health runs the guest's health export on one instance. A module without one is Ready while it
// runs. A failing check (trap, deadline) is Unhealthy with the error.
func (m *Module) Health(ctx context.Context) (Health, error) {
	if err := m.admit(); err != nil {
		return Unhealthy, err
	}
	if !m.has[expHealth] {
		return Ready, nil
	}
	s, err := m.acquire(ctx)
	if err != nil {
		return Unhealthy, err
	}
	inst := s.inst.Load()
	err = inst.callRaw(ctx, expHealth)
	rc := int32(inst.stack[0])
	m.release(s, 0)
	if err != nil {
		return Unhealthy, fmt.Errorf("module %q: health check: %w", m.cfg.Name, err)
	}
	switch {
	case rc == 0:
		return Ready, nil
	case rc == 1:
		return NotReady, nil
	}
	return Unhealthy, nil
}

// Tick runs the guest's tick export once on one instance. The runtime never ticks by itself:
// the caller owns the schedule (in the host, the supervisor ticks each running version, so a
// low-priority module's ticks go through the pod's admission like its calls).
func (m *Module) Tick(ctx context.Context) error {
	if !m.has[expTick] {
		return fmt.Errorf("module %q: %w: wasmpod_tick", m.cfg.Name, ErrNoExport)
	}
	if err := m.admit(); err != nil {
		return err
	}
	s, err := m.acquire(ctx)
	if err != nil {
		return err
	}
	inst := s.inst.Load()
	inst.stack[0] = uint64(time.Now().UnixMilli())
	inst.hasErrMsg = false
	err = inst.callRaw(ctx, expTick)
	rc := int32(inst.stack[0])
	suffix := inst.errSuffix()
	m.release(s, 0)
	if err == nil && rc != 0 {
		err = fmt.Errorf("module %q: wasmpod_tick returned %d%s", m.cfg.Name, rc, suffix)
	}
	if err != nil {
		m.ticksFailed.Add(1)
	}
	return err
}

// Scale sets the warm pool size, within [0, MaxConcurrency]. Instances are created or closed in
// the background.
func (m *Module) Scale(n int) error {
	if n < 0 || n > m.cfg.MaxConcurrency {
		return fmt.Errorf("module %q: scale to %d: %w: allowed 0..%d (MaxConcurrency)", m.cfg.Name, n, ErrInput, m.cfg.MaxConcurrency)
	}
	m.target.Store(int32(n))
	m.signalRefill()
	return nil
}

// scaleBy implements the guest's scale import: -1 when not allowed, else the new target.
func (m *Module) scaleBy(delta int) int {
	if !m.cfg.AllowScale {
		return -1
	}
	for {
		cur := m.target.Load()
		n := min(max(int(cur)+delta, m.scaleMin), m.scaleMax)
		if m.target.CompareAndSwap(cur, int32(n)) {
			if n != int(cur) {
				m.log(LevelInfo, "runtime", fmt.Sprintf("guest asked to scale by %d: warm pool %d -> %d", delta, cur, n))
				m.signalRefill()
			}
			return n
		}
	}
}

// stopping reports whether the module is stopping or past it: no instance is to be created.
func (m *Module) stopping() bool {
	switch m.State() {
	case StateStopping, StateStopped, StateFailed:
		return true
	}
	return false
}

func (m *Module) signalRefill() {
	select {
	case m.refill <- struct{}{}:
	default:
	}
}

// refillLoop keeps the warm pool at its target: it replaces discarded instances and follows
// Scale. It is owned by the module and stops with it.
func (m *Module) refillLoop(ctx context.Context, done chan struct{}) {
	defer close(done)
	backoff := 50 * time.Millisecond
	failures := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.refill:
		}
		for ctx.Err() == nil {
			live, _ := m.pool.counts()
			target := int(m.target.Load())
			if live > target {
				// Shrink: close idle instances beyond the target.
				if s := m.pool.tryIdle(); s != nil {
					s.inst.Load().close(ctx)
					m.pool.clear(s, 0)
					continue
				}
				break
			}
			if live >= target || m.stopping() {
				break
			}
			s := m.pool.tryEmpty()
			if s == nil {
				break
			}
			inst, err := m.startInstance(ctx)
			if err != nil {
				m.pool.clear(s, 0)
				if ctx.Err() != nil {
					return
				}
				failures++
				m.log(LevelError, "runtime", fmt.Sprintf("refill: %v (retry in %s)", err, backoff))
				if l, _ := m.pool.counts(); l == 0 && failures >= 3 {
					// Fails only from running or paused; a concurrent Stop wins otherwise.
					m.fail(fmt.Errorf("module %q: no instance can be created: %w", m.cfg.Name, err))
					return
				}
				select {
				case <-ctx.Done():
					return
				case <-time.After(backoff):
				}
				backoff = min(backoff*2, 5*time.Second)
				continue
			}
			failures, backoff = 0, 50*time.Millisecond
			s.inst.Store(inst)
			m.pool.put(s, 0) // closes inst if Stop revoked the slot meanwhile
		}
	}
}

// Stats returns the module's counters.
func (m *Module) Stats() Stats {
	m.latWish.Store(true)
	live, busy := m.pool.counts()
	var pages uint64
	calls := m.calls.Load()
	for k := range m.pool.slots {
		s := &m.pool.slots[k]
		calls += s.calls()
		if st := s.state(); st == slotIdle || st == slotBusy {
			if inst := s.inst.Load(); inst != nil {
				pages += inst.pages()
			}
		}
	}
	return Stats{
		Module: m.cfg.Name, State: m.State(),
		Calls: calls, Errors: m.errs.Load(), Traps: m.traps.Load(), Timeouts: m.timeouts.Load(),
		Overloads: m.overloads.Load(), GuestErrors: m.guestErrs.Load(),
		Instantiations: m.instantiations.Load(), ColdStarts: m.coldStarts.Load(), Discards: m.discards.Load(),
		Instances: live, Busy: busy, Target: int(m.target.Load()), MemoryPages: pages,
		FootprintBytes: pages*65536 + uint64(live)*m.cfg.fixed.footprint(),
		TicksFailed:    m.ticksFailed.Load(), Latency: m.lat.snapshot(),
		FromImage:       m.fromImage.Load(),
		LogLinesDropped: m.logs.droppedLines.Load(), LogBytesDropped: m.logs.droppedBytes.Load(),
	}
}

// GuestMetrics returns the metrics the guest defined, with their current values.
func (m *Module) GuestMetrics() []GuestMetric { return m.metrics.snapshot() }

type subscription struct{ ch chan Event }

// Subscribe returns a channel of the module's lifecycle events. Events are dropped for a
// subscriber whose buffer is full. cancel ends the subscription and closes the channel.
func (m *Module) Subscribe(buffer int) (events <-chan Event, cancel func()) {
	s := &subscription{ch: make(chan Event, buffer)}
	m.subsMu.Lock()
	m.subs[s] = struct{}{}
	m.subsMu.Unlock()
	var once sync.Once
	return s.ch, func() {
		once.Do(func() {
			m.subsMu.Lock()
			if _, ok := m.subs[s]; ok {
				delete(m.subs, s)
				close(s.ch)
			}
			m.subsMu.Unlock()
		})
	}
}

func (m *Module) emit(ev Event) {
	if m.e.cfg.Events != nil {
		m.e.cfg.Events(ev)
	}
	m.subsMu.Lock()
	for s := range m.subs {
		select {
		case s.ch <- ev:
		default:
		}
	}
	m.subsMu.Unlock()
}
