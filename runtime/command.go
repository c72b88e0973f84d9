package runtime

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/experimental/sysfs"
	"github.com/tetratelabs/wazero/sys"

	"github.com/wasmpod/wasmpod/internal/sparedirs"
	"github.com/wasmpod/wasmpod/runtime/internal/instrument"
)

// Guest paths of a command's input and output directories.
const (
	CommandInputDir  = "/in"
	CommandOutputDir = "/out"
)

// CommandConfig configures a WASI command loaded with [Engine.LoadCommand]. Start from
// [DefaultCommandConfig].
type CommandConfig struct {
	// Name identifies the command in errors and logs, and is its argv[0]. Required.
	Name string

	// SHA256, if set (64 hex digits), must match the module bytes or loading fails with ErrChecksum.
	SHA256 string

	// MaxMemoryPages is the most 64 KiB pages one run may use. A module that declares more is
	// refused at load; memory.grow past it returns -1 to the guest.
	MaxMemoryPages uint32

	// Timeout is the deadline of every run that has no earlier deadline of its own. A run past
	// it is cut (commands are always guarded) and fails with ErrDeadline.
	Timeout time.Duration

	// WorkDir is where each run's private input and output directories are made; empty means
	// os.TempDir(). An input on the same file system is hard-linked, not copied. The command
	// keeps a few emptied run directories there for reuse until it is closed.
	WorkDir string

	// StderrTail is how many bytes of the end of stderr a failed run reports; 0 means 4 KiB.
	StderrTail int

	// LogLinesPerSecond, LogLineBurst, LogBytesPerSecond and LogByteBurst bound the rate of
	// the lines the command's runs write to stdout and stderr, shared by all its runs, as the
	// fields of the same names do for a module (ModuleConfig): 0 means the default, a negative
	// rate turns that bucket off. A dropped line still reaches StderrTail.
	LogLinesPerSecond int
	LogLineBurst      int
	LogBytesPerSecond int64
	LogByteBurst      int64
}

// DefaultCommandConfig returns a sandboxed configuration for the named command.
func DefaultCommandConfig(name string) CommandConfig {
	return CommandConfig{
		Name: name,
		// 256 pages = 16 MiB, as for modules.
		MaxMemoryPages: 256,
		// 1 min: a stage processes a whole file, not one request.
		Timeout: time.Minute,
	}
}

func (c *CommandConfig) validate() error {
	switch {
	case c.Name == "":
		return fmt.Errorf("%w: command config: name is required", ErrInvalidModule)
	case c.MaxMemoryPages == 0 || c.MaxMemoryPages > 65536:
		return fmt.Errorf("%w: command %q: MaxMemoryPages %d out of range 1..65536", ErrInvalidModule, c.Name, c.MaxMemoryPages)
	case c.Timeout <= 0:
		return fmt.Errorf("%w: command %q: Timeout must be positive (every run has a deadline)", ErrInvalidModule, c.Name)
	case c.StderrTail < 0:
		return fmt.Errorf("%w: command %q: StderrTail must not be negative", ErrInvalidModule, c.Name)
	}
	return validLogBursts("command", c.Name, c.LogLineBurst, c.LogByteBurst)
}

// Command is a compiled WASI command module (one exporting _start). Each [Command.Run] or
// [Command.RunInputs] runs it once in a fresh instance that sees only its input files and an
// empty output directory. It is safe for concurrent use.
type Command struct {
	m      *Module // carries the engine, name, limits and yield interval that instances use
	cfg    CommandConfig
	digest string
	once   sync.Once
	dirs   runDirs

	// The runs in flight, so that Close can leave them what they use and Engine.Close can cut
	// them. Guarded by runMu.
	runMu  sync.Mutex
	runs   map[*cmdRun]struct{}
	closed bool          // set by Close or cut: new runs fail with ErrClosed
	idle   chan struct{} // made by cut while runs are in flight; closed by the last to end
	// release is set by Close when runs were still in flight: the last to end releases the
	// compiled code (Module.finalRelease), which they use until then.
	release bool
}

