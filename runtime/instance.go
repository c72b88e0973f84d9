package runtime

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/sys"

	"github.com/wasmpod/wasmpod/runtime/internal/instrument"
)

// initialBuffer is the buffer size the host asks every instance for at start.
const initialBuffer = 64 << 10

// instance is one instantiated copy of a module. It is used by one call at a time.
type instance struct {
	m    *Module
	mod  api.Module
	mem  api.Memory
	fns  [numExports]api.Function
	mem0 *limitedMemory

	stack  [2]uint64
	bufPtr uint32
	bufCap uint32

	// errMsg is what the guest passed to the error import during the current call.
	errMsg    []byte
	hasErrMsg bool

	// Termination (guarded modules): the module was instrumented to count fuel down at every
	// function entry and exit, loop head and long straight-line run, and to call the host's
	// __yield when it runs out (internal/instrument). A call sets its deadline (arm); a call
	// still running at its first yield arms the timer for the rest (so short calls, the vast
	// majority, never touch a timer). When the deadline passes, or the module is forced to
	// stop, expire marks the instance expired, empties its fuel and closes done (which wakes a
	// guest sleeping in WASI); the guest yields at its next check and __yield cuts the call. An
	// expired instance is never used again.
	fuel     api.MutableGlobal
	done     chan struct{}
	timer    *time.Timer  // created by the first call that runs long enough to yield; nil until then
	deadline atomic.Int64 // nanotime at which the current call is cut; 0 between calls and while pending
	armed    bool         // the timer runs for the current call; only the calling goroutine uses it
	// A call's deadline is fixed when first needed (stamp), not as it starts: a clock read
	// costs more than a short call's whole overhead on some machines, and most calls end
	// before anything needs it. Until then the call is pending with its timeout and context.
	// Only the calling goroutine (and the host functions it runs) uses these.
	pending bool
	pendD   time.Duration
	pendCtx context.Context
	// byCaller: the current call's deadline is its context's, which came before the module's
	// limit (for the error that says which deadline cut it). Calling goroutine only.
	byCaller bool
	// A cancellable context cuts the call when it is cancelled, through a hook registered with
	// context.AfterFunc when the deadline is stamped, not as the call starts (see hookCancel):
	// unhook stops it and hookCtx is the context it watches. Calling goroutine only.
	unhook   func() bool
	hookCtx  context.Context
	expired  atomic.Bool
	stopping atomic.Bool // cut because the module stopped, not because of its deadline
	// cancelled: cut because the call's context was cancelled (its caller went away), not
	// because of its deadline.
	cancelled atomic.Bool
	broken    bool // a call trapped, exited or was cut: never reuse

	stdout, stderr *lineWriter

	lat sampler // picks the calls whose latency is timed; owned by the instance's caller

	seam seam // state host functions keep for this instance (seam.go)

	ext *extismInstance // set for Extism modules, which use none of the native fields above

	rec *initRecord // set while the module's first instance initialises (image.go)
}

// pages is the instance's memory size in 64 KiB pages; safe from any goroutine.
func (i *instance) pages() uint64 {
	if i.ext != nil {
		return i.ext.pages()
	}
	return i.mem0.pages.Load()
}

// expire cuts the instance's current call (if any). Safe from any goroutine, idempotent.
func (i *instance) expire() {
	if i.expired.CompareAndSwap(false, true) {
		if i.fuel != nil {
			i.fuel.Set(0)
		}
		close(i.done)
		if i.ext != nil {
			if c := i.ext.cancel.Load(); c != nil {
				(*c)()
			}
		}
	}
}

// arm sets the deadline of the call about to start, d from now.
func (i *instance) arm(d time.Duration) { i.deadline.Store(nanotime() + int64(d)) }

// armLazy starts a call whose deadline is the earlier of d and ctx's deadline, counted from
// the moment it is first needed (stamp): the guest's first yield (within one fuel refill of
// guest work), a host import, a WASI sleep or Caller.Deadline. So a call that ends before any
// of these reads no clock, and registers nothing on ctx (see hookCancel).
func (i *instance) armLazy(ctx context.Context, d time.Duration) {
	i.pending, i.pendD, i.pendCtx = true, d, ctx
}

