package runtime_test

import (
	"context"
	"encoding/binary"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/internal/wasmbuild"
	"github.com/wasmpod/wasmpod/runtime"
)

// trustedCloseWAT: a handler that nothing can cut once it runs (the module is trusted). It calls
// entered, then either spins (input byte 0 is 0: pure wasm, asking the host function spun
// every 65,536 rounds whether it has spun long enough) or blocks in the host function block
// (input byte 0 is 1). Then it does
// what a guest does with the resources its instance holds: it grows its memory page by page and
// stores into every new page, calls through its table, writes its global, and writes a line to
// stdout through WASI. Its output is the global, fd_write's errno and the memory's size in
// pages, each a little-endian u32.
const trustedCloseWAT = `(module
  (import "wasmpod" "entered" (func $entered))
  (import "wasmpod" "block" (func $block))
  (import "wasmpod" "spun" (func $spun (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (type $t (func (param i32) (result i32)))
  (memory (export "memory") 2)
  (global $g (mut i32) (i32.const 0))
  (table 2 funcref)
  (elem (i32.const 0) $inc $twice)
  (data (i32.const 16) "still running\n")
  (func $inc (type $t) (i32.add (local.get 0) (i32.const 1)))
  (func $twice (type $t) (i32.mul (local.get 0) (i32.const 2)))
  (func (export "wasmpod_abi_version") (result i32) (i32.const 1))
  (func (export "wasmpod_buffer") (param i32) (result i32) (i32.const 1024))
  (func (export "wasmpod_handle") (param $n i32) (result i64)
    (local $i i32) (local $errno i32)
    (call $entered)
    (if (i32.load8_u (i32.const 1024))
      (then (call $block))
      (else
        (loop $spin
          (global.set $g (call_indirect (type $t) (global.get $g) (i32.const 0)))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $spin (i32.and (local.get $i) (i32.const 0xffff)))
          (br_if $spin (i32.eqz (call $spun))))))
    (global.set $g (call_indirect (type $t) (global.get $g) (i32.const 0)))
    (global.set $g (call_indirect (type $t) (global.get $g) (i32.const 1)))
    (local.set $i (i32.const 1))
    (loop $grow
      (if (i32.ne (memory.grow (i32.const 1)) (i32.const -1))
        (then (i32.store (i32.mul (local.get $i) (i32.const 65536)) (global.get $g))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $grow (i32.le_u (local.get $i) (i32.const 32))))
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 14))
    (local.set $errno (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
    (i32.store (i32.const 2048) (global.get $g))
    (i32.store (i32.const 2052) (local.get $errno))
    (i32.store (i32.const 2056) (memory.size))
    (i64.or (i64.shl (i64.const 12) (i64.const 32)) (i64.const 2048))))`

// TestCloseUnderTrustedCall: closing the engine (or the module, then the engine) while a trusted
// module's call still runs guest code, which nothing can cut, must free nothing that call uses.
// Close returns (it does not wait for the call), says that calls still run, refuses new calls,
// and the call, when it returns, gets its own result and releases what Close left to it. Before,
// Engine.Close closed wazero's runtime under the call: that closed the instance (its memory
// freed, its WASI state dropped) while the guest still used it, a data race and a wrong result.
func TestCloseUnderTrustedCall(t *testing.T) {
	wasm := readFile(t, wasmbuild.WATString(t, trustedCloseWAT))
	for _, tc := range []struct {
		name             string
		block            bool
		closeModuleFirst bool
	}{
		{"spinning/engine", false, false},
		{"spinning/module then engine", false, true},
		{"blocked in a host function/engine", true, false},
		{"blocked in a host function/module then engine", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The guest spins for spinFor after entering, timed on its own goroutine: nothing
			// the test does reaches it (no synchronisation the race detector could see), like
			// a guest that just runs on.
			const spinFor = 2 * time.Second
			var spinStart time.Time
			entered, blocked, release := make(chan struct{}, 1), make(chan struct{}), make(chan struct{})
			cfg := runtime.DefaultConfig()
			cfg.Imports = []runtime.HostFunction{
				{Name: "entered", Fn: func(context.Context, runtime.Caller, []uint64) {
					spinStart = time.Now()
					entered <- struct{}{}
				}},
				{Name: "spun", Results: []runtime.ValueType{runtime.I32}, Fn: func(_ context.Context, _ runtime.Caller, stack []uint64) {
					if time.Since(spinStart) >= spinFor {
						stack[0] = 1
					} else {
						stack[0] = 0
					}
				}},
				{Name: "block", Fn: func(context.Context, runtime.Caller, []uint64) {
					close(blocked)
					<-release
				}},
			}
			e := newEngine(t, cfg) // closed below, under the call; the cleanup's Close is a no-op
			mc := runtime.DefaultModuleConfig("trusted-close")
			mc.Trusted = true
			mc.CallTimeout = 200 * time.Millisecond // advisory for trusted code: nothing cuts it
			mc.MaxConcurrency = 1
			m, err := e.Load(context.Background(), wasm, mc)
			if err != nil {
				t.Fatal(err)
			}
			if err := m.Start(context.Background(), runtime.StartOptions{}); err != nil {
				t.Fatal(err)
			}
			in := []byte{0}
			if tc.block {
				in[0] = 1
			}
			type result struct {
				out []byte
				err error
			}
			done := make(chan result, 1)
			go func() {
				out, err := m.Call(context.Background(), runtime.RoleHandle, in, nil)
				done <- result{out, err}
			}()
			<-entered
			if tc.block {
				<-blocked
			}

			hold := make(chan struct{})
			defer close(hold)
			closeBounded := func(what string, close func(context.Context) error) error {
				t.Helper()
				ch := make(chan error, 1)
				go func() {
					ch <- close(context.Background())
					// Kept until the call returned: the race detector reports a race only while
					// the goroutine of the earlier access is still there to name.
					<-hold
				}()
				select {
				case err := <-ch:
					t.Logf("%s under the running call: %v", what, err)
					return err
				case <-time.After(30 * time.Second):
					t.Fatalf("%s waited for a call that nothing cuts", what)
					return nil
				}
			}
			if tc.closeModuleFirst {
				if err := closeBounded("Module.Close", m.Close); !errors.Is(err, runtime.ErrCallsRunning) {
					t.Errorf("Module.Close under a running call returned %v, want one wrapping ErrCallsRunning", err)
				}
			}
			if err := closeBounded("Engine.Close", e.Close); !errors.Is(err, runtime.ErrCallsRunning) {
				t.Errorf("Engine.Close under a running call returned %v, want one wrapping ErrCallsRunning", err)
			}
			if runtime.RuntimeClosed(e) {
				t.Errorf("the engine closed its wazero runtime under a running call")
			}
			// Nothing new starts after Close.
			if _, err := m.Call(context.Background(), runtime.RoleHandle, in, nil); !errors.Is(err, runtime.ErrNotRunning) {
				t.Errorf("a call after Close returned %v, want ErrNotRunning", err)
			}
			if _, err := e.Load(context.Background(), wasm, mc); !errors.Is(err, runtime.ErrClosed) {
				t.Errorf("a load after Close returned %v, want ErrClosed", err)
			}
			if err := e.Close(context.Background()); err != nil {
				t.Errorf("a second Engine.Close returned %v, want nil (idempotent)", err)
			}

			// Let the blocked guest go on; the spinning one goes on by itself.
			if tc.block {
				close(release)
			}
			var r result
			select {
			case r = <-done:
			case <-time.After(60 * time.Second):
				t.Fatal("the call never returned")
			}
			if r.err != nil || len(r.out) != 12 {
				t.Fatalf("the running call returned %x, %v; want its own 12-byte output", r.out, r.err)
			}
			g, errno, pages := binary.LittleEndian.Uint32(r.out), binary.LittleEndian.Uint32(r.out[4:]), binary.LittleEndian.Uint32(r.out[8:])
			if g == 0 || errno != 0 || pages != 34 {
				t.Errorf("the guest saw global %d, fd_write errno %d, %d pages; want > 0, 0, 34", g, errno, pages)
			}
			// The returning call released what Close left to it, the runtime last.
			if !runtime.RuntimeClosed(e) {
				t.Errorf("the engine's wazero runtime is still open after the last call returned")
			}
		})
	}
}