// cmdRun is one run of a Command in flight. Its fields are guarded by Command.runMu.
type cmdRun struct {
	inst *instance // once instantiated
	cut  bool      // cut by Engine.Close: the run fails with ErrClosed
}

// begin registers a run about to start, or fails with ErrClosed once the command is closed.
func (c *Command) begin() (*cmdRun, error) {
	c.runMu.Lock()
	defer c.runMu.Unlock()
	if c.closed {
		return nil, fmt.Errorf("runtime: command %q: %w", c.cfg.Name, ErrClosed)
	}
	if c.runs == nil {
		c.runs = map[*cmdRun]struct{}{}
	}
	r := &cmdRun{}
	c.runs[r] = struct{}{}
	return r, nil
}

// attach records r's instance; a run cut before it had one is cut now.
func (c *Command) attach(r *cmdRun, inst *instance) {
	c.runMu.Lock()
	r.inst = inst
	cut := r.cut
	c.runMu.Unlock()
	if cut {
		inst.expire()
	}
}

// wasCut reports whether Engine.Close cut r.
func (c *Command) wasCut(r *cmdRun) bool {
	c.runMu.Lock()
	defer c.runMu.Unlock()
	return r.cut
}

// end is a run's last step, after its instance is closed: the last run in flight after Close
// releases the compiled code, and tells cut's waiter.
func (c *Command) end(r *cmdRun) {
	c.runMu.Lock()
	delete(c.runs, r)
	var idle chan struct{}
	release := false
	if len(c.runs) == 0 {
		idle, c.idle = c.idle, nil
		release, c.release = c.release, false
	}
	c.runMu.Unlock()
	if release {
		c.m.e.forgetCommand(c) // known to the engine until now, so that Engine.Close cuts its runs
		c.m.finalRelease(context.Background())
	}
	if idle != nil {
		close(idle)
	}
}

// cut refuses new runs and cuts the ones in flight (at their next check, or at once when
// asleep), for Engine.Close: they fail with ErrClosed. It returns a channel closed when the last
// of them has ended, or nil when none runs.
func (c *Command) cut() <-chan struct{} {
	c.runMu.Lock()
	defer c.runMu.Unlock()
	c.closed = true
	if len(c.runs) == 0 {
		return nil
	}
	for r := range c.runs {
		r.cut = true
		if r.inst != nil {
			r.inst.expire()
		}
	}
	if c.idle == nil {
		c.idle = make(chan struct{})
	}
	return c.idle
}

// RunResult describes one run of a command.
type RunResult struct {
	// Outputs are the host paths of the files the command wrote below /out, moved into the
	// output directory given to Run or RunInputs (same relative paths), in lexical order. Only
	// set on success.
	Outputs []string
	// ExitCode is the code the command passed to proc_exit (0 if it returned from _start).
	ExitCode uint32
	// Stderr is the end of what the command wrote to stderr (at most CommandConfig.StderrTail
	// bytes). Every stdout and stderr line also goes to the engine's LogSink.
	Stderr string
	// Duration is how long _start ran.
	Duration time.Duration
}

// ExitError is a run that ended with a non-zero exit code. It wraps [ErrGuest].
type ExitError struct {
	Command string
	Code    uint32
	Stderr  string // the end of stderr
}

func (e *ExitError) Error() string {
	if e.Stderr == "" {
		return fmt.Sprintf("command %q exited with code %d", e.Command, e.Code)
	}
	return fmt.Sprintf("command %q exited with code %d: %s", e.Command, e.Code, e.Stderr)
}

// Unwrap makes errors.Is(err, ErrGuest) true.
func (e *ExitError) Unwrap() error { return ErrGuest }

// LoadCommand compiles a WASI command module once, instrumented so that a runaway run can be
// cut at its deadline. The module must export _start () -> () and its memory as "memory", and
// import only from wasi_snapshot_preview1.
func (e *Engine) LoadCommand(ctx context.Context, wasm []byte, cfg CommandConfig) (_ *Command, err error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.StderrTail == 0 {
		cfg.StderrTail = 4 << 10
	}
	sum := sha256.Sum256(wasm)
	digest := hex.EncodeToString(sum[:])
	if cfg.SHA256 != "" && !strings.EqualFold(cfg.SHA256, digest) {
		return nil, fmt.Errorf("%w: command %q: sha256 is %s, expected %s", ErrChecksum, cfg.Name, digest, cfg.SHA256)
	}
	ctx, ld, err := e.beginLoad(ctx)
	if err != nil {
		return nil, err
	}
	defer func() { err = e.endLoad(ld, "command", cfg.Name, err) }()
	return e.loadCommand(ctx, wasm, cfg, digest)
}

