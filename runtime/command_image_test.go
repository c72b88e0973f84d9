package runtime

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/internal/wasmbuild"
)

// testCommand loads wasm as the command "cmdguest" on a fresh engine (cfg), with a 5 s timeout
// and its own WorkDir, and closes it after the test.
func testCommand(t *testing.T, cfg Config, wasm []byte) *Command {
	t.Helper()
	e := imageEngine(t, cfg)
	ccfg := DefaultCommandConfig("cmdguest")
	ccfg.Timeout = 5 * time.Second
	ccfg.WorkDir = t.TempDir()
	c, err := e.LoadCommand(context.Background(), wasm, ccfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// runOne runs c on one input file named name (content in) and returns the output file's
// content and the run's error.
func runOne(t *testing.T, c *Command, name, in string) (string, error) {
	t.Helper()
	src := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(src, []byte(in), 0o644); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	_, err := c.Run(context.Background(), src, out)
	if err != nil {
		return "", err
	}
	b, err := os.ReadFile(filepath.Join(out, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b), nil
}

// TestCommandImage: a Go command's runs after its image is built are made from it, and they
// behave as runs without an image do (outputs, argv and mounts, exit codes, the deadline); what
// a run draws at random or reads from the clock is its own (the capture is taken before
// _start, so the Go runtime seeds itself in every run).
func TestCommandImage(t *testing.T) {
	wasm := readTestFile(t, wasmbuild.GoCommand(t, "testdata/cmdguest"))
	plain := testCommand(t, Config{DisableImages: true}, wasm)
	c := testCommand(t, Config{}, wasm)
	if got := c.Image(); !strings.HasPrefix(got, "pending: ") {
		t.Fatalf("image before the first run: %q", got)
	}
	if _, err := runOne(t, c, "hello.txt", "first run"); err != nil {
		t.Fatal(err)
	}
	c.PrepareImage()
	if got := c.Image(); !strings.HasPrefix(got, "ready: ") {
		t.Fatalf("image %q, want ready", got)
	}
	if got := plain.Image(); !strings.HasPrefix(got, "refused: disabled") {
		t.Fatalf("image with DisableImages: %q", got)
	}

	for _, tc := range []struct{ name, in string }{
		{"hello.txt", "hello, image\n"},
		{"list.txt", "abc"},
		{"escape.txt", "x"},
		{"exit3.txt", "x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := c.m.fromImage.Load()
			got, err := runOne(t, c, tc.name, tc.in)
			want, werr := runOne(t, plain, tc.name, tc.in)
			if got != want || (err == nil) != (werr == nil) || err != nil && err.Error() != werr.Error() {
				t.Fatalf("from the image: %q, %v\nwithout: %q, %v", got, err, want, werr)
			}
			if c.m.fromImage.Load() != before+1 {
				t.Fatal("the run was not made from the image")
			}
		})
	}

	t.Run("deadline", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		src := filepath.Join(t.TempDir(), "loop.txt")
		if err := os.WriteFile(src, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Run(ctx, src, t.TempDir()); !errors.Is(err, ErrDeadline) {
			t.Fatalf("err = %v, want ErrDeadline", err)
		}
	})

	t.Run("randomness and clocks are per run", func(t *testing.T) {
		seen := map[string]bool{}
		for range 3 {
			got, err := runOne(t, c, "rand.txt", "x")
			if err != nil {
				t.Fatal(err)
			}
			f := strings.Fields(got)
			if len(f) < 3 {
				t.Fatalf("output %q", got)
			}
			for i, part := range []string{f[0], f[1], strings.Join(f[2:len(f)-1], " "), f[len(f)-1]} {
				key := string(rune('a'+i)) + part
				if seen[key] && i != 2 { // two map orders may agree by chance; bytes, numbers and clocks may not
					t.Fatalf("two runs made from the image drew the same %q (outputs so far %v)", part, seen)
				}
				seen[key] = true
			}
		}
	})
}

// TestCommandImageRefusals: a command whose image could differ from what its instantiation
// does gets none, says why, and runs as before.
func TestCommandImageRefusals(t *testing.T) {
	for _, tc := range []struct{ name, wat, why string }{
		{"start function", `(module (memory (export "memory") 1) (global $g (mut i32) (i32.const 0))
  (func $s (global.set $g (i32.const 1))) (start $s) (func (export "_start")))`, "start function"},
		{"passive data", `(module (memory (export "memory") 1) (data "abc")
  (func (export "_start") (memory.init 0 (i32.const 0) (i32.const 0) (i32.const 3))))`, "memory.init"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := testCommand(t, Config{}, readTestFile(t, wasmbuild.WATString(t, tc.wat)))
			c.PrepareImage()
			if got := c.Image(); c.m.img.Load() != nil || !strings.HasPrefix(got, "refused: ") || !strings.Contains(got, tc.why) {
				t.Fatalf("image %q, want a refusal naming %q", got, tc.why)
			}
			for range 2 {
				src := filepath.Join(t.TempDir(), "in")
				if err := os.WriteFile(src, nil, 0o644); err != nil {
					t.Fatal(err)
				}
				if _, err := c.Run(context.Background(), src, t.TempDir()); err != nil {
					t.Fatal(err)
				}
			}
			if c.m.fromImage.Load() != 0 {
				t.Fatal("runs made from an image that was refused")
			}
		})
	}
}

// TestCommandCloseWhileImageBuilds: Close waits for an image build under way and releases it;
// runs after Close fail.
func TestCommandCloseWhileImageBuilds(t *testing.T) {
	c := testCommand(t, Config{}, readTestFile(t, wasmbuild.GoCommand(t, "testdata/cmdguest")))
	if _, err := runOne(t, c, "hello.txt", "x"); err != nil { // starts the build
		t.Fatal(err)
	}
	if err := c.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(context.Background()); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := runOne(t, c, "hello.txt", "x"); err == nil {
		t.Fatal("run after Close succeeded")
	}
}

// TestCommandImageRunsDoNotLeak: what a run made from the image writes to its memory and
// globals is its own: the next run starts from the image again (a command with a data segment
// and a mutable global, as a C or Rust command has, rather than a Go one), also in the memory
// it grew into, both where a kept memory is cleared (70000) and where its pages are dropped
// (1200000: more than spareZeroMax beyond the image), and when runs overlap.
func TestCommandImageRunsDoNotLeak(t *testing.T) {
	wat := `(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "\05")
  (global $g (mut i32) (i32.const 7))
  (func (export "_start")
    (local $v i32)
    (local.set $v (i32.add (i32.load8_u (i32.const 16)) (global.get $g)))
    (i32.store8 (i32.const 16) (i32.const 100))
    (i32.store (i32.const 40000) (i32.const 1))
    (local.set $v (i32.add (local.get $v) (i32.load (i32.const 50000))))
    (i32.store (i32.const 50000) (i32.const 200))
    (drop (memory.grow (i32.const 20)))
    (local.set $v (i32.add (local.get $v) (i32.load (i32.const 70000))))
    (local.set $v (i32.add (local.get $v) (i32.load (i32.const 1200000))))
    (i32.store (i32.const 70000) (i32.const 3))
    (i32.store (i32.const 1200000) (i32.const 4))
    (global.set $g (i32.const 50))
    (call $exit (local.get $v))))`
	c := testCommand(t, Config{}, readTestFile(t, wasmbuild.WATString(t, wat)))
	c.PrepareImage()
	if got := c.Image(); !strings.HasPrefix(got, "ready: ") {
		t.Fatalf("image %q, want ready", got)
	}
	for i := range 4 {
		src := filepath.Join(t.TempDir(), "in")
		if err := os.WriteFile(src, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := c.Run(context.Background(), src, t.TempDir())
		var xe *ExitError
		if !errors.As(err, &xe) || xe.Code != 12 {
			t.Fatalf("run %d: %v, want exit code 12 (5 from the data segment + 7 from the global; more means an earlier run's writes leaked)", i, err)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 4 {
				src := filepath.Join(t.TempDir(), "in")
				if err := os.WriteFile(src, nil, 0o644); err != nil {
					errs <- err
					return
				}
				_, err := c.Run(context.Background(), src, t.TempDir())
				var xe *ExitError
				if !errors.As(err, &xe) || xe.Code != 12 {
					errs <- fmt.Errorf("concurrent run: %v, want exit code 12", err)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := c.m.fromImage.Load(); n != 20 {
		t.Fatalf("%d runs made from the image, want 20", n)
	}
}
