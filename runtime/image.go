package runtime

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	randv2 "math/rand/v2"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/sys"

	"github.com/wasmpod/wasmpod/runtime/internal/instrument"
)

// Instance images (RATIONALE.md, "Instance images"): the first instance of a module is
// initialised normally (start function, _initialize, ABI version, input buffer) while the host
// records what the initialisation asked of it; if nothing it did is per-instance, its linear
// memory and mutable globals become the module's image, and every later instance is made from
// the image: a module whose globals start at the captured values and whose memory maps the
// captured bytes copy-on-write, so no guest code runs to create it. The start export
// (wasmpod_start) and restore still run on every instance: they are the lifecycle, not the
// initialisation.

// image is a module's captured initial instance state. Immutable once built.
type image struct {
	cm             wazero.CompiledModule // the image's module (instrument.ImageModule)
	backing        *imageBacking         // the captured memory
	bufPtr, bufCap uint32                // the input buffer the initialisation got
	// reseed are the offsets of the Go runtime's ChaCha8 generator states in the memory: each
	// new instance gets fresh random bytes there (see findChaCha8).
	reseed []uint32
}

// initRecord counts what an initialisation did that an image could not repeat per instance. It
// is written by the initialising goroutine only while active.
type initRecord struct {
	active     bool
	randCalls  int
	randBytes  int
	clockReads int
	outBytes   int
	hostCalls  int
	firstHost  string
}

// recordingRand is the random source of an instance whose initialisation is recorded.
type recordingRand struct{ rec *initRecord }

func (r recordingRand) Read(p []byte) (int, error) {
	if r.rec.active {
		r.rec.randCalls++
		r.rec.randBytes += len(p)
	}
	return rand.Read(p)
}

type recordingWriter struct {
	w   io.Writer
	rec *initRecord
}

func (r recordingWriter) Write(p []byte) (int, error) {
	if r.rec.active {
		r.rec.outBytes += len(p)
	}
	return r.w.Write(p)
}

// noteHostCall records a call of a wasmpod host function during a recorded initialisation.
// Pure lookups (config_get) are not recorded.
func (i *instance) noteHostCall(name string) {
	if r := i.rec; r != nil && r.active {
		r.hostCalls++
		if r.firstHost == "" {
			r.firstHost = name
		}
	}
}

// baseConfig is what every instance's wazero configuration shares: built once per module
// (newModule) and shared, which is safe because a wazero ModuleConfig is immutable (each With
// returns a copy) and instantiation only reads it; moduleConfig adds the per-instance parts.
func baseConfig(cfg *ModuleConfig) wazero.ModuleConfig {
	mc := wazero.NewModuleConfig().
		WithName("").
		WithStartFunctions().
		WithSysWalltime().
		WithSysNanotime().
		WithRandSource(rand.Reader)
	for k, v := range cfg.Env {
		mc = mc.WithEnv(k, v)
	}
	return mc
}

// moduleConfig is the wazero configuration of one instance: the module's shared base with the
// instance's output, sleep and mounts. With rec, randomness, clocks and output are counted for
// the image.
func (m *Module) moduleConfig(inst *instance, rec *initRecord) wazero.ModuleConfig {
	mc := m.baseMC.WithNanosleep(inst.nanosleep)
	if rec == nil {
		mc = mc.WithStdout(inst.stdout).WithStderr(inst.stderr)
	} else {
		// The same clocks as WithSysWalltime and WithSysNanotime (wazero reads the Go runtime's
		// wall and monotonic clocks, as nanotime does), counted.
		mc = mc.WithStdout(recordingWriter{inst.stdout, rec}).
			WithStderr(recordingWriter{inst.stderr, rec}).
			WithWalltime(func() (int64, int32) {
				if rec.active {
					rec.clockReads++
				}
				t := time.Now()
				return t.Unix(), int32(t.Nanosecond())
			}, sys.ClockResolution(time.Microsecond.Nanoseconds())).
			WithNanotime(func() int64 {
				if rec.active {
					rec.clockReads++
				}
				return nanotime()
			}, sys.ClockResolution(1)).
			WithRandSource(recordingRand{rec})
	}
	if len(m.cfg.Mounts) > 0 {
		// Per instance: a mount's file system keeps the instance's own state.
		mc = mc.WithFSConfig(mountsFSConfig(m.cfg.Mounts))
	}
	return mc
}

