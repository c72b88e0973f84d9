package runtime_test

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
	"github.com/wasmpod/wasmpod/runtime"
)

func cmdguest(t testing.TB) []byte { return readFile(t, wasmbuild.GoCommand(t, "testdata/cmdguest")) }

func loadCommand(t testing.TB, e *runtime.Engine, wasm []byte, cfg runtime.CommandConfig) *runtime.Command {
	t.Helper()
	c, err := e.LoadCommand(context.Background(), wasm, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func TestCommandRun(t *testing.T) {
	logs := &logRecorder{}
	e := newEngine(t, runtime.Config{Logs: logs})
	cfg := runtime.DefaultCommandConfig("cmdguest")
	cfg.Timeout = 2 * time.Second
	c := loadCommand(t, e, cmdguest(t), cfg)

	cases := []struct {
		name    string
		input   string // base name; selects the guest's behaviour
		content string
		check   func(t *testing.T, res runtime.RunResult, err error, outDir string)
	}{
		{"upper-cases its input", "hello.txt", "hello, wasm\n", func(t *testing.T, res runtime.RunResult, err error, outDir string) {
			if err != nil {
				t.Fatal(err)
			}
			want := filepath.Join(outDir, "hello.txt")
			if len(res.Outputs) != 1 || res.Outputs[0] != want {
				t.Fatalf("outputs %q, want [%q]", res.Outputs, want)
			}
			if got := string(readFile(t, want)); got != "HELLO, WASM\n" {
				t.Fatalf("output %q", got)
			}
			if res.ExitCode != 0 {
				t.Fatalf("exit code %d", res.ExitCode)
			}
			if !logs.find("stdout", "cmdguest: 12 bytes") {
				t.Fatal("stdout line not logged")
			}
		}},
		{"is denied everything but its input", "escape.txt", "x", func(t *testing.T, res runtime.RunResult, err error, outDir string) {
			if err != nil {
				t.Fatal(err)
			}
			report := strings.TrimSpace(string(readFile(t, filepath.Join(outDir, "escape.txt"))))
			t.Logf("escape report:\n%s", report)
			lines := strings.Split(report, "\n")
			if len(lines) < 13 {
				t.Fatalf("short report:\n%s", report)
			}
			for _, l := range lines {
				if !strings.Contains(l, ": denied (") {
					t.Errorf("not denied: %s", l)
				}
			}
		}},
		{"runaway is cut at its deadline", "loop.txt", "x", func(t *testing.T, res runtime.RunResult, err error, outDir string) {
			if !errors.Is(err, runtime.ErrDeadline) {
				t.Fatalf("err = %v, want ErrDeadline", err)
			}
			if res.Duration > 10*time.Second {
				t.Fatalf("cut only after %s", res.Duration)
			}
			if len(res.Outputs) != 0 {
				t.Fatalf("outputs %q", res.Outputs)
			}
		}},
		{"non-zero exit fails with code and stderr", "exit3.txt", "x", func(t *testing.T, res runtime.RunResult, err error, outDir string) {
			var xe *runtime.ExitError
			if !errors.As(err, &xe) || !errors.Is(err, runtime.ErrGuest) {
				t.Fatalf("err = %v, want *ExitError", err)
			}
			if xe.Code != 3 || res.ExitCode != 3 {
				t.Fatalf("code %d / %d, want 3", xe.Code, res.ExitCode)
			}
			if !strings.Contains(xe.Stderr, "giving up on /in/exit3.txt") || xe.Stderr != res.Stderr {
				t.Fatalf("stderr %q / %q", xe.Stderr, res.Stderr)
			}
			if ents, _ := os.ReadDir(outDir); len(ents) != 0 {
				t.Fatalf("failed run left %d outputs", len(ents))
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			inDir := t.TempDir()
			input := filepath.Join(inDir, tc.input)
			if err := os.WriteFile(input, []byte(tc.content), 0o644); err != nil {
				t.Fatal(err)
			}
			// A sibling of the input the guest must not see.
			if err := os.WriteFile(filepath.Join(inDir, "secret"), []byte("secret"), 0o644); err != nil {
				t.Fatal(err)
			}
			outDir := filepath.Join(t.TempDir(), "out")
			res, err := c.Run(context.Background(), input, outDir)
			tc.check(t, res, err, outDir)
			if got := string(readFile(t, input)); got != tc.content {
				t.Fatalf("input changed to %q", got)
			}
		})
	}
}

func TestCommandConcurrentRuns(t *testing.T) {
	e := newEngine(t, runtime.Config{})
	c := loadCommand(t, e, cmdguest(t), runtime.DefaultCommandConfig("cmdguest"))
	dir := t.TempDir()
	var wg sync.WaitGroup
	for k := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in := filepath.Join(dir, fmt.Sprintf("in%d.txt", k))
			if err := os.WriteFile(in, []byte(fmt.Sprintf("run %d", k)), 0o644); err != nil {
				t.Error(err)
				return
			}
			res, err := c.Run(context.Background(), in, filepath.Join(dir, "out"))
			if err != nil {
				t.Error(err)
				return
			}
			if len(res.Outputs) != 1 {
				t.Errorf("outputs %q", res.Outputs)
				return
			}
			if b, _ := os.ReadFile(res.Outputs[0]); string(b) != fmt.Sprintf("RUN %d", k) {
				t.Errorf("run %d wrote %q", k, b)
			}
		}()
	}
	wg.Wait()
}

func TestCommandContext(t *testing.T) {
	e := newEngine(t, runtime.Config{})
	c := loadCommand(t, e, cmdguest(t), runtime.DefaultCommandConfig("cmdguest")) // 1 min timeout
	in := filepath.Join(t.TempDir(), "loop.txt")
	if err := os.WriteFile(in, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Run("deadline", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		if _, err := c.Run(ctx, in, t.TempDir()); !errors.Is(err, runtime.ErrDeadline) {
			t.Fatalf("err = %v, want ErrDeadline", err)
		}
	})
	t.Run("cancel", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(200*time.Millisecond, cancel)
		if _, err := c.Run(ctx, in, t.TempDir()); !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	})
	t.Run("missing input", func(t *testing.T) {
		if _, err := c.Run(context.Background(), filepath.Join(t.TempDir(), "nope"), t.TempDir()); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("err = %v, want ErrNotExist", err)
		}
	})
}