// stamp fixes the current call's deadline if it is pending and returns it (a nanotime; 0 when
// no call with a deadline runs), and from then on cuts the call when its context is cancelled
// (hookCancel). On the calling goroutine only.
func (i *instance) stamp() int64 {
	if !i.pending {
		return i.deadline.Load()
	}
	ctx := i.pendCtx
	now := nanotime()
	d := i.pendD
	i.byCaller = false
	if dl, ok := ctx.Deadline(); ok {
		if r := time.Until(dl); r < d {
			d, i.byCaller = r, true
		}
	}
	i.pending, i.pendCtx = false, nil
	at := now + int64(max(d, 0))
	i.deadline.Store(at)
	i.hookCancel(ctx)
	return at
}

// hookCancel makes a cancellation of ctx cut the current call, as its deadline does (the
// caller went away). It runs when the call's deadline is stamped, not when the call starts
// (RATIONALE.md, "Lazy cancellation hook"): a call that ends before its first yield, host
// import or WASI sleep registers nothing, and one that runs longer is cut as before, because
// every way a guarded call can keep running or wait goes through a stamp first: the guest's
// fuel runs out within one refill of work and __yield stamps, a host import and a WASI sleep
// stamp before they block. A context already cancelled at the stamp cuts the call here, so
// the __yield that stamped sees it; one cancelled later expires the instance from the
// AfterFunc (fuel emptied, done closed), so the guest's next check or sleep ends the call.
// A context that cannot be cancelled costs nothing.
func (i *instance) hookCancel(ctx context.Context) {
	if ctx.Done() == nil {
		return
	}
	i.hookCtx = ctx
	i.unhook = context.AfterFunc(ctx, func() { i.cut(ctx) })
	if ctx.Err() != nil {
		i.cut(ctx)
	}
}

// disarm ends the call's deadline. It reports whether the deadline's timer fired meanwhile;
// then the instance is expired (the timer's function may still be on its way, so it is marked
// here too).
func (i *instance) disarm() (fired bool) {
	if i.pending { // nothing needed the deadline: no clock read, no timer
		i.pending, i.pendCtx = false, nil
		return false
	}
	return i.disarmStamped()
}

func (i *instance) disarmStamped() (fired bool) {
	i.deadline.Store(0)
	if i.unhook != nil {
		if !i.unhook() {
			// Cancelled as the call returned: the hook's function may still be on its way, so
			// the instance is marked here, before it is released (dead retires it).
			i.cut(i.hookCtx)
		}
		i.unhook, i.hookCtx = nil, nil
	}
	if !i.armed {
		return false
	}
	i.armed = false
	if !i.timer.Stop() {
		i.expire()
		return true
	}
	return false
}

// yielded is what __yield does about the deadline, on the guest's goroutine: it reports whether
// the call is past its deadline (then the instance is expired), and otherwise arms the timer
// for the rest of a call that is running long enough to yield.
func (i *instance) yielded() (cut bool) {
	if i.expired.Load() {
		return true
	}
	dl := i.stamp()
	if i.expired.Load() { // the stamp found the call's context cancelled (hookCancel)
		return true
	}
	if dl == 0 {
		return false
	}
	left := dl - nanotime()
	if left <= 0 {
		i.expire()
		return true
	}
	if !i.armed {
		i.armed = true
		if i.timer == nil { // created by the instance's first call that runs this long
			i.timer = time.AfterFunc(time.Duration(left), i.expire)
		} else {
			i.timer.Reset(time.Duration(left))
		}
	}
	return false
}

// nanosleep is the guest's WASI sleep: it ends early when the instance is cut, and at the
// call's deadline (which cuts it), so a sleeping guest reaches its next check instead of
// sleeping past its deadline.
func (i *instance) nanosleep(ns int64) {
	if ns <= 0 {
		return
	}
	if dl := i.stamp(); dl != 0 {
		if left := dl - nanotime(); left < ns {
			ns = max(left, 1)
			defer i.expire() // at the deadline (or earlier, if cut): idempotent
		}
	}
	t := time.NewTimer(time.Duration(ns))
	select {
	case <-t.C:
	case <-i.done:
		t.Stop()
	}
}

