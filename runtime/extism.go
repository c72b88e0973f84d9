package runtime

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"

	extism "github.com/extism/go-sdk"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/sys"

	"github.com/wasmpod/wasmpod/runtime/internal/instrument"
)

// Extism modules run on extism go-sdk: one CompiledPlugin per module (with its own wazero
// runtime, sharing the engine's compilation cache), one extism Plugin per instance. The pool,
// lifecycle, limits and statistics are the same as for native modules; only the call differs:
// input and output go through Extism's kernel (its cost is Extism's, see bench/), the deadline
// is a context deadline on a runtime with WithCloseOnContextDone, and the memory limit is one
// budget per instance that all its memories share, the plugin's and Extism's kernel's
// (extismBudget); the manifest's MaxPages only caps each memory on its own.

// extismModule is what an Extism module shares between its instances.
type extismModule struct {
	cp    *extism.CompiledPlugin
	fns   [numRoles]string // the function serving each role ("" if the module lacks it)
	hosts []hostPattern
}

// extismInstance is the Extism side of an instance.
type extismInstance struct {
	p      *extism.Plugin
	mem    *extismBudget // what the plugin's and the kernel's memories hold together
	cancel atomic.Pointer[context.CancelFunc]
	// closed is set when any module of the instance closes (wazero's close notifier): a WASI
	// proc_exit, which extism go-sdk reports as a successful call when its code is 0, or a cut.
	// A closed instance is never reused: its next call would fail with "module is closed".
	closed atomic.Bool
	// call is the context of the call in progress (its deadline), for the guest's stdout and
	// stderr (instance.outputCut); the calling goroutine's only.
	call  context.Context
	frame []byte // merge framing buffer, reused
}

// extismCompilationCache returns the cache extism runtimes compile into: the engine's on-disk
// cache, or an in-memory one, so a module loaded twice is compiled once.
func (e *Engine) extismCompilationCache() wazero.CompilationCache {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.cache != nil {
		return e.cache
	}
	if e.extCache == nil {
		e.extCache = wazero.NewCompilationCache()
	}
	return e.extCache
}

// extismFunctionOK reports whether an export can serve as an Extism function: () -> i32 or
// () -> () (extism go-sdk accepts both).
func extismFunctionOK(e instrument.Export) bool {
	return e.Kind == instrument.KindFunc && len(e.Params) == 0 &&
		(len(e.Results) == 0 || (len(e.Results) == 1 && e.Results[0] == instrument.I32))
}

// extismFunctionNames lists the exports that can serve as Extism functions, "none" if none.
func extismFunctionNames(d *instrument.Desc) []string {
	var out []string
	for _, x := range d.Exports {
		if extismFunctionOK(x) && !strings.HasPrefix(x.Name, "_") {
			out = append(out, x.Name)
		}
	}
	if len(out) == 0 {
		out = append(out, "none")
	}
	return out
}

