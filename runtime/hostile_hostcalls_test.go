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

// countingSink counts log lines and their bytes without keeping them: the attacks below write
// gigabytes.
type countingSink struct{ lines, bytes atomic.Int64 }

func (s *countingSink) Log(e runtime.LogEntry) {
	s.lines.Add(1)
	s.bytes.Add(int64(len(e.Message)))
}

// hostcallInput is hostcalls.wat's input: op and n.
func hostcallInput(op byte, n uint32) []byte {
	in := make([]byte, 8)
	in[0] = op
	binary.LittleEndian.PutUint32(in[4:], n)
	return in
}

// TestHostileHostCalls: a host function is a loop the guest controls, outside the fuel checks.
// metric_define keeps at most maxMetricHelp bytes of help per metric (it kept the guest's whole
// memory, 256 MiB for 256 metrics of a 1 MiB guest); one fd_write of 200,000 buffers of 1 MiB
// is cut at the call's deadline (it ran for ~15 s past a 1 s deadline and succeeded), and a
// line kept in the meantime is bounded.
func TestHostileHostCalls(t *testing.T) {
	sink := &countingSink{}
	cfg := runtime.DefaultConfig()
	cfg.Logs = sink
	e := newEngine(t, cfg)
	mc := runtime.DefaultModuleConfig("hostcalls")
	mc.CallTimeout = time.Second
	m := started(t, e, readFile(t, wasmbuild.WAT(t, "testdata/hostile/hostcalls.wat")), mc)
	ctx := context.Background()

	t.Run("metric help of 1 MiB", func(t *testing.T) {
		before := heapInuse()
		out, err := m.Call(ctx, runtime.RoleHandle, hostcallInput(0, 256), nil)
		if err != nil || binary.LittleEndian.Uint32(out) != 256 {
			t.Fatalf("256 definitions: %x, %v", out, err)
		}
		ms := m.GuestMetrics()
		if len(ms) != 256 {
			t.Fatalf("%d guest metrics, want 256", len(ms))
		}
		for _, g := range ms {
			if len(g.Help) > 1024 {
				t.Fatalf("metric %s keeps %d bytes of help, want at most 1024", g.Name, len(g.Help))
			}
		}
		if grown := int64(heapInuse()) - int64(before); grown > 32<<20 {
			t.Fatalf("the host's heap grew by %d MiB for 256 metric definitions", grown>>20)
		}
	})

	t.Run("fd_write of 200,000 buffers of 1 MiB", func(t *testing.T) {
		t0 := time.Now()
		out, err := m.Call(ctx, runtime.RoleHandle, hostcallInput(1, 200_000), nil)
		took := time.Since(t0)
		t.Logf("returned after %s (deadline %s): %x, %v; %d log lines, %d MiB logged", took.Round(time.Millisecond),
			mc.CallTimeout, out, err, sink.lines.Load(), sink.bytes.Load()>>20)
		// Either the guest is cut at its next check, or it returns at once with the error its
		// write met at the deadline (a result that made it stands: see callGuarded).
		switch {
		case errors.Is(err, runtime.ErrDeadline):
		case err == nil && len(out) == 4 && binary.LittleEndian.Uint32(out) != 0:
		default:
			t.Fatalf("want ErrDeadline or a failed write, got %x, %v after %s", out, err, took)
		}
		if took > mc.CallTimeout+cutBound {
			t.Fatalf("cut after %s, deadline %s (+%s bound)", took, mc.CallTimeout, cutBound)
		}
		if n := sink.lines.Load(); n >= 200_000 {
			t.Fatalf("all %d buffers were written: the write was not cut", n)
		}
		// Every line was cut to the bound (8 KiB and the mark), not kept whole.
		if n := sink.lines.Load(); n == 0 || sink.bytes.Load()/n > 8<<10+16 {
			t.Fatalf("%d lines of %d bytes on average", n, sink.bytes.Load()/max(n, 1))
		}
		// The module serves again (a fresh instance replaces the cut one).
		out, err = m.Call(ctx, runtime.RoleHandle, hostcallInput(1, 1), nil)
		if err != nil || binary.LittleEndian.Uint32(out) != 0 {
			t.Fatalf("one buffer after the cut: %x, %v", out, err)
		}
	})
}