// newInstance creates an instance ready for its start export: from the module's image when it
// has one (image.go), else by instantiating and initialising it (initInstance).
func (m *Module) newInstance(ctx context.Context) (*instance, error) {
	if m.ext != nil {
		return m.newExtismInstance(ctx)
	}
	if img := m.img.Load(); img != nil {
		inst, err := m.newImageInstance(ctx, img)
		if err != nil {
			return nil, err
		}
		m.instantiations.Add(1)
		m.fromImage.Add(1)
		return inst, nil
	}
	m.startImage()
	return m.initInstance(ctx, nil)
}

// initInstance instantiates the module, runs _initialize, checks the ABI version and gets the
// input buffer. It does not run the start export. With rec, what the initialisation asks of the
// host is recorded for the image.
func (m *Module) initInstance(ctx context.Context, rec *initRecord) (*instance, error) {
	inst := m.newShell(rec)
	if err := m.instantiate(ctx, inst, m.moduleConfig(inst, rec)); err != nil {
		return nil, err
	}
	fail := func(err error) (*instance, error) {
		inst.close(ctx)
		return nil, err
	}
	if m.has[expInitialize] {
		if err := inst.callRaw(ctx, expInitialize); err != nil {
			return fail(fmt.Errorf("module %q: _initialize: %w", m.cfg.Name, err))
		}
	}
	if err := inst.callRaw(ctx, expVersion); err != nil {
		return fail(fmt.Errorf("module %q: wasmpod_abi_version: %w", m.cfg.Name, err))
	}
	if v := int32(inst.stack[0]); v != ABIVersion {
		return fail(fmt.Errorf("%w: module %q speaks wasmpod ABI version %d; this host speaks version %d", ErrInvalidModule, m.cfg.Name, v, ABIVersion))
	}
	if err := inst.growBuffer(ctx, initialBuffer); err != nil {
		return fail(err)
	}
	m.instantiations.Add(1)
	return inst, nil
}

// instantiate creates inst's wasm instance from the module's compiled code: its linear memory
// under the module's page limit, the fuel and timer that cut it at its deadline (unless
// trusted), and its registration so host functions find it. Shared by pooled instances and
// one-shot commands.
func (m *Module) instantiate(ctx context.Context, inst *instance, mc wazero.ModuleConfig) error {
	return m.instantiateWith(ctx, inst, mc, nil)
}

// instantiateWith is instantiate from the module's code (img nil) or from its image: then the
// memory maps the image and the start function, which ran before the capture, does not run.
func (m *Module) instantiateWith(ctx context.Context, inst *instance, mc wazero.ModuleConfig, img *image) error {
	inst.mem0 = &limitedMemory{limit: m.memoryLimit()}
	cm := m.cm
	var alloc experimental.MemoryAllocator = experimental.MemoryAllocatorFunc(func(capacity, max uint64) experimental.LinearMemory {
		inst.mem0.buf = make([]byte, 0, min(capacity, inst.mem0.limit))
		return inst.mem0
	})
	var cow *cowMemory
	if img != nil {
		var err error
		if cow, err = img.backing.newMemory(inst.mem0.limit, &inst.mem0.pages); err != nil {
			return fmt.Errorf("module %q: instance from image: %w", m.cfg.Name, err)
		}
		cow.closing = &m.e.rtClosing
		cm = img.cm
		alloc = experimental.MemoryAllocatorFunc(func(capacity, max uint64) experimental.LinearMemory { return cow })
	}
	ictx := experimental.WithMemoryAllocator(ctx, alloc)
	unhold, err := m.holdCompiled()
	if err != nil {
		if cow != nil {
			cow.Free()
		}
		return err
	}
	mod, err := m.e.rt.InstantiateModule(ictx, cm, mc)
	unhold()
	if err != nil {
		if cow != nil {
			cow.Free() // idempotent if wazero freed it
		}
		return fmt.Errorf("module %q: instantiate: %w", m.cfg.Name, err)
	}
	inst.mod = mod
	inst.mem = mod.Memory()
	inst.done = make(chan struct{})
	if !m.cfg.Trusted {
		g, ok := mod.ExportedGlobal(instrument.FuelName).(api.MutableGlobal)
		if !ok {
			mod.Close(ctx)
			return fmt.Errorf("module %q: instrumented fuel global missing", m.cfg.Name)
		}
		inst.fuel = g
	}
	m.e.register(mod, inst)
	if !m.cfg.Trusted && img == nil {
		// The instrumentation moved the start section's function to an export, so that it runs
		// here like any call, under the deadline, instead of unbounded inside instantiation.
		if f := mod.ExportedFunction(instrument.StartName); f != nil {
			if err := inst.callGuarded(ctx, f); err != nil {
				inst.close(ctx)
				return fmt.Errorf("module %q: start function: %w", m.cfg.Name, err)
			}
		}
	}
	return nil
}

