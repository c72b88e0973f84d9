package capability

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestPodCallCancelled: when the caller of a chain goes away (its context is cancelled), the
// module it is waiting on through a pod-local call is cut too, not left spinning to its
// deadline, and so is the caller; both modules serve the next call.
func TestPodCallCancelled(t *testing.T) {
	p := newPod(t, nil, Config{MaxResponseBytes: 100_000, MaxCallDepth: 2})
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	start := time.Now()
	_, err := p.call(t, ctx, "a", "call b spin")
	took := time.Since(start)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	// 3 s: below the modules' 5 s call timeout, which is what would cut b (and then a)
	// without cancellation; far above a cut on a loaded machine.
	if took > 3*time.Second {
		t.Fatalf("the cancelled chain ran %s", took)
	}
	if st := p.mods["b"].Stats(); st.Timeouts != 0 || st.Discards == 0 {
		t.Fatalf("b was not cut by the cancel: %+v", st)
	}
	for _, m := range []string{"a", "b"} {
		if out, err := p.call(t, context.Background(), m, "echo ok"); err != nil || out != "ok" {
			t.Fatalf("%s after the cut: %q %v", m, out, err)
		}
	}
}