// imageRecord returns the record for the first instance's initialisation, or nil when the
// module gets no image whatever its initialisation does (the reason goes to Info().Image).
func (m *Module) imageRecord() *initRecord {
	switch {
	case m.ext != nil:
		m.setImageNote("none: Extism plugin (the Extism SDK instantiates it with its kernel module and host state)")
	case m.imgFacts.Refusal != "":
		m.setImageNote("refused: " + m.imgFacts.Refusal)
	case len(m.cfg.Mounts) > 0:
		m.setImageNote("refused: the module has mounts (files its initialisation opens are host state an image cannot carry)")
	default:
		return &initRecord{active: true}
	}
	return nil
}

func (m *Module) setImageNote(s string) { m.imgNote.Store(&s) }

// imageCapture is what the first instance's initialisation left, waiting to become the image
// when the module first needs a second instance (so a module that never runs more than one
// instance never pays the image's compilation).
type imageCapture struct {
	code           *imageBacking // the image's module (instrument.ImageModule), off the Go heap until compiled
	backing        *imageBacking
	values         map[uint32]uint64
	bufPtr, bufCap uint32
	reseed         []uint32
	note           string
}

// captureImage takes the image from the module's first instance, just initialised under rec, or
// records why not; without an image every instance is initialised as before. It runs before the
// module is shared.
func (m *Module) captureImage(first *instance, rec *initRecord) {
	rec.active = false
	c, why, err := m.capture(first, rec)
	m.prepared = nil
	switch {
	case err != nil:
		m.setImageNote("refused: capturing the image failed: " + err.Error())
		m.log(LevelWarn, "runtime", "instance image: "+err.Error()+" (instances are initialised one by one)")
	case c == nil:
		m.setImageNote("refused: " + why)
		m.log(LevelInfo, "runtime", "no instance image: "+why)
	default:
		m.pending = c
		m.setImageNote("pending: built when the module first needs a second instance")
	}
}

func (m *Module) capture(first *instance, rec *initRecord) (*imageCapture, string, error) {
	switch {
	case rec.hostCalls > 0:
		return nil, fmt.Sprintf("the initialisation called the host's %s (%d host calls): their effects and per-instance host state would happen once", rec.firstHost, rec.hostCalls), nil
	case rec.outBytes > 0:
		return nil, fmt.Sprintf("the initialisation wrote %d bytes to stdout/stderr, which instances made from an image would not write", rec.outBytes), nil
	case len(first.seam.states) > 0:
		return nil, "the initialisation created host-side instance state", nil
	}
	size := first.mem.Size()
	mem, ok := first.mem.Read(0, size)
	if !ok {
		return nil, "", fmt.Errorf("cannot read the memory (%d bytes)", size)
	}
	var gens []uint32
	if rec.randCalls > 0 {
		gens = findChaCha8(mem)
		if rec.randCalls != 1 || len(gens) == 0 {
			return nil, fmt.Sprintf("the initialisation read %d random bytes in %d calls (random_get) into state an image would share between instances", rec.randBytes, rec.randCalls), nil
		}
	}
	values := make(map[uint32]uint64, len(m.imgFacts.Globals))
	for _, g := range m.imgFacts.Globals {
		gl := first.mod.ExportedGlobal(g.Export)
		if gl == nil {
			return nil, "", fmt.Errorf("global %d not exported", g.Index)
		}
		values[g.Index] = gl.Get()
	}
	code, err := instrument.ImageModule(m.prepared, size/65536, values)
	if err != nil {
		return nil, "", err
	}
	backing, err := newImageBacking(m.cfg.Name, mem)
	if err != nil {
		return nil, "", err
	}
	codeB, err := newImageBacking(m.cfg.Name+"-code", code)
	if err != nil {
		backing.close()
		return nil, "", err
	}
	// The image module's digest: modules loaded from the same .wasm capture the same bytes
	// (their initialisation is deterministic once the Go runtime's seeds are left out, which
	// live in memory, not in the module), and Engine.imgMu makes them one compile.
	sum := sha256.Sum256(code)
	note := fmt.Sprintf("ready: %d pages, %d globals, module sha256:%x", size/65536, len(values), sum[:8])
	if len(gens) > 0 {
		note += fmt.Sprintf(", %d Go runtime random generators reseeded per instance", len(gens))
	}
	if rec.clockReads > 0 {
		note += fmt.Sprintf(", %d clock reads at initialisation (the host clocks are process-wide)", rec.clockReads)
	}
	return &imageCapture{code: codeB, backing: backing, values: values, bufPtr: first.bufPtr, bufCap: first.bufCap, reseed: gens, note: note}, "", nil
}