// growBuffer asks the guest for a buffer of at least n bytes.
func (i *instance) growBuffer(ctx context.Context, n uint32) error {
	i.stack[0] = uint64(n)
	if err := i.callRaw(ctx, expBuffer); err != nil {
		return fmt.Errorf("module %q: wasmpod_buffer(%d): %w", i.m.cfg.Name, n, err)
	}
	p := uint32(i.stack[0])
	if p == 0 {
		return fmt.Errorf("%w: module %q: wasmpod_buffer(%d) returned 0", ErrTooLarge, i.m.cfg.Name, n)
	}
	if uint64(p)+uint64(n) > uint64(i.mem.Size()) {
		return fmt.Errorf("%w: module %q: wasmpod_buffer(%d) returned %#x, outside its memory", ErrInvalidModule, i.m.cfg.Name, n, p)
	}
	i.bufPtr, i.bufCap = p, n
	return nil
}

// callRaw calls export exp with i.stack as its parameters and results, under the call deadline.
// It returns a classified error; an instance that trapped or was cut must not be reused
// (see dead).
//
// An export's function handle is looked up at its first call, not at instantiation: wazero
// gives each handle its own call stack (about 10 KiB of Go heap), and an instance typically
// calls two or three of its exports. The handles of exports called once per instance (oneShot)
// are not kept at all.
func (i *instance) callRaw(ctx context.Context, exp int) error {
	f := i.fns[exp]
	if f == nil {
		f = i.mod.ExportedFunction(exportTable[exp].name)
		if f == nil {
			return fmt.Errorf("%w: %s", ErrNoExport, exportTable[exp].name)
		}
		if !exportTable[exp].oneShot {
			i.fns[exp] = f
		}
	}
	return i.callGuarded(ctx, f)
}

// callGuarded calls f with i.stack as its parameters and results: trusted modules plainly,
// guarded ones under the earlier of the module's CallTimeout and ctx's deadline, after which the
// instance is cut (see arm, yielded). Every guest code a guarded instance runs goes through here:
// the start function, _initialize, the lifecycle exports and every handler.
func (i *instance) callGuarded(ctx context.Context, f api.Function) error {
	if i.m.cfg.Trusted {
		if err := f.CallWithStack(ctx, i.stack[:]); err != nil {
			i.broken = true
			return i.classify(err)
		}
		return nil
	}
	if err := ctx.Err(); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("module %q: %w (%w)", i.m.cfg.Name, ErrDeadline, err)
		}
		return fmt.Errorf("module %q: %w", i.m.cfg.Name, err)
	}
	// A cancellation of ctx cuts the call like its deadline does, from the call's first yield,
	// host import or WASI sleep on (hookCancel).
	i.armLazy(ctx, i.m.cfg.CallTimeout)
	err := f.CallWithStack(ctx, i.stack[:])
	// If the timer fired or ctx was cancelled as the call returned, dead() retires the
	// instance; a result that made it stands.
	i.disarm()
	if err != nil {
		i.broken = true
		return i.classify(err)
	}
	return nil
}

// cut cuts the current call because ctx ended: classified as cancelled when ctx was
// cancelled, as a deadline when its deadline passed.
func (i *instance) cut(ctx context.Context) {
	if errors.Is(ctx.Err(), context.Canceled) {
		i.cancelled.Store(true)
	}
	i.expire()
}

// dead reports whether the instance must be discarded.
func (i *instance) dead() bool {
	return i.broken || i.expired.Load()
}