// loadCommand is LoadCommand once registered (beginLoad).
func (e *Engine) loadCommand(ctx context.Context, wasm []byte, cfg CommandConfig, digest string) (*Command, error) {
	if err := instrument.CheckShape(wasm); err != nil {
		return nil, fmt.Errorf("%w: command %q: %v", ErrInvalidModule, cfg.Name, err)
	}
	fixed, err := e.checkBudget(wasm, cfg.Name, false)
	if err != nil {
		return nil, err
	}
	mcfg := ModuleConfig{Name: cfg.Name, MaxMemoryPages: cfg.MaxMemoryPages, CallTimeout: cfg.Timeout, fixed: fixed,
		LogLinesPerSecond: cfg.LogLinesPerSecond, LogLineBurst: cfg.LogLineBurst,
		LogBytesPerSecond: cfg.LogBytesPerSecond, LogByteBurst: cfg.LogByteBurst}
	if err := fixed.checkFits(mcfg); err != nil {
		return nil, err
	}
	code, err := instrument.Instrument(wasm, yieldEvery)
	if err != nil {
		return nil, fmt.Errorf("%w: command %q: %v", ErrInvalidModule, cfg.Name, err)
	}
	code, facts, err := e.prepareImage(code, mcfg)
	if err != nil {
		return nil, fmt.Errorf("%w: command %q: %v", ErrInvalidModule, cfg.Name, err)
	}
	cm, err := compileSafely(ctx, e.rt, code)
	if errors.Is(err, errCache) { // the cache's failure, not the command's
		return nil, fmt.Errorf("runtime: command %q: %w", cfg.Name, err)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: command %q: %v", ErrInvalidModule, cfg.Name, err)
	}
	if err := inspectCommand(cm, &cfg); err != nil {
		cm.Close(ctx)
		return nil, err
	}
	m := &Module{e: e, cm: cm, digest: digest, yieldInterval: yieldEvery, cfg: mcfg, baseMC: baseConfig(&mcfg),
		command: true, prepared: code, imgFacts: facts}
	switch {
	case facts.Refusal != "":
		m.setImageNote("refused: " + facts.Refusal)
	case cm.ExportedFunctions()[instrument.StartName] != nil:
		// Its start function runs at every instantiation, with the run's clocks and random
		// source: that is a run's work, not an image's.
		m.setImageNote("refused: the module has a start function")
	default:
		m.setImageNote("pending: captured and built after the first run")
	}
	c := &Command{m: m, cfg: cfg, digest: digest}
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		cm.Close(ctx)
		return nil, fmt.Errorf("runtime: engine: %w", ErrClosed)
	}
	e.commands[c] = struct{}{}
	e.mu.Unlock()
	return c, nil
}

// inspectCommand checks a compiled (instrumented) command against the command contract and
// its memory limit.
func inspectCommand(cm wazero.CompiledModule, cfg *CommandConfig) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: command %q: %s", ErrInvalidModule, cfg.Name, fmt.Sprintf(format, args...))
	}
	for _, d := range cm.ImportedFunctions() {
		ns, name, _ := d.Import()
		switch {
		case ns == "wasi_snapshot_preview1":
		case ns == ImportModule && name == instrument.YieldName:
			// added by the instrumentation
		default:
			return bad("imports %s.%s; a command may import only from wasi_snapshot_preview1", ns, name)
		}
	}
	if len(cm.ImportedMemories()) > 0 {
		return bad("imports a memory; a command must define and export its own")
	}
	mem, ok := cm.ExportedMemories()["memory"]
	if !ok {
		return bad("does not export its memory as \"memory\"")
	}
	if mem.Min() > cfg.MaxMemoryPages {
		return fmt.Errorf("%w: command %q: memory declares a minimum of %d pages, over its limit of %d pages", ErrMemoryLimit, cfg.Name, mem.Min(), cfg.MaxMemoryPages)
	}
	if max, encoded := mem.Max(); encoded && max > cfg.MaxMemoryPages {
		return fmt.Errorf("%w: command %q: memory declares a maximum of %d pages, over its limit of %d pages", ErrMemoryLimit, cfg.Name, max, cfg.MaxMemoryPages)
	}
	start, ok := cm.ExportedFunctions()["_start"]
	if !ok {
		return bad("does not export _start (is it a WASI command? reactors and wasmpod plugins are loaded with Load)")
	}
	if len(start.ParamTypes()) != 0 || len(start.ResultTypes()) != 0 {
		return bad("exports _start with signature %s; want () -> ()", sigString(start.ParamTypes(), start.ResultTypes()))
	}
	return nil
}