// startImage builds the image in the background, once, if the module captured one.
func (m *Module) startImage() {
	if m.pending == nil {
		return
	}
	m.imgOnce.Do(func() {
		m.imgWG.Add(1)
		go func() {
			defer m.imgWG.Done()
			m.buildImage(context.Background())
		}()
	})
}

// PrepareImage builds the module's instance image now instead of when the module first needs a
// second instance, and waits for it; Info().Image then says whether the module has one. Call it
// before a burst of instances that must all be cheap. Safe for concurrent use.
func (m *Module) PrepareImage() {
	m.startImage()
	m.imgWG.Wait()
}

// buildImage compiles the captured image's module and checks one instance made from it. Owned
// by the goroutine startImage starts; releaseAll waits for it.
func (m *Module) buildImage(ctx context.Context) {
	c := m.pending
	fail := func(err error) {
		m.setImageNote("refused: building the image failed: " + err.Error())
		m.log(LevelWarn, "runtime", "instance image: "+err.Error()+" (instances are initialised one by one)")
	}
	unhold, err := m.holdCompiled()
	if err != nil {
		return // released: releaseAll closes the capture
	}
	var cm wazero.CompiledModule
	code, err := c.code.bytes()
	c.code.close() // compiled or failed: not needed again
	if err == nil {
		var cerr error
		m.e.imgMu.Lock()
		cm, cerr = compileSafely(ctx, m.e.rt, code)
		m.e.imgMu.Unlock()
		if cerr != nil {
			err = fmt.Errorf("compile the image's module: %w", cerr)
		}
	}
	unhold()
	if err != nil {
		fail(err)
		return
	}
	img := &image{cm: cm, backing: c.backing, bufPtr: c.bufPtr, bufCap: c.bufCap, reseed: c.reseed}
	if err := m.checkImage(ctx, img, c.values); err != nil {
		_ = cm.Close(ctx)
		fail(err)
		return
	}
	m.cmMu.RLock()
	defer m.cmMu.RUnlock()
	if m.released {
		_ = cm.Close(ctx)
		return
	}
	m.img.Store(img)
	m.setImageNote(c.note)
}

// releaseImage frees the image or the capture waiting to become one, after the build goroutine
// ended and released was set (under cmMu), so no image is stored or used for an instance any
// more.
func (m *Module) releaseImage(ctx context.Context) {
	if img := m.img.Load(); img != nil {
		_ = img.cm.Close(ctx)
	}
	if m.pending != nil {
		m.pending.backing.close()
		m.pending.code.close()
	}
}