func TestLoadCommandRejects(t *testing.T) {
	e := newEngine(t, runtime.Config{})
	small := runtime.DefaultCommandConfig("small")
	small.MaxMemoryPages = 2
	cases := []struct {
		name string
		wasm func(t testing.TB) []byte
		cfg  runtime.CommandConfig
		want error
		msg  string
	}{
		{"no _start", func(t testing.TB) []byte {
			return readFile(t, wasmbuild.WATString(t, `(module (memory (export "memory") 1) (func (export "_initialize")))`))
		}, runtime.DefaultCommandConfig("reactor"), runtime.ErrInvalidModule, "does not export _start"},
		{"foreign import", func(t testing.TB) []byte {
			return readFile(t, wasmbuild.WATString(t, `(module (import "env" "f" (func)) (memory (export "memory") 1) (func (export "_start")))`))
		}, runtime.DefaultCommandConfig("env"), runtime.ErrInvalidModule, "imports env.f"},
		{"wasmpod import", func(t testing.TB) []byte {
			return readFile(t, wasmbuild.WATString(t, `(module (import "wasmpod" "log" (func (param i32 i32 i32))) (memory (export "memory") 1) (func (export "_start")))`))
		}, runtime.DefaultCommandConfig("plugin"), runtime.ErrInvalidModule, "imports wasmpod.log"},
		{"bad _start", func(t testing.TB) []byte {
			return readFile(t, wasmbuild.WATString(t, `(module (memory (export "memory") 1) (func (export "_start") (param i32)))`))
		}, runtime.DefaultCommandConfig("sig"), runtime.ErrInvalidModule, "want () -> ()"},
		{"over the memory limit", cmdguest, small, runtime.ErrMemoryLimit, "over its limit of 2 pages"},
		{"no name", cmdguest, runtime.CommandConfig{MaxMemoryPages: 1, Timeout: time.Second}, runtime.ErrInvalidModule, "name is required"},
		{"checksum", cmdguest, func() runtime.CommandConfig {
			c := runtime.DefaultCommandConfig("sum")
			c.SHA256 = strings.Repeat("0", 64)
			return c
		}(), runtime.ErrChecksum, "expected"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.LoadCommand(context.Background(), tc.wasm(t), tc.cfg)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("err = %v, want %v containing %q", err, tc.want, tc.msg)
			}
		})
	}
}

func TestCommandLoopInWAT(t *testing.T) {
	// A command with no WASI at all that spins: only the instrumentation can cut it.
	e := newEngine(t, runtime.Config{})
	cfg := runtime.DefaultCommandConfig("spin")
	cfg.Timeout = 100 * time.Millisecond
	c := loadCommand(t, e, readFile(t, wasmbuild.WATString(t, `(module (memory (export "memory") 1) (func (export "_start") (loop (br 0))))`)), cfg)
	in := filepath.Join(t.TempDir(), "x")
	if err := os.WriteFile(in, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Run(context.Background(), in, t.TempDir()); !errors.Is(err, runtime.ErrDeadline) {
		t.Fatalf("err = %v, want ErrDeadline", err)
	}
}
