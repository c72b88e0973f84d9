package runtime

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wasmpod/wasmpod/internal/wasmbuild"
)

func imageEngine(t *testing.T, cfg Config) *Engine {
	t.Helper()
	if cfg.CacheDir == "" {
		cfg.CacheDir = filepath.Join(wasmbuild.CacheDir(), "wazero-test-cache")
	}
	e, err := NewEngine(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close(context.Background()) })
	return e
}

func loadImaged(t *testing.T, e *Engine, wasm []byte, name string) *Module {
	t.Helper()
	cfg := DefaultModuleConfig(name)
	cfg.MaxMemoryPages = 1024
	cfg.MaxConcurrency = 8
	m, err := e.Load(context.Background(), wasm, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(context.Background()) })
	return m
}

// callOn calls the handler with in on one given instance.
func callOn(t *testing.T, inst *instance, in string) string {
	t.Helper()
	out, err := inst.invoke(context.Background(), int(RoleHandle), []byte(in), nil, false, nil)
	if err != nil {
		t.Fatalf("%s: %v", in, err)
	}
	return string(out)
}

// TestImageGoRuntimeRandomness: the Go runtime seeds its generators from random_get while it
// initialises. Instances made from one image must still draw different random numbers (and
// iterate maps in different orders); without the reseed they draw the same ones, which the
// second half shows, so the test can fail.
func TestImageGoRuntimeRandomness(t *testing.T) {
	e := imageEngine(t, Config{})
	m := loadImaged(t, e, readTestFile(t, wasmbuild.Go(t, "testdata/kit")), "kit")
	m.PrepareImage()
	img := m.img.Load()
	if img == nil || len(img.reseed) == 0 {
		t.Fatalf("Go guest has no image with reseeded generators: %s", m.Info().Image)
	}
	t.Logf("image: %s", m.Info().Image)
	draw := func(img *image) map[string]bool {
		seen := map[string]bool{}
		for k := 0; k < 4; k++ {
			inst, err := m.newImageInstance(context.Background(), img)
			if err != nil {
				t.Fatal(err)
			}
			seen[callOn(t, inst, "rand")] = true
			inst.close(context.Background())
		}
		return seen
	}
	if seen := draw(img); len(seen) != 4 {
		t.Fatalf("4 instances from the image drew %d distinct values: %v", len(seen), seen)
	}
	unseeded := *img
	unseeded.reseed = nil
	if seen := draw(&unseeded); len(seen) != 1 {
		t.Fatalf("without the reseed, 4 instances drew %d distinct values (want 1: the test cannot fail otherwise)", len(seen))
	}
}

// TestImageRefusals: an initialisation that does something per instance gets no image, says
// why, and its instances are initialised one by one and work.
func TestImageRefusals(t *testing.T) {
	const abi = `(memory (export "memory") 2)
  (func (export "wasmpod_abi_version") (result i32) (i32.const 1))
  (func (export "wasmpod_buffer") (param i32) (result i32) (i32.const 65536))
  (func (export "wasmpod_handle") (param i32) (result i64) (i64.const 0))`
	for _, tc := range []struct {
		name, wat, why string
	}{
		{"random", `(module
  (import "wasi_snapshot_preview1" "random_get" (func $rand (param i32 i32) (result i32)))
  ` + abi + `
  (func (export "_initialize") (drop (call $rand (i32.const 0) (i32.const 8)))))`, "random bytes"},
		{"stdout", `(module
  (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
  ` + abi + `
  (data (i32.const 100) "\68\00\00\00\01\00\00\00hi")
  (func (export "_initialize") (drop (call $w (i32.const 1) (i32.const 100) (i32.const 1) (i32.const 200)))))`, "stdout"},
		{"log", `(module
  (import "wasmpod" "log" (func $log (param i32 i32 i32)))
  ` + abi + `
  (func (export "_initialize") (call $log (i32.const 1) (i32.const 0) (i32.const 2))))`, "log"},
		{"table", `(module
  ` + abi + `
  (table 2 funcref)
  (func $f)
  (elem declare func $f)
  (func (export "_initialize") (table.set 0 (i32.const 0) (ref.func $f))))`, "table.set"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := imageEngine(t, Config{})
			m := loadImaged(t, e, readTestFile(t, wasmbuild.WATString(t, tc.wat)), tc.name)
			m.PrepareImage()
			if m.img.Load() != nil || !strings.HasPrefix(m.Info().Image, "refused: ") || !strings.Contains(m.Info().Image, tc.why) {
				t.Fatalf("image %q, want a refusal naming %q", m.Info().Image, tc.why)
			}
			if err := m.Start(context.Background(), StartOptions{}); err != nil {
				t.Fatal(err)
			}
			if err := m.Scale(3); err != nil {
				t.Fatal(err)
			}
			if _, err := m.Call(context.Background(), RoleHandle, nil, nil); err != nil {
				t.Fatal(err)
			}
			if m.Stats().FromImage != 0 {
				t.Fatal("instances made from an image that was refused")
			}
		})
	}
}