// LogsDropped returns how many stdout and stderr lines, and their bytes, the command's runs had
// dropped by its log rate limit (CommandConfig.LogLinesPerSecond) since it was loaded.
func (c *Command) LogsDropped() (lines, bytes uint64) { return c.m.LogsDropped() }

// Name returns the command's configured name.
func (c *Command) Name() string { return c.cfg.Name }

// SHA256 returns the hex sha256 of the module bytes.
func (c *Command) SHA256() string { return c.digest }

// Close refuses new runs (they fail with ErrClosed), waits for the run directories being
// emptied and removes every idle run directory the command keeps. Runs in flight finish: the
// compiled code they use is released when the last of them ends, at once when none runs. Close
// does not wait for them; [Engine.Close] cuts them. Idempotent.
func (c *Command) Close(ctx context.Context) error {
	var err error
	c.once.Do(func() {
		m := c.m
		c.runMu.Lock()
		c.closed = true
		c.runMu.Unlock()
		m.imgOnce.Do(func() {}) // no image build starts from now on; wait for one under way
		m.imgWG.Wait()
		m.cmMu.Lock() // waits for instantiations under way; later ones fail with ErrNotRunning
		m.released = true
		m.cmMu.Unlock()
		// The engine keeps its runtime open until the compiled code is released (Engine.Close).
		m.e.deferred.Add(1)
		c.runMu.Lock()
		c.release = len(c.runs) > 0
		now := !c.release
		c.runMu.Unlock()
		if now {
			m.e.forgetCommand(c)
			m.finalRelease(ctx)
		}
		err = c.dirs.close()
	})
	return err
}

// Image says whether the command's runs start from an instance image (RATIONALE.md, "Instance
// images"): "ready: ..." once built, "pending: ..." before the first run has built it, and
// "refused: <why>" for a command that cannot have one. A command's image is its linear memory
// right after instantiation, before _start: what its data segments write, made once instead of
// at every run. No guest code runs before the capture, so nothing per-run (random seeds, clock
// reads, arguments, files) can be in it.
func (c *Command) Image() string {
	if p := c.m.imgNote.Load(); p != nil {
		return *p
	}
	return ""
}

// PrepareImage builds the command's instance image now instead of after its first run, and
// waits for it; Image then says whether the command has one. Safe for concurrent use.
func (c *Command) PrepareImage() {
	c.startImage()
	c.m.imgWG.Wait()
}

// startImage builds the command's image in the background, once (owned by m.imgWG; Close
// waits for it).
func (c *Command) startImage() {
	m := c.m
	m.imgOnce.Do(func() {
		m.imgWG.Add(1)
		go func() {
			defer m.imgWG.Done()
			c.buildImage(context.Background())
		}()
	})
}

// buildImage captures the memory of an instance just instantiated (no guest code has run), and
// builds and checks the image from it, or records why the command gets none.
func (c *Command) buildImage(ctx context.Context) {
	m := c.m
	if !strings.HasPrefix(c.Image(), "pending: ") {
		return // refused when loaded
	}
	inst := m.newShell(nil)
	if err := m.instantiate(ctx, inst, m.moduleConfig(inst, nil)); err != nil {
		m.setImageNote("refused: capturing the image failed: " + err.Error())
		return
	}
	m.captureImage(inst, &initRecord{active: true})
	inst.close(ctx)
	if m.pending != nil {
		m.buildImage(ctx)
	}
}