// deadlineNote says which deadline cut a call: the module's limit, or the caller's, when its
// context's deadline came first.
func deadlineNote(byCaller bool, limit time.Duration) string {
	if byCaller {
		return fmt.Sprintf("the caller's deadline, before the module's limit of %s", limit)
	}
	return fmt.Sprintf("limit %s", limit)
}

// callerFirst reports whether ctx's deadline comes before limit from now.
func callerFirst(ctx context.Context, limit time.Duration) bool {
	dl, ok := ctx.Deadline()
	return ok && time.Until(dl) < limit
}

func (i *instance) classify(err error) error {
	if err == nil {
		return nil
	}
	name := i.m.cfg.Name
	var exit *sys.ExitError
	var guestSaid string // the error import's message, which an SDK sends before it traps
	if i.hasErrMsg {
		guestSaid = string(i.errMsg)
	}
	if errors.As(err, &exit) {
		return &TrapError{Module: name, Kind: "exit", ExitCode: exit.ExitCode(), Detail: err.Error(), Message: guestSaid}
	}
	msg := err.Error()
	if i.expired.Load() {
		// The call was cut (by __yield, or a WASI call that noticed).
		if i.stopping.Load() {
			return fmt.Errorf("module %q: call cut because the module stopped: %w", name, ErrNotRunning)
		}
		if i.cancelled.Load() {
			return fmt.Errorf("module %q: call cut because its caller went away: %w", name, context.Canceled)
		}
		return fmt.Errorf("module %q: %w (%s)", name, ErrDeadline, deadlineNote(i.byCaller, i.m.cfg.CallTimeout))
	}
	kind := "other"
	for _, k := range trapKinds {
		if strings.Contains(msg, k.needle) {
			kind = k.kind
			break
		}
	}
	return &TrapError{Module: name, Kind: kind, Detail: msg, Message: guestSaid}
}

var trapKinds = []struct{ needle, kind string }{
	{"unreachable", "unreachable"},
	{"out of bounds memory access", "out-of-bounds"},
	{"integer divide by zero", "divide-by-zero"},
	{"integer overflow", "integer-overflow"},
	{"stack overflow", "stack-overflow"},
	{"invalid conversion to integer", "invalid-conversion"},
	{"invalid table access", "indirect-call"},
	{"indirect call type mismatch", "indirect-call"},
	{"out of bounds", "out-of-bounds"},
}

// invoke writes the input into the guest buffer, calls the role's handler and appends the
// output to dst. parts, when non-nil, is framed as merge input instead of in. Module.call
// does the common case itself (see there).
func (i *instance) invoke(ctx context.Context, exp int, in []byte, parts []Part, framed bool, dst []byte) ([]byte, error) {
	n, err := i.writeInput(ctx, in, parts, framed)
	if err != nil {
		return dst, err
	}
	i.stack[0] = uint64(n)
	i.hasErrMsg = false
	if err := i.callRaw(ctx, exp); err != nil {
		return dst, err
	}
	return i.readResult(int64(i.stack[0]), dst)
}

func (i *instance) writeInput(ctx context.Context, in []byte, parts []Part, framed bool) (uint32, error) {
	size := uint64(len(in))
	if framed {
		size = 4
		for _, p := range parts {
			size += 4
			if !p.Missing {
				size += uint64(len(p.Data))
			}
		}
	}
	if size > uint64(i.m.e.cfg.MaxInputBytes) {
		return 0, fmt.Errorf("%w: module %q: input of %d bytes is over the limit of %d", ErrInput, i.m.cfg.Name, size, i.m.e.cfg.MaxInputBytes)
	}
	n := uint32(size)
	if n > i.bufCap {
		if err := i.growBuffer(ctx, n); err != nil {
			return 0, err
		}
	}
	if !framed {
		if n > 0 && !i.mem.Write(i.bufPtr, in) {
			return 0, i.errBufferRange()
		}
		return n, nil
	}
	off := i.bufPtr
	ok := i.mem.WriteUint32Le(off, uint32(len(parts)))
	off += 4
	for _, p := range parts {
		if p.Missing {
			ok = ok && i.mem.WriteUint32Le(off, 0xFFFFFFFF)
			off += 4
			continue
		}
		ok = ok && i.mem.WriteUint32Le(off, uint32(len(p.Data))) && i.mem.Write(off+4, p.Data)
		off += 4 + uint32(len(p.Data))
	}
	if !ok {
		return 0, i.errBufferRange()
	}
	return n, nil
}

