package runtime

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/wasmpod/wasmpod/runtime/internal/instrument"
)

// Engine compiles and runs modules. It is safe for concurrent use. Close it to release every
// module it loaded.
type Engine struct {
	cfg Config

	mu     sync.Mutex
	closed bool
	// rtClosing is set just before the wazero runtime closes, which frees the memories of
	// instances whose calls may still run: image memories are then left mapped (cowMemory.Free).
	rtClosing atomic.Bool
	// The wazero runtime is closed once: by Close, or, when calls that cannot be cut still ran
	// in modules it closed, by the last of them as it returns (moduleReleased). deferred counts
	// the modules whose release (Module.releaseAll) is not done yet; shut is set once Close
	// closed every module. The runtime closes when both hold (releaseRuntime).
	deferred atomic.Int64
	shut     atomic.Bool
	rtOnce   sync.Once
	rt       wazero.Runtime
	cache    wazero.CompilationCache
	modules  map[*Module]struct{}
	commands map[*Command]struct{}
	loads    map[*loadRun]struct{}
	// loadsIdle is made by Close while loads are in flight; the last of them closes it.
	loadsIdle chan struct{}
	hostFns   map[string]hostSig
	instByID  sync.Map // api.Module -> *instance, so imports find their caller

	// imgMu serialises instance-image compiles (Module.buildImage). Modules loaded from the
	// same .wasm usually capture byte-identical image modules, which wazero compiles once and
	// then shares (it keeps compiled modules by content hash): built one after another, N
	// such modules cost one compile, not N at once. It also keeps a burst of image builds,
	// which start when modules first need a second instance (under load), to one core.
	imgMu sync.Mutex

	extCache      wazero.CompilationCache // in-memory cache for Extism runtimes without CacheDir
	httpTransport *http.Transport         // Extism's http_request
}

// NewEngine creates an engine. With cfg.CacheDir set, compiled code is kept there.
func NewEngine(ctx context.Context, cfg Config) (*Engine, error) {
	if cfg.MaxOutputBytes == 0 {
		cfg.MaxOutputBytes = DefaultConfig().MaxOutputBytes
	}
	if cfg.MaxInputBytes == 0 {
		cfg.MaxInputBytes = DefaultConfig().MaxInputBytes
	}
	e := &Engine{cfg: cfg, modules: map[*Module]struct{}{}, commands: map[*Command]struct{}{}, loads: map[*loadRun]struct{}{}, httpTransport: newHTTPTransport()}
	e.hostFns = abiImportSigs()
	for _, f := range cfg.Imports {
		if _, dup := e.hostFns[f.Name]; dup {
			return nil, fmt.Errorf("runtime: extra import %q clashes with an existing wasmpod import", f.Name)
		}
		if f.Name == "" || f.Fn == nil {
			return nil, errors.New("runtime: extra import needs a name and a function")
		}
		e.hostFns[f.Name] = hostSig{params: f.Params, results: f.Results}
	}
	// No WithCloseOnContextDone: termination comes from instrumented loop checks (see
	// internal/instrument), which cost a load and a branch instead of a goroutine per call and a
	// call out to Go per loop iteration.
	rc := wazero.NewRuntimeConfig()
	if cfg.CacheDir != "" {
		c, err := wazero.NewCompilationCacheWithDir(cfg.CacheDir)
		if err != nil {
			return nil, fmt.Errorf("runtime: compilation cache %s: %w", cfg.CacheDir, err)
		}
		e.cache = c
		rc = rc.WithCompilationCache(c)
	}
	e.rt = wazero.NewRuntimeWithConfig(ctx, rc)
	if cfg.CacheDir != "" {
		max := cfg.CacheMaxBytes
		if max == 0 {
			max = DefaultConfig().CacheMaxBytes
		}
		tr := &cacheTrim{dir: cfg.CacheDir, max: max}
		tr.maybe(0)
		cacheDirs.Store(e.rt, tr)
	}
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, e.rt); err != nil {
		e.closeRuntime(ctx)
		return nil, fmt.Errorf("runtime: wasi: %w", err)
	}
	if err := e.instantiateHostModule(ctx, e.rt); err != nil {
		e.closeRuntime(ctx)
		return nil, err
	}
	return e, nil
}