// CommandInput is one input file of a run.
type CommandInput struct {
	// Name is where the guest sees the file below /in: a clean relative slash path
	// ("bash/changelog.gz"), no "." or ".." components, no leading "/", no NUL or backslash;
	// unique within a run, and no name may be a directory of another ("a" and "a/b").
	Name string
	// Path is the file on the host (a regular file; hard-linked when on the same file system as
	// WorkDir, else copied; the /in mount is read-only).
	Path string
}

// Run runs the command once on the file inputPath and moves what it wrote into outputDir
// (created if missing; existing files of the same name are replaced).
//
// The command sees only two directories: /in, read-only, holding nothing but its input (a hard
// link or copy of inputPath under the same base name), and /out, an empty private directory.
// It is called as `NAME /in/BASE /out/BASE` with an empty environment and no stdin. Returning
// from _start or proc_exit(0) is success; a non-zero exit fails with an [*ExitError] (wrapping
// ErrGuest), a trap with a [*TrapError], a run past its deadline (the earlier of the context's
// and CommandConfig.Timeout) with ErrDeadline. On failure nothing is moved into outputDir.
//
// Run is RunInputs with the single input named BASE and BASE as the output name.
func (c *Command) Run(ctx context.Context, inputPath, outputDir string) (RunResult, error) {
	base := filepath.Base(inputPath)
	return c.RunInputs(ctx, []CommandInput{{Name: base, Path: inputPath}}, base, outputDir)
}

// RunInputs runs the command once on inputs and moves what it wrote below /out into outputDir
// (created if missing; existing files of the same name are replaced), as [Command.Run] does.
//
// The guest sees /in, read-only, holding nothing but the inputs under their names (with the
// directories those names imply), and /out, a private directory that is empty but for the
// directories of outputName. It is called as
//
//	NAME /in/<inputs[0].Name> ... /in/<inputs[n-1].Name> /out/<outputName>
//
// with an empty environment and no stdin. outputName (a clean relative path like the input
// names) is only a suggestion of where to write: every regular file the guest leaves below /out
// is moved, under its relative path.
//
// Bad names (none at all, empty, absolute, with "." or ".." components, duplicated, ...) fail
// with ErrInput before any file is touched or the command instantiated.
func (c *Command) RunInputs(ctx context.Context, inputs []CommandInput, outputName, outputDir string) (RunResult, error) {
	var res RunResult
	name := c.cfg.Name
	if err := checkRunNames(inputs, outputName); err != nil {
		return res, fmt.Errorf("command %q: %w", name, err)
	}
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("command %q: %w", name, err)
	}
	run, err := c.begin()
	if err != nil {
		return res, err
	}
	defer c.end(run) // last: after the instance is closed and the run directory handed back
	rd, err := c.dirs.acquire(c.cfg.WorkDir)
	if err != nil {
		return res, fmt.Errorf("command %q: %w", name, err)
	}
	// Emptied off this path by the command's cleaner (after inst.close, deferred below).
	defer c.dirs.release(rd)
	inDir, outDir := filepath.Join(rd.path, "in"), filepath.Join(rd.path, "out")
	for _, in := range inputs {
		dst := filepath.Join(inDir, filepath.FromSlash(in.Name))
		if err := rd.spare.MakeAll(inDir, path.Dir(in.Name)); err != nil {
			return res, fmt.Errorf("command %q: input %q: %w", name, in.Name, err)
		}
		if err := linkOrCopy(in.Path, dst); err != nil {
			return res, fmt.Errorf("command %q: input %q: %w", name, in.Name, err)
		}
	}
	if err := rd.spare.MakeAll(outDir, path.Dir(outputName)); err != nil {
		return res, fmt.Errorf("command %q: output %q: %w", name, outputName, err)
	}

	args := make([]string, 0, len(inputs)+2)
	args = append(args, name)
	for _, in := range inputs {
		args = append(args, CommandInputDir+"/"+in.Name)
	}
	args = append(args, CommandOutputDir+"/"+outputName)

	tail := &tailBuffer{max: c.cfg.StderrTail}
	inst, err := c.newInstance(ctx, inDir, outDir, args, tail)
	if err != nil {
		return res, err
	}
	defer inst.close(context.Background())
	c.attach(run, inst)

	code, err := c.start(ctx, inst, &res)
	res.ExitCode = code
	inst.stderr.flush()
	res.Stderr = tail.String()
	if err != nil {
		if c.wasCut(run) {
			return res, fmt.Errorf("command %q: run cut: the engine is closing: %w (%w)", name, ErrClosed, err)
		}
		return res, err
	}
	if code != 0 {
		return res, &ExitError{Command: name, Code: code, Stderr: res.Stderr}
	}
	if res.Outputs, err = moveOutputs(outDir, outputDir); err != nil {
		return res, fmt.Errorf("command %q: output: %w", name, err)
	}
	return res, nil
}