func (i *instance) errBufferRange() error {
	return fmt.Errorf("%w: module %q: buffer out of memory range", ErrInvalidModule, i.m.cfg.Name)
}

// readResult decodes a handler result and appends the output to dst.
func (i *instance) readResult(r int64, dst []byte) ([]byte, error) {
	if r < 0 {
		code := int32(-r)
		if r < -(1 << 31) {
			code = -1
		}
		ge := &GuestError{Module: i.m.cfg.Name, Code: code}
		if i.hasErrMsg {
			ge.Message = string(i.errMsg)
		}
		return dst, ge
	}
	n, p := uint32(r>>32), uint32(r)
	if n == 0 {
		return dst, nil
	}
	if n > i.m.e.cfg.MaxOutputBytes {
		return dst, fmt.Errorf("%w: module %q: output of %d bytes is over the limit of %d", ErrOutput, i.m.cfg.Name, n, i.m.e.cfg.MaxOutputBytes)
	}
	b, ok := i.mem.Read(p, n)
	if !ok {
		return dst, fmt.Errorf("%w: module %q: output [%#x, +%d) is outside its memory (%d bytes)", ErrInvalidModule, i.m.cfg.Name, p, n, i.mem.Size())
	}
	return append(dst, b...), nil
}

// close releases the instance. Idempotent.
func (i *instance) close(ctx context.Context) {
	if i.timer != nil {
		i.timer.Stop()
	}
	i.closeSeam()
	if i.mod != nil {
		i.m.e.unregister(i.mod)
		_ = i.mod.Close(ctx)
	}
	if i.ext != nil && i.ext.p != nil {
		_ = i.ext.p.Close(ctx)
	}
	i.stdout.flush()
	i.stderr.flush()
}

// limitedMemory backs an instance's linear memory and refuses to grow past the module's limit,
// so memory.grow returns -1 to the guest instead of the host running out of memory.
type limitedMemory struct {
	buf   []byte
	limit uint64
	pages atomic.Uint64 // current size in 64 KiB pages, readable from any goroutine
}

func (l *limitedMemory) Reallocate(size uint64) []byte {
	if size > l.limit {
		return nil
	}
	l.pages.Store(size / 65536)
	if size <= uint64(cap(l.buf)) {
		l.buf = l.buf[:size]
		return l.buf
	}
	// Grow geometrically (capped at the limit) so a guest that grows one page at a time does not
	// copy its whole memory on every grow; by a quarter, not double, because idle instances keep
	// their capacity and a warm pool holds many of them.
	c := max(size, min(uint64(cap(l.buf))*5/4, l.limit))
	nb := make([]byte, size, c)
	copy(nb, l.buf)
	l.buf = nb
	return nb
}

func (l *limitedMemory) Free() { l.buf = nil }

// newShell returns an instance of m not yet instantiated, whose stdout and stderr go to the
// engine's log sink line by line; rec, when not nil, records its initialisation (image.go).
func (m *Module) newShell(rec *initRecord) *instance {
	i := &instance{m: m, rec: rec}
	var cut func() bool
	if !m.cfg.Trusted {
		cut = i.outputCut
	}
	i.stdout = &lineWriter{m: m, source: "stdout", level: LevelInfo, sink: m.e.cfg.Logs, cut: cut}
	i.stderr = &lineWriter{m: m, source: "stderr", level: LevelWarn, sink: m.e.cfg.Logs, cut: cut}
	return i
}

// outputCut is the deadline check of the guest's stdout and stderr (lineWriter), on the calling
// goroutine: like __yield's, it stamps the call's deadline and reports whether the call is past
// it (or was cut otherwise). An Extism call's deadline is its context's.
func (i *instance) outputCut() bool {
	if i.ext != nil {
		return i.expired.Load() || i.ext.call != nil && i.ext.call.Err() != nil
	}
	return i.yielded()
}