// loadExtism is Load for ABIExtism.
func (e *Engine) loadExtism(ctx context.Context, wasm []byte, cfg ModuleConfig, digest string, d *instrument.Desc) (*Module, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: module %q (Extism): %s", ErrInvalidModule, cfg.Name, fmt.Sprintf(format, args...))
	}
	info := Info{Name: cfg.Name, SHA256: digest, Trusted: cfg.Trusted}
	for _, imp := range d.Imports {
		info.Imports = append(info.Imports, imp.Module+"."+imp.Name)
		switch imp.Module {
		case ExtismImportModule, "wasi_snapshot_preview1":
		default:
			return nil, bad("imports %s.%s; an Extism module may import only from %q and wasi_snapshot_preview1 (wasmpod provides no Extism host functions of its own)", imp.Module, imp.Name, ExtismImportModule)
		}
		if imp.Kind != instrument.KindFunc {
			return nil, bad("imports a %s (%s.%s); only functions can be imported", imp.Kind, imp.Module, imp.Name)
		}
	}
	if mem := d.Memory; mem != nil {
		if mem.Imported {
			return nil, bad("imports a memory; a module must define its own")
		}
		info.MemoryMinPages = uint32(min(mem.Min, 1<<32-1))
		if mem.HasMax {
			info.MemoryMaxPages = uint32(min(mem.Max, 1<<32-1))
		}
		if mem.Min > uint64(cfg.MaxMemoryPages) {
			return nil, fmt.Errorf("%w: module %q: memory declares a minimum of %d pages, over its limit of %d pages (%d MiB)", ErrMemoryLimit, cfg.Name, mem.Min, cfg.MaxMemoryPages, cfg.MaxMemoryPages/16)
		}
		if mem.HasMax && mem.Max > uint64(cfg.MaxMemoryPages) {
			return nil, fmt.Errorf("%w: module %q: memory declares a maximum of %d pages, over its limit of %d pages (%d MiB); raise the limit or rebuild with a lower maximum", ErrMemoryLimit, cfg.Name, mem.Max, cfg.MaxMemoryPages, cfg.MaxMemoryPages/16)
		}
	}
	exports := map[string]instrument.Export{}
	for _, x := range d.Exports {
		exports[x.Name] = x
	}
	em := &extismModule{}
	var has [numExports]bool
	for r := Role(0); r < numRoles; r++ {
		fn, mapped := cfg.ExtismFunctions[r]
		if !mapped {
			fn = r.String()
		}
		x, ok := exports[fn]
		if !ok {
			if mapped {
				return nil, fmt.Errorf("%w: module %q (Extism): role %s is mapped to function %q, which it does not export (Extism functions: %s)", ErrNoExport, cfg.Name, r, fn, strings.Join(extismFunctionNames(d), ", "))
			}
			continue
		}
		if !extismFunctionOK(x) {
			if mapped {
				return nil, bad("function %q (role %s) has signature %s; an Extism function is () -> (i32) or () -> ()", fn, r, instrument.Signature(x.Params, x.Results))
			}
			continue
		}
		em.fns[r] = fn
		has[r] = true
		info.Roles = append(info.Roles, r.String())
	}
	for _, h := range cfg.AllowedHosts {
		p, err := parseHostPattern(h)
		if err != nil {
			return nil, bad("allowed host %q: %v", h, err)
		}
		em.hosts = append(em.hosts, p)
	}
	code, err := instrument.RenameImports(wasm, ExtismImportModule, extismOwnImports, extismHostNamespace)
	if err != nil {
		return nil, bad("%v", err)
	}
	if !cfg.Trusted {
		// The same instrumentation as native modules (fuel checks at function entry and exit,
		// loop heads and straight-line runs; bulk charges; the stack budget; capped tables):
		// wazero's WithCloseOnContextDone alone checks only loop heads, so recursion escaped it.
		// The host cannot reach the plugin's fuel global through Extism, so __yield checks the
		// call's context instead: a cut lands within one refill of fuel.
		if code, err = instrument.InstrumentWith(code, instrument.Options{Fuel: yieldEvery, KeepStart: true}); err != nil {
			return nil, bad("%v", err)
		}
	}
	manifest := extism.Manifest{
		Wasm: []extism.Wasm{extism.WasmData{Data: code}},
		// MaxVarBytes 0 disables vars in extism go-sdk too (var_set panics), so the bound passes
		// through unchanged.
		Memory: &extism.ManifestMemory{MaxPages: cfg.MaxMemoryPages, MaxHttpResponseBytes: int64(e.cfg.MaxOutputBytes), MaxVarBytes: cfg.MaxVarBytes},
		Config: cfg.Config,
		// No AllowedHosts: http_request is wasmpod's (extismHTTPRequest), which checks em.hosts.
	}
	// No AllowedPaths either: Extism would mount them with wazero's plain directory mount, which
	// follows symbolic links out of the mount and knows no sizeLimit. Each instance gets the
	// native modules' file system instead (newExtismInstance, mountsFSConfig).
	rc := wazero.NewRuntimeConfig().WithCompilationCache(e.extismCompilationCache())
	if !cfg.Trusted {
		rc = rc.WithCloseOnContextDone(true)
	}
	cp, err := newCompiledPluginSafely(ctx, manifest, extism.PluginConfig{RuntimeConfig: rc, EnableWasi: true, EnableHttpResponseHeaders: true}, e.extismHostFunctions())
	if err != nil {
		return nil, bad("%v", err)
	}
	em.cp = cp
	m := &Module{
		e: e, ext: em, cfg: cfg, info: info, has: has, digest: digest,
		pool:   newPool(cfg.MaxConcurrency),
		refill: make(chan struct{}, 1),
		subs:   map[*subscription]struct{}{},
	}
	if err := m.warmFirstCtx(ctx); err != nil {
		_ = cp.Close(ctx)
		return nil, err
	}
	return m, nil
}