// Bounds of the run directories a Command keeps.
const (
	// Emptied run directories kept for reuse; more are removed. Above the runs in flight plus
	// the cleaner's backlog, so that a directory made while the cleaner lags is kept, not
	// removed and made again (at 4, a queue node made and removed one every few runs).
	maxIdleRunDirs  = 8
	maxDirtyRunDirs = 4  // run directories waiting for the cleaner; past it a run empties its own
	maxSpareDirs    = 16 // empty directories a run directory keeps for the next runs' input and output names
)

// runDir is one run directory: WORK/in and WORK/out, and WORK/spare holding the directories
// earlier runs' names implied (in/r1 for the input "r1/t7"), emptied and kept for the next
// runs' names (internal/sparedirs says why).
type runDir struct {
	path  string
	spare *sparedirs.Dirs
}

// runDirs keeps a Command's run directories (WORK/in and WORK/out below WorkDir) so that a run
// neither makes nor removes one on its path: a run takes an emptied one (or makes one if none is
// idle) and hands it back to a cleaner goroutine, owned by the Command and started by the first
// release, that empties it and keeps it for reuse (or removes it). A directory is in exactly one
// place: idle (empty), in use by one run, or queued for the cleaner.
type runDirs struct {
	mu     sync.Mutex
	idle   []*runDir
	dirty  chan *runDir  // queued for the cleaner; nil until the first release, closed by close
	done   chan struct{} // closed when the cleaner has returned
	closed bool

	// Test hooks, set before the first run: beforeClean is called by the cleaner before it
	// empties a directory, afterClean once a directory is kept (true) or removed.
	beforeClean func(work string)
	afterClean  func(work string, kept bool)
}

// acquire returns an empty run directory below workDir.
func (d *runDirs) acquire(workDir string) (*runDir, error) {
	d.mu.Lock()
	if n := len(d.idle); n > 0 && !d.closed {
		rd := d.idle[n-1]
		d.idle = d.idle[:n-1]
		d.mu.Unlock()
		return rd, nil
	}
	d.mu.Unlock()
	work, err := os.MkdirTemp(workDir, "wasmpod-run-*")
	if err != nil {
		return nil, err
	}
	for _, sub := range []string{"in", "out", "spare"} {
		if err := os.Mkdir(filepath.Join(work, sub), 0o700); err != nil {
			os.RemoveAll(work)
			return nil, err
		}
	}
	return &runDir{path: work, spare: sparedirs.New(filepath.Join(work, "spare"), maxSpareDirs)}, nil
}

// release hands back the directory of a finished run (its instance closed) to the cleaner, or
// empties it itself if the cleaner's backlog is full or the command closed.
func (d *runDirs) release(work *runDir) {
	d.mu.Lock()
	if !d.closed {
		if d.dirty == nil {
			d.dirty = make(chan *runDir, maxDirtyRunDirs)
			d.done = make(chan struct{})
			go d.cleaner(d.dirty, d.done)
		}
		select {
		case d.dirty <- work:
			d.mu.Unlock()
			return
		default:
		}
	}
	d.mu.Unlock()
	d.recycle(work)
}

