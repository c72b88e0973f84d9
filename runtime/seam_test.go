package runtime_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/internal/wasmbuild"
	"github.com/wasmpod/wasmpod/runtime"
)

type seamKey struct{}

type countedState struct {
	closed *atomic.Int64
	done   atomic.Bool
}

func (s *countedState) Close() {
	if s.done.Swap(true) {
		panic("closed twice")
	}
	s.closed.Add(1)
}

// TestInstanceSeam: state a host function creates through Caller.State lives with its instance:
// the same state across the instance's calls, closed exactly once when the instance is discarded
// for any reason (trap, deadline, stop, engine close); Caller.Deadline is the call's cut-off.
func TestInstanceSeam(t *testing.T) {
	var created, closed atomic.Int64
	var sawDeadline atomic.Int64 // ns until the deadline, seen by the host function
	touch := runtime.HostFunction{
		Name: "touch", Results: []runtime.ValueType{runtime.I32},
		Fn: func(ctx context.Context, c runtime.Caller, stack []uint64) {
			st := c.State(seamKey{}, func() runtime.InstanceState {
				created.Add(1)
				return &countedState{closed: &closed}
			})
			if dl, ok := c.Deadline(); ok {
				sawDeadline.Store(int64(time.Until(dl)))
			}
			if st == nil {
				stack[0] = 0
				return
			}
			stack[0] = 1
		},
	}
	cfg := runtime.DefaultConfig()
	cfg.Imports = []runtime.HostFunction{touch}
	e, err := runtime.NewEngine(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(context.Background())
	wasm := readFile(t, wasmbuild.WATString(t, `(module
  (import "wasmpod" "touch" (func $touch (result i32)))
  (memory (export "memory") 2)
  (func (export "wasmpod_abi_version") (result i32) (i32.const 1))
  (func (export "wasmpod_buffer") (param i32) (result i32) (i32.const 1024))
  (func (export "wasmpod_handle") (param $n i32) (result i64)
    (drop (call $touch))
    (if (i32.eq (i32.load8_u (i32.const 1024)) (i32.const 1)) (then unreachable))
    (if (i32.eq (i32.load8_u (i32.const 1024)) (i32.const 2)) (then (loop $l (br $l))))
    (i64.const 0)))`))
	mc := runtime.DefaultModuleConfig("seam")
	mc.MinInstances, mc.MaxConcurrency, mc.CallTimeout = 1, 1, 300*time.Millisecond
	m, err := e.Load(context.Background(), wasm, mc)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(context.Background(), runtime.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	call := func(op byte) error {
		_, err := m.Call(context.Background(), runtime.RoleHandle, []byte{op}, nil)
		return err
	}
	for range 3 {
		if err := call(0); err != nil {
			t.Fatal(err)
		}
	}
	if created.Load() != 1 || closed.Load() != 0 {
		t.Fatalf("three calls on one instance: created %d, closed %d; want 1, 0", created.Load(), closed.Load())
	}
	if d := time.Duration(sawDeadline.Load()); d <= 0 || d > mc.CallTimeout {
		t.Fatalf("Caller.Deadline: %v ahead, want within the call timeout %v", d, mc.CallTimeout)
	}
	var te *runtime.TrapError
	if err := call(1); !errors.As(err, &te) {
		t.Fatalf("trap: %v", err)
	}
	if closed.Load() != 1 {
		t.Fatalf("after a trap: closed %d, want 1", closed.Load())
	}
	if err := call(2); !errors.Is(err, runtime.ErrDeadline) {
		t.Fatalf("deadline: %v", err)
	}
	if created.Load() != 2 || closed.Load() != 2 {
		t.Fatalf("after a deadline: created %d, closed %d; want 2, 2", created.Load(), closed.Load())
	}
	if err := call(0); err != nil {
		t.Fatal(err)
	}
	if err := m.Stop(context.Background(), runtime.StopOptions{}); err != nil {
		t.Fatal(err)
	}
	if created.Load() != 3 || closed.Load() != 3 {
		t.Fatalf("after Stop: created %d, closed %d; want 3, 3", created.Load(), closed.Load())
	}
}