func newCompiledPluginSafely(ctx context.Context, m extism.Manifest, pc extism.PluginConfig, fns []extism.HostFunction) (cp *extism.CompiledPlugin, err error) {
	defer func() {
		if r := recover(); r != nil {
			cp, err = nil, fmt.Errorf("compiler panic: %v", r)
		}
	}()
	// extismKey first, then the plugin's bytes: compileOnce takes only the latter, so the order
	// is the same everywhere.
	defer compileLocks.lock(extismKey)()
	for _, w := range m.Wasm {
		if d, ok := w.(extism.WasmData); ok {
			defer compileLocks.lockBytes(d.Data)()
		}
	}
	return extism.NewCompiledPlugin(ctx, m, pc, fns)
}

// newExtismInstance instantiates an extism plugin for the module.
func (m *Module) newExtismInstance(ctx context.Context) (*instance, error) {
	inst := m.newShell(nil)
	inst.ext, inst.done = &extismInstance{}, make(chan struct{})
	mc := wazero.NewModuleConfig().
		WithStdout(inst.stdout).
		WithStderr(inst.stderr).
		WithSysWalltime().
		WithSysNanotime().
		WithRandSource(rand.Reader).
		WithNanosleep(inst.nanosleep)
	for k, v := range m.cfg.Env {
		mc = mc.WithEnv(k, v)
	}
	if len(m.cfg.Mounts) > 0 {
		mc = mc.WithFSConfig(mountsFSConfig(m.cfg.Mounts))
	}
	// Every memory the instance creates (Extism's kernel's, then the plugin's) draws on one
	// budget: the module's limit less its tables, as for native modules (memoryLimit).
	budget := &extismBudget{limit: m.memoryLimit()}
	inst.ext.mem = budget
	ictx := experimental.WithMemoryAllocator(ctx, experimental.MemoryAllocatorFunc(func(capacity, max uint64) experimental.LinearMemory {
		return &extismMemory{b: budget, buf: make([]byte, 0, min(capacity, budget.limit))}
	}))
	x := inst.ext
	ictx = experimental.WithCloseNotifier(ictx, experimental.CloseNotifyFunc(func(context.Context, uint32) { x.closed.Store(true) }))
	unhold, err := m.holdCompiled()
	if err != nil {
		return nil, err
	}
	// Instantiation runs the plugin's start function and initializers: under the call deadline,
	// which the instrumentation's __yield checks.
	// extism go-sdk runs a host function only with a plugin in the context, and the plugin does
	// not exist yet while its start function runs: __yield uses none, an empty one does.
	byCaller := callerFirst(ictx, m.cfg.CallTimeout)
	ictx, cancel := context.WithTimeout(context.WithValue(ictx, extism.PluginCtxKey("plugin"), &extism.Plugin{}), m.cfg.CallTimeout)
	p, err := m.ext.cp.Instance(ictx, extism.PluginInstanceConfig{ModuleConfig: mc})
	cancel()
	unhold()
	if err != nil && !m.cfg.Trusted && errors.Is(ictx.Err(), context.DeadlineExceeded) {
		return nil, fmt.Errorf("module %q: instantiate: %w (%s): %v", m.cfg.Name, ErrDeadline, deadlineNote(byCaller, m.cfg.CallTimeout), err)
	}
	if err != nil && !m.cfg.Trusted && errors.Is(ctx.Err(), context.Canceled) {
		return nil, fmt.Errorf("module %q: instantiate: %w", m.cfg.Name, ctx.Err())
	}
	if err != nil {
		return nil, fmt.Errorf("%w: module %q: instantiate: %v", ErrInvalidModule, m.cfg.Name, err)
	}
	if used, limit := budget.used.Load(), budget.limit; used > limit {
		// The memories' declared minimums were charged even past the limit (extismMemory):
		// together with the tables they do not fit. The same for every instance, so the first
		// one, made at Load, refuses the module.
		_ = p.Close(context.Background())
		return nil, fmt.Errorf("%w: module %q: an instance's memories start at %s (the plugin's declared minimum and Extism's kernel's), over the %s its memory limit of %s leaves next to %s of tables",
			ErrMemoryLimit, m.cfg.Name, mib(used), mib(limit), mib(uint64(m.cfg.MaxMemoryPages)*65536), mib(m.cfg.fixed.tableBytes))
	}
	inst.ext.p = p
	m.instantiations.Add(1)
	return inst, nil
}