func (e *Engine) closeRuntime(ctx context.Context) error {
	var errs []error
	e.rtClosing.Store(true)
	cacheDirs.Delete(e.rt)
	if err := e.rt.Close(ctx); err != nil {
		errs = append(errs, err)
	}
	if e.cache != nil {
		if err := e.cache.Close(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	e.mu.Lock()
	extCache := e.extCache
	e.mu.Unlock()
	if extCache != nil {
		if err := extCache.Close(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	e.httpTransport.CloseIdleConnections()
	return errors.Join(errs...)
}

// yieldEvery is how many loop iterations a guarded guest runs between two calls into the host:
// often enough that the Go scheduler and garbage collector are never held up for long (about
// 10-100 us of guest work), rarely enough that the call costs nothing measurable.
const yieldEvery = 1 << 15

// maxYieldInterval caps ModuleConfig.YieldInterval (see Module.warmFirst).
const maxYieldInterval = 1 << 20

// LoadFile reads a module from a file and loads it like [Engine.Load]. The file must be a
// regular one (through symlinks): a FIFO would block the read, a device be read without end. A
// file over the engine's CompileBudget.MaxModuleBytes is refused from its size, unread, with
// ErrCompileBudget (see [ReadModuleFile]).
func (e *Engine) LoadFile(ctx context.Context, path string, cfg ModuleConfig) (*Module, error) {
	b, err := ReadModuleFile(path, e.cfg.CompileBudget)
	if err != nil {
		return nil, fmt.Errorf("runtime: module %q: %w", cfg.Name, err)
	}
	return e.Load(ctx, b, cfg)
}

// Load compiles (or finds in the cache) a module, checks it against the ABI and its limits, and
// returns it in state created. Nothing is half-loaded: on error nothing is kept.
func (e *Engine) Load(ctx context.Context, wasm []byte, cfg ModuleConfig) (_ *Module, err error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	sum := sha256.Sum256(wasm)
	digest := hex.EncodeToString(sum[:])
	if cfg.SHA256 != "" && !strings.EqualFold(cfg.SHA256, digest) {
		return nil, fmt.Errorf("%w: module %q: sha256 is %s, expected %s", ErrChecksum, cfg.Name, digest, strings.ToLower(cfg.SHA256))
	}
	ctx, ld, err := e.beginLoad(ctx)
	if err != nil {
		return nil, err
	}
	defer func() { err = e.endLoad(ld, "module", cfg.Name, err) }()
	return e.load(ctx, wasm, cfg, digest)
}

// loadRun is a load in flight (Load, LoadCommand): Engine.Close cancels its context, which cuts
// the guest code it runs (a start function, _initialize), and keeps the runtime open until it
// has returned. Its fields are guarded by Engine.mu.
type loadRun struct {
	cancel context.CancelFunc
	cut    bool // by Engine.Close
}

// beginLoad registers a load about to start and returns the context it runs under, or fails
// with ErrClosed once the engine is closed.
func (e *Engine) beginLoad(ctx context.Context) (context.Context, *loadRun, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return ctx, nil, fmt.Errorf("runtime: engine: %w", ErrClosed)
	}
	ctx, cancel := context.WithCancel(ctx)
	ld := &loadRun{cancel: cancel}
	e.loads[ld] = struct{}{}
	e.deferred.Add(1) // the runtime stays open until the load returns (moduleReleased)
	return ctx, ld, nil
}

// endLoad is a load's last step (deferred: it runs even if the load panics). It returns the
// load's error, which says that Engine.Close cut the load if it did.
func (e *Engine) endLoad(ld *loadRun, kind, name string, err error) error {
	e.mu.Lock()
	delete(e.loads, ld)
	cut := ld.cut
	var idle chan struct{}
	if len(e.loads) == 0 {
		idle, e.loadsIdle = e.loadsIdle, nil
	}
	e.mu.Unlock()
	ld.cancel()
	e.moduleReleased(context.Background()) // before Close's waiter wakes: it reads the count
	if idle != nil {
		close(idle)
	}
	if cut && err != nil {
		err = fmt.Errorf("runtime: %s %q: load cut: the engine is closing: %w (%w)", kind, name, ErrClosed, err)
	}
	return err
}

// load is Load once registered (beginLoad).
func (e *Engine) load(ctx context.Context, wasm []byte, cfg ModuleConfig, digest string) (*Module, error) {
	if err := instrument.CheckShape(wasm); err != nil {
		return nil, fmt.Errorf("%w: module %q: %v", ErrInvalidModule, cfg.Name, err)
	}
	fixed, err := e.checkBudget(wasm, cfg.Name, cfg.Trusted)
	if err != nil {
		return nil, err
	}
	if err := fixed.checkFits(cfg); err != nil {
		return nil, err
	}
	cfg.fixed = fixed
	if cfg.ABI != ABINative {
		d, err := instrument.Describe(wasm)
		if err != nil {
			return nil, fmt.Errorf("%w: module %q: %v", ErrInvalidModule, cfg.Name, err)
		}
		if cfg.ABI == ABIAuto {
			if cfg.ABI, err = detectABI(d); err != nil {
				return nil, fmt.Errorf("module %q: %w", cfg.Name, err)
			}
		}
		if cfg.ABI == ABIExtism {
			m, err := e.loadExtism(ctx, wasm, cfg, digest, d)
			return e.adopt(ctx, m, err)
		}
	}
	code := wasm
	if !cfg.Trusted {
		if code, err = instrument.Instrument(wasm, yieldEvery); err != nil {
			return nil, fmt.Errorf("%w: module %q: %v", ErrInvalidModule, cfg.Name, err)
		}
	}
	code, facts, err := e.prepareImage(code, cfg)
	if err != nil {
		return nil, fmt.Errorf("%w: module %q: %v", ErrInvalidModule, cfg.Name, err)
	}
	cm, err := compileSafely(ctx, e.rt, code)
	if errors.Is(err, errCache) {
		return nil, fmt.Errorf("runtime: module %q: %w", cfg.Name, err)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: module %q: %v", ErrInvalidModule, cfg.Name, err)
	}
	m, err := newModule(ctx, e, cm, cfg, digest, code, facts)
	if err != nil {
		cm.Close(ctx)
		return nil, err
	}
	return e.adopt(ctx, m, nil)
}

// adopt records a freshly loaded module in the engine, or releases it if the engine closed
// meanwhile.
func (e *Engine) adopt(ctx context.Context, m *Module, err error) (*Module, error) {
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		_ = m.releaseAll(ctx) // never started: no call runs in it
		return nil, fmt.Errorf("runtime: engine: %w", ErrClosed)
	}
	e.modules[m] = struct{}{}
	e.mu.Unlock()
	return m, nil
}

// compileSafely compiles, turning a panic inside the compiler into an error: untrusted bytes must
// never take the host down. When the engine's compilation cache fails the compile (wazero fails it
// for a damaged entry, at every load of that module, and when it cannot write or read the cache
// directory), the damaged entries are removed and the compile tried once more: a damaged entry
// is compiled again and rewritten; a failed write has left the compiled code in memory, which
// the second try finds. What still fails is reported as the cache's failure (errCache), not as
// an invalid module.
func compileSafely(ctx context.Context, rt wazero.Runtime, wasm []byte) (wazero.CompiledModule, error) {
	cm, err := compileOnce(ctx, rt, wasm)
	if err == nil {
		if v, ok := cacheDirs.Load(rt); ok {
			v.(*cacheTrim).maybe(cacheTrimEvery) // the compile may have added an entry (CacheMaxBytes)
		}
		return cm, nil
	}
	if !isCacheError(err) {
		return cm, err
	}
	v, ok := cacheDirs.Load(rt)
	if !ok {
		return nil, err
	}
	dir := v.(*cacheTrim).dir
	removed, rerr := repairCache(dir)
	if cm, err2 := compileOnce(ctx, rt, wasm); err2 == nil {
		return cm, nil
	} else if isCacheError(err2) {
		err = err2
	} else {
		return nil, err2
	}
	note := fmt.Sprintf("%d damaged entries removed", removed)
	if rerr != nil {
		note += fmt.Sprintf("; checking the entries: %v", rerr)
	}
	return nil, fmt.Errorf("%w %s: %w (%s)", errCache, dir, err, note)
}

func compileOnce(ctx context.Context, rt wazero.Runtime, wasm []byte) (cm wazero.CompiledModule, err error) {
	defer compileLocks.lockBytes(wasm)()
	defer func() {
		if r := recover(); r != nil {
			cm, err = nil, fmt.Errorf("compiler panic: %v", r)
		}
	}()
	return rt.CompileModule(ctx, wasm)
}

// errCache: the compilation cache failed a compile (compileSafely).
var errCache = errors.New("compilation cache failed")

// cacheDirs maps the wazero runtime of every engine with a CacheDir to that directory's
// trimmer, for compileSafely's repair and trims.
var cacheDirs sync.Map // wazero.Runtime -> *cacheTrim

// isCacheError reports whether a compile failed because of the compilation cache rather than
// the module: wazero's own cache errors ("compilationcache: ..."), and the file system's (the
// module's bytes never meet the file system).
func isCacheError(err error) bool {
	var pe *fs.PathError
	var le *os.LinkError
	return strings.Contains(err.Error(), "compilationcache:") || errors.As(err, &pe) || errors.As(err, &le)
}

// repairCache removes the entries of the compilation cache under dir that wazero would fail to
// read: it returns how many it removed and the first error that kept it from checking or
// removing one.
func repairCache(dir string) (int, error) {
	subs, err := filepath.Glob(filepath.Join(dir, "wazero-*"))
	if err != nil {
		return 0, err
	}
	var removed int
	var first error
	for _, sub := range subs {
		ents, err := os.ReadDir(sub)
		if err != nil {
			first = cmp.Or(first, err)
			continue
		}
		for _, ent := range ents {
			if strings.HasSuffix(ent.Name(), ".tmp") || ent.IsDir() {
				continue
			}
			p := filepath.Join(sub, ent.Name())
			b, err := os.ReadFile(p)
			if err != nil {
				first = cmp.Or(first, err)
				continue
			}
			if cacheEntryValid(b) {
				continue
			}
			if err := os.Remove(p); err != nil {
				first = cmp.Or(first, err)
				continue
			}
			removed++
		}
	}
	return removed, first
}

// cacheEntryValid checks a compilation cache entry as wazero reads it (wazevo's format:
// "WAZEVO", the length of the wazero version and the version, the number of functions (u32),
// an offset (u64) per function, the length of the code (u64), the code and its CRC-32C (u32),
// a source map flag byte (and when 1 a u64 count of 16-byte pairs), and a table of catch clauses
// (u32 count, each a u32 count of 5-byte clauses), all little-endian). Offsets must lie in the
// code. An entry of another wazero version passes: wazero discards those itself.
func cacheEntryValid(b []byte) bool {
	pos := 0
	take := func(n uint64) []byte {
		if pos < 0 || n > uint64(len(b)-pos) {
			pos = -1
			return nil
		}
		s := b[pos : pos+int(n)]
		pos += int(n)
		return s
	}
	u32 := func() uint64 {
		if s := take(4); s != nil {
			return uint64(binary.LittleEndian.Uint32(s))
		}
		return 0
	}
	u64 := func() uint64 {
		if s := take(8); s != nil {
			return binary.LittleEndian.Uint64(s)
		}
		return 0
	}
	if m := take(6); m == nil || string(m) != "WAZEVO" {
		return false
	}
	vl := take(1)
	if vl == nil || take(uint64(vl[0])) == nil {
		return false
	}
	nf := u32()
	if pos < 0 || nf*8 > uint64(len(b)-pos) {
		return false
	}
	offsets := take(nf * 8)
	codeLen := u64()
	code := take(codeLen)
	sum := u32()
	if pos < 0 || crc32.Checksum(code, crc32.MakeTable(crc32.Castagnoli)) != uint32(sum) {
		return false
	}
	for i := uint64(0); i < nf; i++ {
		if codeLen != 0 && binary.LittleEndian.Uint64(offsets[8*i:]) >= codeLen {
			return false
		}
	}
	sm := take(1)
	if sm == nil {
		return false
	}
	if sm[0] == 1 {
		n := u64()
		if pos < 0 || n > uint64(len(b)-pos)/16 {
			return false
		}
		take(n * 16)
	}
	if pos == len(b) {
		return true // no catch clause table: wazero recompiles it as stale
	}
	tables := u32()
	for i := uint64(0); i < tables && pos >= 0; i++ {
		n := u32()
		if pos < 0 || n > uint64(len(b)-pos)/5 {
			return false
		}
		take(n * 5)
	}
	return pos >= 0
}

// CacheStats describes the engine's compilation cache as of its last walk of the directory,
// walking it again (and trimming it) first when that walk is more than 10 s old; the zero
// value when the engine has no CacheDir. Safe for concurrent use; it never waits for another
// caller's walk (it answers that walk's predecessor's figures).
func (e *Engine) CacheStats() CacheStats {
	if v, ok := cacheDirs.Load(e.rt); ok {
		tr := v.(*cacheTrim)
		tr.maybe(cacheStatsEvery)
		return tr.snapshot()
	}
	return CacheStats{}
}

// Close stops every module (without grace, see [Module.Close]) and releases the engine. It is
// idempotent. Loads and calls after Close fail (ErrClosed, ErrNotRunning).
//
// Loads in flight (their start functions and _initialize) and command runs (even of commands
// already closed) are cut: one that fails then says so with ErrClosed (one that had already
// finished its work returns as it would have). Close waits for them at most 5 s (ctx may end
// the wait sooner): a compile under way, and a trusted module's start function, cannot be cut;
// what is still running then keeps what it uses, released when it returns, and Close returns
// an error wrapping ErrCallsRunning.
//
// When calls that cannot be cut still run in modules it closed (or in modules closed before),
// the engine's wazero runtime, which those calls use, is closed by the last of them as it
// returns, not under them; Close then returns an error wrapping [ErrCallsRunning].
func (e *Engine) Close(ctx context.Context) error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	mods := make([]*Module, 0, len(e.modules))
	for m := range e.modules {
		mods = append(mods, m)
	}
	cmds := make([]*Command, 0, len(e.commands))
	for c := range e.commands {
		cmds = append(cmds, c)
	}
	// Loads in flight and command runs are cut (what guest code they run is guarded, or cut
	// by the load's context) and waited for, so that the runtime is not closed under them.
	var runs []<-chan struct{}
	for ld := range e.loads {
		ld.cut = true
		ld.cancel()
	}
	if len(e.loads) > 0 {
		e.loadsIdle = make(chan struct{})
		runs = append(runs, e.loadsIdle)
	}
	e.mu.Unlock()
	for _, c := range cmds {
		if ch := c.cut(); ch != nil {
			runs = append(runs, ch)
		}
	}
	var errs []error
	for _, c := range cmds {
		if err := c.Close(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	for _, m := range mods {
		if err := m.Close(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if len(runs) > 0 {
		wait := time.NewTimer(cutRunWait)
	runs:
		for _, ch := range runs {
			select {
			case <-ch:
			case <-wait.C:
				break runs
			case <-ctx.Done():
				break runs
			}
		}
		wait.Stop()
	}
	e.shut.Store(true)
	if n := e.deferred.Load(); n > 0 {
		errs = append(errs, fmt.Errorf("runtime: engine: %w in %d module(s), command(s) or load(s); the engine's wazero runtime is closed when the last of them returns", ErrCallsRunning, n))
	} else if err := e.releaseRuntime(ctx); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// moduleReleased is a module's last step (Module.finalRelease): the last module released after
// Close closes the runtime, on its goroutine.
func (e *Engine) moduleReleased(ctx context.Context) {
	if e.deferred.Add(-1) == 0 && e.shut.Load() {
		_ = e.releaseRuntime(ctx) // a returning call's: nobody to report to
	}
}

// releaseRuntime closes the wazero runtime once (closeRuntime) and returns the error of the call
// that did.
func (e *Engine) releaseRuntime(ctx context.Context) error {
	var err error
	e.rtOnce.Do(func() { err = e.closeRuntime(ctx) })
	return err
}

// cutRunWait bounds how long Engine.Close waits for the loads and command runs it cut: a cut run
// returns within one fuel refill of guest work or one host call (microseconds), a load after
// the compile under way (the compile budget bounds it); what has not returned by then keeps
// what it uses, released when it returns.
const cutRunWait = 5 * time.Second

func (e *Engine) forgetCommand(c *Command) {
	e.mu.Lock()
	delete(e.commands, c)
	e.mu.Unlock()
}

func (e *Engine) forget(m *Module) {
	e.mu.Lock()
	delete(e.modules, m)
	e.mu.Unlock()
}

func (e *Engine) register(mod api.Module, inst *instance) { e.instByID.Store(mod, inst) }
func (e *Engine) unregister(mod api.Module)               { e.instByID.Delete(mod) }

func (e *Engine) instanceOf(mod api.Module) *instance {
	v, ok := e.instByID.Load(mod)
	if !ok {
		return nil
	}
	return v.(*instance)
}
