package runtime

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/internal/wasmbuild"
)

// cancelledLate is a cancelled context that reports no error the first time it is asked: a
// guarded call passes its start check with it, as if its caller went away between that check
// and the guest's first yield.
type cancelledLate struct {
	context.Context
	asked atomic.Bool
}

func (c *cancelledLate) Err() error {
	if c.asked.CompareAndSwap(false, true) {
		return nil
	}
	return c.Context.Err()
}

func cancelInstance(t *testing.T) *instance {
	t.Helper()
	e := imageEngine(t, Config{DisableImages: true})
	cfg := DefaultModuleConfig("cancelhook")
	cfg.CallTimeout = 20 * time.Second // beyond the bound below: only the cancel can cut in time
	m, err := e.Load(context.Background(), readTestFile(t, wasmbuild.WAT(t, "testdata/trapkit.wat")), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(context.Background()) })
	inst, err := m.newInstance(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { inst.close(context.Background()) })
	return inst
}

// TestCancelHookLazy: the cancellation hook is registered when the call's deadline is stamped
// (hookCancel), and still cuts every call that runs: one cancelled before the guest's first
// yield (pure arithmetic, no host call) is cut by that yield; a call that ended before any
// stamp registered nothing, and the hook of a call that ended never cuts the instance later.
func TestCancelHookLazy(t *testing.T) {
	t.Run("cancelled before the first yield", func(t *testing.T) {
		inst := cancelInstance(t)
		inner, cancel := context.WithCancel(context.Background())
		cancel()
		start := time.Now()
		_, err := inst.invoke(&cancelledLate{Context: inner}, int(RoleHandle), []byte{5}, nil, false, nil)
		if !errors.Is(err, context.Canceled) || errors.Is(err, ErrDeadline) {
			t.Fatalf("err = %v, want context.Canceled (and not ErrDeadline)", err)
		}
		if !inst.dead() {
			t.Fatal("the cut instance is not retired")
		}
		// A liveness bound far below the 20 s call timeout, not a timing assertion.
		if took := time.Since(start); took > 15*time.Second {
			t.Fatalf("the cancelled call ran %s", took)
		}
	})
	t.Run("no stamp, no hook", func(t *testing.T) {
		inst := cancelInstance(t)
		ctx, cancel := context.WithCancel(context.Background())
		inst.armLazy(ctx, time.Minute)
		if inst.unhook != nil {
			t.Fatal("a hook was registered before the deadline was stamped")
		}
		inst.disarm()
		cancel()
		if inst.dead() {
			t.Fatal("a cancel after the call cut the instance")
		}
	})
	t.Run("hook of an ended call", func(t *testing.T) {
		inst := cancelInstance(t)
		ctx, cancel := context.WithCancel(context.Background())
		inst.armLazy(ctx, time.Minute)
		inst.stamp()
		if inst.unhook == nil {
			t.Fatal("no hook registered at the stamp")
		}
		inst.disarm()
		cancel()
		if inst.dead() || inst.unhook != nil {
			t.Fatal("the hook of an ended call cut the instance")
		}
	})
	t.Run("cancelled after the stamp", func(t *testing.T) {
		inst := cancelInstance(t)
		ctx, cancel := context.WithCancel(context.Background())
		inst.armLazy(ctx, time.Minute)
		if inst.yielded() {
			t.Fatal("cut before the cancel")
		}
		cancel()
		select {
		case <-inst.done:
		case <-time.After(15 * time.Second):
			t.Fatal("the hook did not expire the instance")
		}
		if !inst.yielded() || !inst.cancelled.Load() {
			t.Fatal("the next yield does not cut the cancelled call")
		}
		inst.disarm()
	})
}