// invokeExtism is invoke for Extism instances: one Extism call of the role's function.
func (i *instance) invokeExtism(ctx context.Context, exp int, in []byte, parts []Part, framed bool, dst []byte) ([]byte, error) {
	m := i.m
	x := i.ext
	if framed {
		size := 4
		for _, p := range parts {
			size += 4
			if !p.Missing {
				size += len(p.Data)
			}
		}
		if uint64(size) > uint64(m.e.cfg.MaxInputBytes) {
			return dst, fmt.Errorf("%w: module %q: input of %d bytes is over the limit of %d", ErrInput, m.cfg.Name, size, m.e.cfg.MaxInputBytes)
		}
		x.frame = appendMergeFrame(x.frame[:0], parts)
		in = x.frame
	} else if uint64(len(in)) > uint64(m.e.cfg.MaxInputBytes) {
		return dst, fmt.Errorf("%w: module %q: input of %d bytes is over the limit of %d", ErrInput, m.cfg.Name, len(in), m.e.cfg.MaxInputBytes)
	}
	if err := ctx.Err(); err != nil {
		return dst, fmt.Errorf("module %q: %w", m.cfg.Name, err)
	}
	byCaller := callerFirst(ctx, m.cfg.CallTimeout)
	cctx, cancel := context.WithTimeout(ctx, m.cfg.CallTimeout)
	defer cancel()
	x.cancel.Store(&cancel)
	if i.expired.Load() { // cut before it began (the module is stopping)
		cancel()
	}
	fn := m.ext.fns[exp]
	x.call = cctx
	rc, out, err := x.p.CallWithContext(context.WithValue(cctx, extismCallKey{}, i), fn, in)
	x.call = nil
	x.cancel.Store(nil)
	if x.closed.Load() {
		// The plugin exited (proc_exit; with code 0 go-sdk reports a success, kept below) or
		// was cut: its modules are closed, so the instance cannot serve another call.
		i.broken = true
	} else if !x.kernelResettable() {
		i.broken = true
	}
	if cerr := cctx.Err(); cerr != nil {
		// The deadline passed or the call was cut: with WithCloseOnContextDone the plugin may
		// have been closed under the guest, so it is never reused, whatever the call returned.
		i.broken = true
		if err != nil {
			switch {
			case i.stopping.Load():
				return dst, fmt.Errorf("module %q: call cut because the module stopped: %w", m.cfg.Name, ErrNotRunning)
			case errors.Is(cerr, context.DeadlineExceeded):
				return dst, fmt.Errorf("module %q: %w (%s)", m.cfg.Name, ErrDeadline, deadlineNote(byCaller, m.cfg.CallTimeout))
			default:
				return dst, fmt.Errorf("module %q: call canceled: %w", m.cfg.Name, ctx.Err())
			}
		}
	}
	if err != nil {
		return dst, i.classifyExtism(cctx, rc, err)
	}
	if rc != 0 {
		return dst, &GuestError{Module: m.cfg.Name, Code: int32(rc)}
	}
	if uint64(len(out)) > uint64(m.e.cfg.MaxOutputBytes) {
		return dst, fmt.Errorf("%w: module %q: output of %d bytes is over the limit of %d", ErrOutput, m.cfg.Name, len(out), m.e.cfg.MaxOutputBytes)
	}
	return append(dst, out...), nil
}

// Where Extism's kernel (v1.7.0, embedded in go-sdk v1.7.1) keeps its allocator's position: a
// u64 in its root, which starts at offset 1 of its memory; its blocks start at offset 65.
const (
	extismKernelPosition = 9
	extismKernelBlocks   = 65
)

// kernelResettable reports whether go-sdk's reset of the kernel, which opens the instance's next
// call, can succeed: reset zeroes the bytes the allocator handed out, position bytes from the
// first block, and a plugin can write any position (go-sdk's store_u64 writes anywhere in the
// kernel's memory). Past the memory, reset trapped at the next call: go-sdk printed the trap on
// the host's stdout and failed that call, someone else's request, with "reset".
func (x *extismInstance) kernelResettable() bool {
	mem := x.p.Memory()
	pos, ok := mem.ReadUint64Le(extismKernelPosition)
	// The kernel is 32-bit: it zeroes uint32(position) bytes.
	return ok && extismKernelBlocks+uint64(uint32(pos)) <= uint64(mem.Size())
}