func (d *runDirs) cleaner(dirty <-chan *runDir, done chan<- struct{}) {
	defer close(done)
	for work := range dirty {
		if d.beforeClean != nil {
			d.beforeClean(work.path)
		}
		d.recycle(work)
	}
}

// recycle empties work and keeps it for reuse, or removes it if emptying failed, the command
// is closed or enough directories are idle.
func (d *runDirs) recycle(work *runDir) {
	err := work.empty()
	d.mu.Lock()
	kept := err == nil && !d.closed && len(d.idle) < maxIdleRunDirs
	if kept {
		d.idle = append(d.idle, work)
	}
	d.mu.Unlock()
	if !kept {
		os.RemoveAll(work.path)
	}
	if d.afterClean != nil {
		d.afterClean(work.path, kept)
	}
}

// close stops the cleaner (after it has emptied or removed its backlog) and removes the idle
// directories. Called once.
func (d *runDirs) close() error {
	d.mu.Lock()
	d.closed = true
	if d.dirty != nil {
		close(d.dirty)
	}
	done := d.done
	d.mu.Unlock()
	if done != nil {
		<-done
	}
	d.mu.Lock()
	idle := d.idle
	d.idle = nil
	d.mu.Unlock()
	var errs []error
	for _, work := range idle {
		if err := os.RemoveAll(work.path); err != nil {
			errs = append(errs, fmt.Errorf("command run directory: %w", err))
		}
	}
	return errors.Join(errs...)
}

// empty removes everything below the run directory's in and out (the input links and whatever
// the guest left: files, directories, symbolic links) and checks that both are again empty
// private directories. Private directories are kept as spares, up to maxSpareDirs.
func (rd *runDir) empty() error {
	for _, sub := range []string{"spare", "in", "out"} {
		if err := sparedirs.Private(filepath.Join(rd.path, sub)); err != nil {
			return err
		}
	}
	for _, sub := range []string{"in", "out"} {
		if err := rd.spare.Empty(filepath.Join(rd.path, sub)); err != nil {
			return err
		}
	}
	return nil
}

// checkRunNames checks the input and output names of a run (see CommandInput.Name). Errors wrap
// ErrInput and name the bad name.
func checkRunNames(inputs []CommandInput, outputName string) error {
	if len(inputs) == 0 {
		return fmt.Errorf("%w: no inputs", ErrInput)
	}
	names := make(map[string]int, len(inputs))
	for i, in := range inputs {
		if err := checkRelName(in.Name); err != nil {
			return fmt.Errorf("%w: input %d name %q: %s", ErrInput, i, in.Name, err)
		}
		if j, dup := names[in.Name]; dup {
			return fmt.Errorf("%w: input %d name %q: also the name of input %d", ErrInput, i, in.Name, j)
		}
		names[in.Name] = i
	}
	// A name cannot be both a file and a directory of another name.
	for _, in := range inputs {
		for d := path.Dir(in.Name); d != "."; d = path.Dir(d) {
			if j, clash := names[d]; clash {
				return fmt.Errorf("%w: input %d name %q: a directory of input name %q", ErrInput, j, d, in.Name)
			}
		}
	}
	if err := checkRelName(outputName); err != nil {
		return fmt.Errorf("%w: output name %q: %s", ErrInput, outputName, err)
	}
	return nil
}

// checkRelName checks that n is a clean relative slash path that stays below its root.
func checkRelName(n string) error {
	switch {
	case n == "":
		return errors.New("empty")
	case strings.ContainsRune(n, 0):
		return errors.New("contains NUL")
	case strings.ContainsRune(n, '\\'):
		return errors.New("contains a backslash")
	case strings.HasPrefix(n, "/"):
		return errors.New("absolute")
	}
	for _, c := range strings.Split(n, "/") {
		switch c {
		case "":
			return errors.New("has an empty component")
		case ".", "..":
			return fmt.Errorf("has a %q component", c)
		}
	}
	return nil
}