// TestHostileExtismFdWrite: the same fd_write from an Extism plugin returns at its deadline
// (it ran ~15 s past a 1 s deadline).
func TestHostileExtismFdWrite(t *testing.T) {
	sink := &countingSink{}
	cfg := runtime.DefaultConfig()
	cfg.Logs = sink
	e := newEngine(t, cfg)
	mc := extismConfig("extwrite")
	mc.CallTimeout = time.Second
	mc.ExtismFunctions = map[runtime.Role]string{runtime.RoleHandle: "run", runtime.RoleLeaf: "ok"}
	m := started(t, e, readFile(t, wasmbuild.WAT(t, "testdata/hostile/extism_fdwrite.wat")), mc)
	t0 := time.Now()
	_, err := m.Call(context.Background(), runtime.RoleHandle, nil, nil)
	took := time.Since(t0)
	t.Logf("returned after %s: %v; %d log lines", took.Round(time.Millisecond), err, sink.lines.Load())
	if !errors.Is(err, runtime.ErrDeadline) || took > mc.CallTimeout+cutBound {
		t.Fatalf("want ErrDeadline within %s, got %v after %s", mc.CallTimeout+cutBound, err, took)
	}
	if n := sink.lines.Load(); n >= 200_000 {
		t.Fatalf("all %d buffers were written: the write was not cut", n)
	}
	if _, err := m.Call(context.Background(), runtime.RoleLeaf, nil, nil); err != nil {
		t.Fatalf("after the cut: %v", err)
	}
}

// TestEngineCloseUnderRunningCall: closing the engine while a guest's call is blocked in a
// host function (which no cut interrupts) must not unmap the memory the guest returns to. The
// instance runs from the module's image, whose memory is an mmap'ed reservation: before,
// Engine.Close freed it under the running call, and the guest's next store killed the process
// with SIGSEGV.
func TestEngineCloseUnderRunningCall(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	block := runtime.HostFunction{
		Name: "block",
		Fn: func(context.Context, runtime.Caller, []uint64) {
			close(entered)
			<-release
		},
	}
	cfg := runtime.DefaultConfig()
	cfg.Imports = []runtime.HostFunction{block}
	e := newEngine(t, cfg) // closed below, under the call; the cleanup's second Close is a no-op
	// After the host function returns, the guest stores into its memory 2 MiB in, before any
	// check could cut it.
	wasm := readFile(t, wasmbuild.WATString(t, `(module
  (import "wasmpod" "block" (func $block))
  (memory (export "memory") 48)
  (data (i32.const 0x200000) "image")
  (func (export "wasmpod_abi_version") (result i32) (i32.const 1))
  (func (export "wasmpod_buffer") (param i32) (result i32) (i32.const 1024))
  (func (export "wasmpod_handle") (param $n i32) (result i64)
    (call $block)
    (i32.store (i32.const 0x200000) (i32.const 7))
    (i64.const 0)))`))
	mc := runtime.DefaultModuleConfig("blocked")
	mc.CallTimeout = time.Minute
	m, err := e.Load(context.Background(), wasm, mc)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := runtime.UseImageInstance(m); err != nil || !ok {
		t.Fatalf("the module has no instance image (%v): this test needs one", err)
	}
	if err := m.Start(context.Background(), runtime.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := m.Call(context.Background(), runtime.RoleHandle, nil, nil)
		done <- err
	}()
	<-entered
	closed := make(chan error, 1)
	go func() { closed <- e.Close(context.Background()) }()
	select {
	case err := <-closed:
		t.Logf("engine closed under the blocked call: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("Engine.Close waited for a call blocked in a host function")
	}
	close(release) // the guest resumes and stores into its memory
	select {
	case err := <-done:
		t.Logf("the call returned %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("the call never returned after its host function did")
	}
}
