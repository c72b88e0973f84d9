package runtime_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/internal/wasmbuild"
	"github.com/wasmpod/wasmpod/runtime"
)

// closeCommandWAT is a command that writes "tick" to stdout, then runs until something cuts
// it, in one of three ways chosen by its argument count (argc: the name, the inputs, the
// output): 3 writes the line again and again, 4 spins in pure wasm, 5 sleeps in poll_oneoff, a
// minute at a time.
const closeCommandWAT = `(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $args (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "tick\n")
  (func $tick (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))
  (func (export "_start")
    (local $argc i32)
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 5))
    (drop (call $args (i32.const 32) (i32.const 36)))
    (local.set $argc (i32.load (i32.const 32)))
    (call $tick)
    (if (i32.eq (local.get $argc) (i32.const 3))
      (then (loop $w (call $tick) (drop (memory.grow (i32.const 0))) (br $w))))
    (if (i32.eq (local.get $argc) (i32.const 4))
      (then (loop $s (br $s))))
    ;; a clock subscription at 64: relative, 60 s; the event is written at 128
    (i64.store (i32.const 64) (i64.const 0))
    (i32.store8 (i32.const 72) (i32.const 0))
    (i32.store (i32.const 80) (i32.const 1))
    (i64.store (i32.const 88) (i64.const 60000000000))
    (i64.store (i32.const 96) (i64.const 0))
    (i32.store16 (i32.const 104) (i32.const 0))
    (loop $z
      (drop (call $poll (i32.const 64) (i32.const 128) (i32.const 1) (i32.const 192)))
      (br $z))))`

// firstLine is a LogSink that signals its first stdout line.
type firstLine struct {
	once sync.Once
	ch   chan struct{}
}

func (f *firstLine) Log(e runtime.LogEntry) {
	if e.Source == "stdout" {
		f.once.Do(func() { close(f.ch) })
	}
}

// TestEngineCloseUnderCommandRun: closing the engine while a command runs (writing to stdout,
// spinning, or asleep in poll_oneoff) cuts the run, which fails with ErrClosed, and closes
// wazero's runtime only once the run has returned. Commands are always guarded, so Close waits
// for them (bounded) and reports nothing left running. Command.Close alone lets the run go on
// (and releases its compiled code when it ends). Before, the engine did not know about command
// runs: it closed the runtime under them (their instance's memory and WASI state): a nil
// dereference in fd_write, data races, and runs that never returned.
func TestEngineCloseUnderCommandRun(t *testing.T) {
	wasm := readFile(t, wasmbuild.WATString(t, closeCommandWAT))
	for _, tc := range []struct {
		name         string
		inputs       int  // argc chooses the way it runs
		commandFirst bool // Command.Close first: the run goes on until Engine.Close cuts it
	}{
		{"writing", 1, false},
		{"spinning", 2, false},
		{"sleeping", 3, false},
		{"writing/command then engine", 1, true},
		{"sleeping/command then engine", 3, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sink := &firstLine{ch: make(chan struct{})}
			e := newEngine(t, runtime.Config{Logs: sink})
			cfg := runtime.DefaultCommandConfig("close-under-run")
			cfg.Timeout = time.Minute
			c, err := e.LoadCommand(context.Background(), wasm, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close(context.Background())
			in := filepath.Join(t.TempDir(), "in")
			if err := os.WriteFile(in, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			var inputs []runtime.CommandInput
			for i := range tc.inputs {
				inputs = append(inputs, runtime.CommandInput{Name: fmt.Sprintf("i%d", i), Path: in})
			}
			out := t.TempDir()
			done := make(chan error, 1)
			go func() {
				_, err := c.RunInputs(context.Background(), inputs, "out", out)
				done <- err
			}()
			select {
			case <-sink.ch:
			case <-time.After(30 * time.Second):
				t.Fatal("the command never wrote its first line")
			}
			if tc.commandFirst {
				if err := c.Close(context.Background()); err != nil {
					t.Fatalf("Command.Close under a run returned %v, want nil (the run goes on)", err)
				}
				if _, err := c.Run(context.Background(), in, t.TempDir()); !errors.Is(err, runtime.ErrClosed) {
					t.Errorf("a run after Command.Close returned %v, want ErrClosed", err)
				}
				select {
				case err := <-done:
					t.Fatalf("Command.Close ended the run in flight: %v", err)
				case <-time.After(100 * time.Millisecond):
				}
				if runtime.RuntimeClosed(e) {
					t.Fatal("the runtime closed under the run")
				}
			}
			closed := make(chan error, 1)
			go func() { closed <- e.Close(context.Background()) }()
			var cerr error
			select {
			case cerr = <-closed:
			case <-time.After(30 * time.Second):
				t.Fatal("Engine.Close did not cut the running command in 30 s")
			}
			if cerr != nil {
				t.Errorf("Engine.Close returned %v, want nil (the run was cut and returned)", cerr)
			}
			if !runtime.RuntimeClosed(e) {
				t.Error("Engine.Close returned with the wazero runtime still open")
			}
			select {
			case err := <-done:
				if !errors.Is(err, runtime.ErrClosed) {
					t.Errorf("the run returned %v, want ErrClosed", err)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("the run never returned")
			}
			if _, err := c.Run(context.Background(), in, t.TempDir()); !errors.Is(err, runtime.ErrClosed) {
				t.Errorf("a run after Engine.Close returned %v, want ErrClosed", err)
			}
		})
	}
}

// TestEngineCloseUnderLoad: closing the engine while a load runs the module's initialisation
// (a start function or _initialize that loops; an Extism plugin's _start) cuts it: Load fails
// with ErrClosed, and the runtime closes only once the load has returned. Before, Close closed
// the runtime under the running initialisation.
func TestEngineCloseUnderLoad(t *testing.T) {
	for _, mod := range []string{"start_loop", "init_loop", "extism_start_fib"} {
		t.Run(mod, func(t *testing.T) {
			e := newEngine(t, runtime.DefaultConfig())
			cfg := runtime.DefaultModuleConfig(mod)
			if mod == "extism_start_fib" {
				cfg = extismConfig(mod)
				cfg.ExtismFunctions = map[runtime.Role]string{runtime.RoleHandle: "run"}
			}
			cfg.CallTimeout = time.Minute
			wasm := readFile(t, wasmbuild.WAT(t, "testdata/hostile/"+mod+".wat"))
			done := make(chan error, 1)
			go func() {
				m, err := e.Load(context.Background(), wasm, cfg)
				if m != nil {
					m.Close(context.Background())
				}
				done <- err
			}()
			time.Sleep(500 * time.Millisecond) // well into the loop
			closed := make(chan error, 1)
			go func() { closed <- e.Close(context.Background()) }()
			select {
			case err := <-closed:
				if err != nil {
					t.Errorf("Engine.Close returned %v, want nil (the load was cut and returned)", err)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("Engine.Close did not cut the load in 30 s")
			}
			if !runtime.RuntimeClosed(e) {
				t.Error("Engine.Close returned with the wazero runtime still open")
			}
			select {
			case err := <-done:
				if !errors.Is(err, runtime.ErrClosed) {
					t.Errorf("the load returned %v, want ErrClosed", err)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("the load never returned")
			}
		})
	}
}