// classifyExtism turns a failed Extism call into the runtime's errors: a guest error (the
// plugin set an error message and returned non-zero) keeps the instance; anything else (trap,
// exit, refused capability, failed host function) discards it.
func (i *instance) classifyExtism(ctx context.Context, rc uint32, err error) error {
	name := i.m.cfg.Name
	var na *NotAllowedError
	if errors.As(err, &na) {
		i.broken = true
		return na
	}
	var exit *sys.ExitError
	if errors.As(err, &exit) {
		i.broken = true
		return &TrapError{Module: name, Kind: "exit", ExitCode: exit.ExitCode(), Detail: err.Error()}
	}
	// A guest error is exactly the message the plugin set with error_set; extism go-sdk returns
	// it as a plain error after the call returned normally. The kernel is asked under the call's
	// context: a plugin that corrupted the kernel's block list makes its length walk forever, and
	// only a context that ends cuts it (the instance is then discarded as for a trap).
	if msg := i.ext.p.GetErrorWithContext(ctx); msg != "" && msg == err.Error() {
		code := int32(rc)
		if code <= 0 {
			code = 1
		}
		if len(msg) > maxErrorMessage { // bounded as for native modules (the error import)
			msg = string(cutAtRune([]byte(msg), maxErrorMessage))
		}
		return &GuestError{Module: name, Code: code, Message: msg}
	}
	if strings.HasPrefix(err.Error(), "unknown function") {
		return fmt.Errorf("module %q: %w: %v", name, ErrNoExport, err)
	}
	i.broken = true
	msg := err.Error()
	kind := "other"
	for _, k := range trapKinds {
		if strings.Contains(msg, k.needle) {
			kind = k.kind
			break
		}
	}
	return &TrapError{Module: name, Kind: kind, Detail: msg}
}

// appendMergeFrame frames merge parts as guest-sdk/ABI.md section 2.1 describes.
func appendMergeFrame(b []byte, parts []Part) []byte {
	b = appendU32LE(b, uint32(len(parts)))
	for _, p := range parts {
		if p.Missing {
			b = appendU32LE(b, 0xFFFFFFFF)
			continue
		}
		b = appendU32LE(b, uint32(len(p.Data)))
		b = append(b, p.Data...)
	}
	return b
}

func appendU32LE(b []byte, v uint32) []byte {
	return append(b, byte(v), byte(v>>8), byte(v>>16), byte(v>>24))
}

// pages is the sum of the pages of an Extism instance's memories; safe from any goroutine.
func (x *extismInstance) pages() uint64 { return x.mem.used.Load() / 65536 }

// extismBudget is the memory one Extism instance may hold, shared by all its memories: ABI.md
// section 8 counts every memory of an instance against its limit, and with a limit for each
// memory the plugin and Extism's kernel could each fill one, twice the limit in all.
type extismBudget struct {
	limit uint64        // bytes, whole pages: the module's limit less its tables
	used  atomic.Uint64 // bytes the instance's memories hold (the sum of their sizes)
}

// take reserves n more bytes for a grow, or nothing and false if that would pass the limit.
// An instance's calls run one at a time, but a CAS keeps the sum exact whoever grows.
func (b *extismBudget) take(n uint64) bool {
	for {
		u := b.used.Load()
		if u > b.limit || n > b.limit-u {
			return false
		}
		if b.used.CompareAndSwap(u, u+n) {
			return true
		}
	}
}

// left is what the instance's memories may still grow by together.
func (b *extismBudget) left() uint64 {
	if u := b.used.Load(); u < b.limit {
		return b.limit - u
	}
	return 0
}

// extismMemory backs one memory of an Extism instance and refuses a grow past what its
// instance's budget has left, so memory.grow returns -1 to the plugin and the kernel's alloc
// returns 0 (it grows its memory the same way), as for a grow past the limit.
type extismMemory struct {
	b     *extismBudget
	buf   []byte
	sized bool // the memory has its declared minimum (wazero's first Reallocate)
}

func (l *extismMemory) Reallocate(size uint64) []byte {
	cur := uint64(len(l.buf))
	switch {
	case size > cur && !l.sized:
		// The declared minimum, at instantiation: wazero slices the result without checking
		// it, so a nil would panic in the host. It is charged even past the limit, and
		// newExtismInstance refuses an instance whose memories start over it.
		l.b.used.Add(size - cur)
	case size > cur:
		if !l.b.take(size - cur) {
			return nil
		}
	case size < cur: // wasm memories never shrink; kept so that used stays the sum
		l.b.used.Add(^(cur - size - 1))
	}
	l.sized = true
	if size <= uint64(cap(l.buf)) {
		l.buf = l.buf[:size]
		return l.buf
	}
	// Grow by a quarter like limitedMemory, capped at what this memory could reach if it took
	// all the budget left, so no memory keeps spare capacity it could never use.
	c := max(size, min(uint64(cap(l.buf))*5/4, size+l.b.left()))
	nb := make([]byte, size, c)
	copy(nb, l.buf)
	l.buf = nb
	return nb
}

// Free gives the memory's bytes back to the budget (the instance is closing).
func (l *extismMemory) Free() {
	l.b.used.Add(^(uint64(len(l.buf)) - 1))
	l.buf = nil
}
