package runtime_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/runtime"
)

// TestCancelCutsRunningCall: a call whose context is cancelled (its caller went away) is cut
// like one past its deadline, whether the guest spins in pure arithmetic or makes host calls
// in its loop; the error says cancelled, not deadline, and the module serves the next call.
func TestCancelCutsRunningCall(t *testing.T) {
	e := newEngine(t, runtime.DefaultConfig())
	kitWasm := kit(t)
	for _, tc := range []struct {
		name string
		wasm []byte
		cfg  runtime.ModuleConfig
		in   []byte
	}{
		{"pure arithmetic (wat)", trapkit(t), runtime.DefaultModuleConfig("tkcancel"), []byte{5}},
		{"pure arithmetic (Go)", kitWasm, kitConfig("kitcancel"), []byte("loop")},
		{"host call in the loop", kitWasm, kitConfig("kitclock"), []byte("clockloop")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.CallTimeout = 20 * time.Second // beyond the bound below: only the cancel can cut it in time
			tc.cfg.MaxConcurrency, tc.cfg.MinInstances = 1, 1
			m := started(t, e, tc.wasm, tc.cfg)
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(200*time.Millisecond, cancel)
			start := time.Now()
			_, err := m.Call(ctx, runtime.RoleHandle, tc.in, nil)
			took := time.Since(start)
			if !errors.Is(err, context.Canceled) || errors.Is(err, runtime.ErrDeadline) {
				t.Fatalf("err = %v, want context.Canceled (and not ErrDeadline)", err)
			}
			// 15 s: below the 20 s the call would otherwise run, far above a cut on a
			// loaded machine (a liveness bound, not a timing assertion).
			if took > 15*time.Second {
				t.Fatalf("the cancelled call ran %s", took)
			}
			// The cut instance is replaced; the next call is served.
			if _, err := m.Call(context.Background(), runtime.RoleHandle, []byte("bad"), nil); errors.Is(err, runtime.ErrOverloaded) || errors.Is(err, runtime.ErrNotRunning) {
				t.Fatalf("after the cut: %v", err)
			}
			if st := m.Stats(); st.Timeouts != 0 {
				t.Fatalf("a cancelled call counted as a timeout: %+v", st)
			}
		})
	}
}

// TestCancelAfterReturnKeepsResult: a context cancelled after the call returned changes
// nothing (the AfterFunc is stopped); the instance stays in the pool.
func TestCancelAfterReturnKeepsResult(t *testing.T) {
	e := newEngine(t, runtime.DefaultConfig())
	cfg := kitConfig("kitafter")
	cfg.MaxConcurrency, cfg.MinInstances = 1, 1
	m := started(t, e, kit(t), cfg)
	ctx, cancel := context.WithCancel(context.Background())
	for range 50 {
		out, err := m.Call(ctx, runtime.RoleHandle, []byte("echo:x"), nil)
		if err != nil || string(out) != "x" {
			t.Fatalf("%q %v", out, err)
		}
	}
	cancel()
	if _, err := m.Call(context.Background(), runtime.RoleHandle, []byte("echo:x"), nil); err != nil {
		t.Fatal(err)
	}
	if st := m.Stats(); st.Discards != 0 {
		t.Fatalf("instances discarded without a cut: %+v", st)
	}
}

// TestRestoreWaitsForBusySlot: Restore holds every slot, empty ones included. When one slot
// is busy at its first look it waits and looks again; the empty slots it already holds must
// not count as someone else's (slotEmpty is 0, which the hold table once also used for "not
// held"), or it waits for itself until its context ends. Found by the soak (issue 19): an
// upgrade's handover failed after 40 s and the module crash-looped.
func TestRestoreWaitsForBusySlot(t *testing.T) {
	e := newEngine(t, runtime.DefaultConfig())
	cfg := kitConfig("kitrestore")
	cfg.MaxConcurrency, cfg.MinInstances = 4, 1
	cfg.CallTimeout = 20 * time.Second
	m := started(t, e, kit(t), cfg)
	// Keep the one instance busy for 300 ms (a spinning call, cut by its cancel).
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.Call(ctx, runtime.RoleHandle, []byte("loop"), nil)
	}()
	eventually(t, "the call is running", func() bool { return m.Stats().Busy == 1 })
	rctx, rcancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer rcancel()
	if err := m.Restore(rctx, []byte("7")); err != nil {
		t.Fatalf("restore: %v", err)
	}
	<-done
}

// TestCancellableContextCostsNothing: a short guarded call (no yield, host import or sleep)
// registers nothing on its context, so a cancellable context or one with a deadline costs it
// no allocation over one that cannot be cancelled (a fan-out's shard calls always have one).
// The cancellation hook is registered only when the call's deadline is stamped (hookCancel);
// TestCancelCutsRunningCall shows the cut still happens.
func TestCancellableContextCostsNothing(t *testing.T) {
	e := newEngine(t, runtime.DefaultConfig())
	cfg := runtime.DefaultModuleConfig("cancelcost")
	cfg.MaxConcurrency, cfg.MinInstances = 1, 1
	m := started(t, e, trapkit(t), cfg)
	in := make([]byte, 256)
	dst := make([]byte, 0, 512)
	allocs := func(ctx context.Context) float64 {
		return testing.AllocsPerRun(200, func() {
			if _, err := m.Call(ctx, runtime.RoleLeaf, in, dst[:0]); err != nil {
				t.Fatal(err)
			}
		})
	}
	base := allocs(context.Background())
	cctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tctx, tcancel := context.WithTimeout(context.Background(), time.Hour)
	defer tcancel()
	nctx, ncancel := context.WithDeadline(cctx, time.Now().Add(time.Hour))
	defer ncancel()
	for _, tc := range []struct {
		name string
		ctx  context.Context
	}{
		{"WithCancel", cctx},
		{"WithTimeout", tctx},
		{"WithDeadline under WithCancel", nctx},
	} {
		if got := allocs(tc.ctx); got > base {
			t.Errorf("%s: %.1f allocations per call, want %.1f as with a context that cannot be cancelled", tc.name, got, base)
		}
	}
	if st := m.Stats(); st.Discards != 0 {
		t.Fatalf("instances discarded: %+v", st)
	}
}