// checkImage makes one instance from img and checks that it holds the captured memory and
// globals and speaks the ABI, so a wrong image fails here and not in a guest's call.
func (m *Module) checkImage(ctx context.Context, img *image, values map[uint32]uint64) error {
	inst, err := m.newImageInstance(ctx, img)
	if err != nil {
		return err
	}
	defer inst.close(ctx)
	// The image is compared where it lies (the memfd, on Linux), not read onto the Go heap: it
	// may be as large as the memory limit.
	err = img.backing.view(func(mem []byte) error {
		got, ok := inst.mem.Read(0, inst.mem.Size())
		if !ok || len(got) != len(mem) {
			return fmt.Errorf("image instance has %d bytes of memory, want %d", inst.mem.Size(), len(mem))
		}
		for off := 0; off < len(mem); off += chachaStateBytes {
			end := min(off+chachaStateBytes, len(mem))
			if !bytes.Equal(got[off:end], mem[off:end]) && !nearReseed(img.reseed, off, end) {
				return fmt.Errorf("image instance differs from the image at %#x", off)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, g := range m.imgFacts.Globals {
		if v := inst.mod.ExportedGlobal(g.Export).Get(); v != values[g.Index] {
			return fmt.Errorf("image instance has global %d = %#x, want %#x", g.Index, v, values[g.Index])
		}
	}
	if m.command {
		return nil
	}
	if err := inst.callRaw(ctx, expVersion); err != nil {
		return fmt.Errorf("image instance: wasmpod_abi_version: %w", err)
	}
	if v := int32(inst.stack[0]); v != ABIVersion {
		return fmt.Errorf("image instance speaks ABI version %d", v)
	}
	return nil
}

func nearReseed(offs []uint32, start, end int) bool {
	for _, o := range offs {
		if int(o) < end && int(o)+chachaReseedBytes > start {
			return true
		}
	}
	return false
}

// newImageInstance creates an instance from the image: no guest code runs.
func (m *Module) newImageInstance(ctx context.Context, img *image) (*instance, error) {
	inst := m.newShell(nil)
	if err := m.instantiateWith(ctx, inst, m.moduleConfig(inst, nil), img); err != nil {
		return nil, err
	}
	if len(img.reseed) > 0 {
		buf, _ := inst.mem.Read(0, inst.mem.Size())
		for _, o := range img.reseed {
			_, _ = rand.Read(buf[o : o+chachaReseedBytes])
		}
	}
	inst.bufPtr, inst.bufCap = img.bufPtr, img.bufCap
	return inst, nil
}

// The Go runtime's ChaCha8 generator state (internal/chacha8rand.State on wasm): 32 uint64
// words of output (buf), the 4-word seed that generates them, and the counters i, n and c.
const (
	chachaReseedBytes = 32*8 + 4*8 // buf and seed: what a reseed overwrites
	chachaStateBytes  = chachaReseedBytes + 3*4
)

// findChaCha8 returns the offsets of the Go runtime's ChaCha8 generator states in mem: the Go
// runtime seeds them (and its hash keys) from 32 bytes of random_get at initialisation. A
// candidate is 8-aligned, has plausible counters, and its 256-byte buffer is exactly the block
// its seed and counter generate (checked with math/rand/v2's ChaCha8, the same algorithm), so
// nothing else is mistaken for one. Overwriting buf and seed with fresh random bytes gives an
// instance a generator as random as a freshly seeded one: math/rand, math/rand/v2, map
// iteration order and select then differ between instances, as they do without an image.
func findChaCha8(mem []byte) []uint32 {
	var offs []uint32
	le := binary.LittleEndian
	for o := 0; o+chachaStateBytes <= len(mem); o += 8 {
		i := le.Uint32(mem[o+288:])
		n := le.Uint32(mem[o+292:])
		c := le.Uint32(mem[o+296:])
		if (n != 32 && n != 28) || c%4 != 0 || c >= 16 || i > n || (n == 28) != (c == 12) {
			continue
		}
		if le.Uint64(mem[o:]) == 0 && le.Uint64(mem[o+8:]) == 0 {
			continue
		}
		var blob [48]byte
		copy(blob[:], "chacha8:")
		binary.BigEndian.PutUint64(blob[8:], uint64(c/4)*32)
		copy(blob[16:], mem[o+256:o+288])
		var g randv2.ChaCha8
		if g.UnmarshalBinary(blob[:]) != nil {
			continue
		}
		match := true
		for k := 0; k < int(n) && match; k++ {
			match = g.Uint64() == le.Uint64(mem[o+8*k:])
		}
		if match {
			offs = append(offs, uint32(o))
			o += (chachaStateBytes+7)&^7 - 8 // past the state, still 8-aligned
		}
	}
	return offs
}

// prepareImage exports the mutable globals an image captures (instrument.PrepareImage); the
// instrumentation's own globals (fuel, stack budget, spill globals) start every instance afresh.
func (e *Engine) prepareImage(code []byte, cfg ModuleConfig) ([]byte, instrument.ImageFacts, error) {
	if e.cfg.DisableImages {
		return code, instrument.ImageFacts{Refusal: "disabled (Config.DisableImages)"}, nil
	}
	return instrument.PrepareImage(code, !cfg.Trusted)
}