// TestImageClockAndDisable: reading the clock at initialisation does not prevent an image (the
// host's clocks are process-wide); Config.DisableImages turns images off.
func TestImageClockAndDisable(t *testing.T) {
	wat := `(module
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock (param i32 i64 i32) (result i32)))
  (memory (export "memory") 2)
  (global $n (mut i64) (i64.const 0))
  (func (export "wasmpod_abi_version") (result i32) (i32.const 1))
  (func (export "wasmpod_buffer") (param i32) (result i32) (i32.const 65536))
  (func (export "_initialize")
    (drop (call $clock (i32.const 1) (i64.const 1) (i32.const 8)))
    (global.set $n (i64.add (i64.load (i32.const 8)) (i64.const 1))))
  (func (export "wasmpod_handle") (param i32) (result i64)
    (i64.store (i32.const 16) (global.get $n))
    (i64.const 0x800000010)))`
	wasm := readTestFile(t, wasmbuild.WATString(t, wat))
	e := imageEngine(t, Config{})
	m := loadImaged(t, e, wasm, "clock")
	if strings.HasPrefix(m.Info().Image, "ready") || m.img.Load() != nil {
		t.Fatalf("image built before a second instance was needed: %s", m.Info().Image)
	}
	m.PrepareImage()
	if m.img.Load() == nil {
		t.Fatalf("no image: %s", m.Info().Image)
	}
	first := m.pool.slots[0].inst.Load()
	want := callOn(t, first, "")
	inst, err := m.newInstance(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer inst.close(context.Background())
	if got := callOn(t, inst, ""); got != want || len(got) != 8 || got == strings.Repeat("\x00", 8) {
		t.Fatalf("image instance global %x, first instance %x", got, want)
	}
	off := imageEngine(t, Config{DisableImages: true})
	m2 := loadImaged(t, off, wasm, "clock")
	m2.PrepareImage()
	if m2.img.Load() != nil || !strings.Contains(m2.Info().Image, "DisableImages") {
		t.Fatalf("images disabled, yet: %s", m2.Info().Image)
	}
}

func readTestFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestImageSameWasmSameModule: modules loaded from one .wasm (a pod that runs 16 shards of the
// same leaf, say) capture byte-identical image modules, so that the engine compiles the image
// once (Engine.imgMu serialises the builds and wazero shares a compiled module by content
// hash). Without it, every module's first scale-up compiled its own copy at once: seen as a
// 3-node cluster serving 4x fewer requests while 16 image compiles ran on each node.
func TestImageSameWasmSameModule(t *testing.T) {
	e := imageEngine(t, Config{})
	wasm := readTestFile(t, wasmbuild.Go(t, "testdata/kit"))
	var notes []string
	for _, name := range []string{"kit-a", "kit-b", "kit-c"} {
		m := loadImaged(t, e, wasm, name)
		m.PrepareImage()
		note := m.Info().Image
		if !strings.HasPrefix(note, "ready: ") || !strings.Contains(note, "module sha256:") {
			t.Fatalf("%s: image %q, want ready with the module's digest", name, note)
		}
		digest, _, _ := strings.Cut(note[strings.Index(note, "module sha256:"):], ",")
		notes = append(notes, digest)
	}
	for _, n := range notes[1:] {
		if n != notes[0] {
			t.Fatalf("image modules of the same wasm differ: %q vs %q", notes[0], n)
		}
	}
}