// newInstance instantiates the command (without running _start) with its argv, its two mounts, its
// memory limit and its termination guard, and registers it so __yield finds it.
func (c *Command) newInstance(ctx context.Context, inDir, outDir string, args []string, tail io.Writer) (*instance, error) {
	m := c.m
	inst := m.newShell(nil)
	files := newOpenFiles() // both mounts share the instance's cap
	fsc := wazero.NewFSConfig().(sysfs.FSConfig).WithSysFSMount(newInstanceMountFS(inDir, true, 0, files), CommandInputDir)
	fsc = fsc.(sysfs.FSConfig).WithSysFSMount(newInstanceMountFS(outDir, false, 0, files), CommandOutputDir)
	mc := wazero.NewModuleConfig().
		WithName("").
		WithStartFunctions(). // _start runs below, under the deadline
		WithArgs(args...).
		WithStdout(inst.stdout).
		WithStderr(io.MultiWriter(inst.stderr, tail)).
		WithSysWalltime().
		WithSysNanotime().
		WithRandSource(rand.Reader).
		WithNanosleep(inst.nanosleep).
		WithFSConfig(fsc)
	img := m.img.Load()
	if err := m.instantiateWith(ctx, inst, mc, img); err != nil {
		return nil, fmt.Errorf("command %q: %w", m.cfg.Name, err)
	}
	if img != nil {
		m.fromImage.Add(1)
	} else {
		c.startImage() // for the runs after this one
	}
	return inst, nil
}

// start calls _start under the run's deadline and returns the exit code, or an error for a
// trap, a cut or a cancellation.
func (c *Command) start(ctx context.Context, inst *instance, res *RunResult) (uint32, error) {
	name := c.cfg.Name
	d := c.cfg.Timeout
	if dl, ok := ctx.Deadline(); ok {
		if r := time.Until(dl); r < d {
			if r <= 0 {
				return 0, fmt.Errorf("command %q: %w (%w)", name, ErrDeadline, context.DeadlineExceeded)
			}
			d = r
		}
	}
	f := inst.mod.ExportedFunction("_start")
	if f == nil {
		return 0, fmt.Errorf("command %q: %w: _start", name, ErrNoExport)
	}
	// A cancelled context cuts the run like its deadline does.
	stopCancel := context.AfterFunc(ctx, inst.expire)
	t0 := time.Now()
	inst.arm(d)
	err := f.CallWithStack(ctx, nil)
	cut := inst.disarm()
	stopCancel()
	res.Duration = time.Since(t0)
	if err == nil {
		return 0, nil
	}
	var exit *sys.ExitError
	if errors.As(err, &exit) {
		return exit.ExitCode(), nil
	}
	if inst.expired.Load() {
		if !cut && ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return 0, fmt.Errorf("command %q: run cut: %w", name, ctx.Err())
		}
		return 0, fmt.Errorf("command %q: %w (after %s)", name, ErrDeadline, res.Duration.Round(time.Millisecond))
	}
	return 0, inst.classify(err)
}

// linkOrCopy makes dst a read-only snapshot of the regular file src: a hard link when src is on
// the same file system (the /in mount is read-only, so the guest cannot change it), else a copy.
func linkOrCopy(src, dst string) error {
	real, err := filepath.EvalSymlinks(src) // link the file, not a symbolic link to it
	if err != nil {
		return err
	}
	st, err := os.Stat(real)
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", src)
	}
	if os.Link(real, dst) == nil {
		return nil
	}
	return copyFile(real, dst, 0o400)
}

func copyFile(src, dst string, perm fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// moveOutputs moves every regular file below from into the same relative path below to and
// returns the new paths in lexical order. Anything else the guest made (directories aside) is
// ignored.
func moveOutputs(from, to string) ([]string, error) {
	var outs []string
	err := filepath.WalkDir(from, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(from, p)
		if err != nil {
			return err
		}
		dst := filepath.Join(to, rel)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		if err := os.Rename(p, dst); err != nil {
			// Another file system: copy, replacing what is there.
			tmp := dst + ".wasmpod-tmp"
			_ = os.Remove(tmp)
			if err := copyFile(p, tmp, 0o644); err != nil {
				return err
			}
			if err := os.Rename(tmp, dst); err != nil {
				return err
			}
		}
		outs = append(outs, dst)
		return nil
	})
	// WalkDir visits "a/b" before "a.txt" (it sorts names within a directory, not paths).
	slices.Sort(outs)
	return outs, err
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}