// refillHangWAT: a trusted module whose wasmpod_start calls the host function hold (which the
// test makes block for the second instance: a refill).
const refillHangWAT = `(module
  (import "wasmpod" "hold" (func $hold))
  (memory (export "memory") 2)
  (func (export "wasmpod_abi_version") (result i32) (i32.const 1))
  (func (export "wasmpod_buffer") (param i32) (result i32) (i32.const 1024))
  (func (export "wasmpod_start") (result i32) (call $hold) (i32.const 0))
  (func (export "wasmpod_handle") (param $n i32) (result i64) (i64.const 0)))`

// TestCloseUnderHangingRefill: a trusted module's background refill that hangs in its
// wasmpod_start (which nothing cuts) does not hold Module.Close or Engine.Close: they return,
// saying a call still runs, and the refill releases what it uses when it returns. Before, Close
// waited for the refill's goroutine for ever (and with it a host's shutdown).
func TestCloseUnderHangingRefill(t *testing.T) {
	var holds atomic.Int32
	entered, release := make(chan struct{}), make(chan struct{})
	cfg := runtime.DefaultConfig()
	cfg.Imports = []runtime.HostFunction{{Name: "hold", Fn: func(context.Context, runtime.Caller, []uint64) {
		if holds.Add(1) == 2 {
			close(entered)
			<-release
		}
	}}}
	e := newEngine(t, cfg)
	mc := runtime.DefaultModuleConfig("refill-hang")
	mc.Trusted = true
	mc.MinInstances, mc.MaxConcurrency = 1, 2
	m, err := e.Load(context.Background(), readFile(t, wasmbuild.WATString(t, refillHangWAT)), mc)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(context.Background(), runtime.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := m.Scale(2); err != nil { // the refill makes the second instance
		t.Fatal(err)
	}
	select {
	case <-entered:
	case <-time.After(30 * time.Second):
		t.Fatal("the refill never started the second instance")
	}
	for _, c := range []struct {
		what  string
		close func(context.Context) error
	}{{"Module.Close", m.Close}, {"Engine.Close", e.Close}} {
		ch := make(chan error, 1)
		go func() { ch <- c.close(context.Background()) }()
		select {
		case err := <-ch:
			if !errors.Is(err, runtime.ErrCallsRunning) {
				t.Errorf("%s under the hanging refill returned %v, want ErrCallsRunning", c.what, err)
			}
		case <-time.After(30 * time.Second):
			close(release)
			t.Fatalf("%s waited for the hanging refill", c.what)
		}
	}
	if runtime.RuntimeClosed(e) {
		t.Fatal("the runtime closed under the refill")
	}
	close(release)
	for deadline := time.Now().Add(30 * time.Second); !runtime.RuntimeClosed(e); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the runtime is still open 30 s after the refill returned")
		}
	}
}
