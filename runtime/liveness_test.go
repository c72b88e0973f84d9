package runtime_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/runtime"
)

func TestLiveSnapshotAndRestore(t *testing.T) {
	e := newEngine(t, runtime.DefaultConfig())
	ctx := context.Background()
	mc := kitConfig("live")
	mc.MaxConcurrency = 2
	mc.MinInstances = 2
	m := started(t, e, kit(t), mc)
	cmd(t, m, "inc")
	state, err := m.Snapshot(ctx)
	if err != nil || (string(state) != "1" && string(state) != "0") {
		t.Fatalf("snapshot: %q %v", state, err)
	}
	if err := m.Restore(ctx, []byte("41")); err != nil {
		t.Fatal(err)
	}
	// Every instance got the state: two concurrent calls, one per instance, both see 41.
	got := make(chan string, 2)
	for range 2 {
		go func() {
			out, err := m.Call(ctx, runtime.RoleHandle, []byte("state"), nil)
			if err != nil {
				got <- err.Error()
				return
			}
			got <- string(out)
		}()
	}
	for range 2 {
		if s := <-got; s != "41" {
			t.Fatalf("after restore an instance has state %q", s)
		}
	}
	// A refused state is reported and the refusing instances are replaced.
	err = m.Restore(ctx, []byte("not a number"))
	if err == nil || !strings.Contains(err.Error(), "bad state") {
		t.Fatalf("restore of a bad state: %v", err)
	}
	eventually(t, "refused instances replaced", func() bool { return m.Stats().Instances == 2 })
	if out := cmd(t, m, "echo:ok"); out != "ok" {
		t.Fatal(out)
	}
	// Modules without the exports say so.
	tk := started(t, e, trapkit(t), runtime.DefaultModuleConfig("nostate"))
	if _, err := tk.Snapshot(ctx); !errors.Is(err, runtime.ErrNoExport) {
		t.Fatalf("snapshot without export: %v", err)
	}
	if err := tk.Restore(ctx, nil); !errors.Is(err, runtime.ErrNoExport) {
		t.Fatalf("restore without export: %v", err)
	}
}

func TestYieldSchedulerHook(t *testing.T) {
	e := newEngine(t, runtime.DefaultConfig())
	var yields atomic.Int64
	gate := make(chan struct{})
	cfg := runtime.DefaultModuleConfig("scavenger")
	cfg.CallTimeout = 500 * time.Millisecond
	cfg.YieldInterval = 1000
	cfg.Yield = func(ctx context.Context, cut <-chan struct{}) {
		yields.Add(1)
		select { // a scheduler holding low-priority work back until the gate opens
		case <-gate:
		case <-cut:
		}
	}
	m := started(t, e, trapkit(t), cfg)
	// The looping call blocks in Yield; its deadline still cuts it there.
	if _, err := m.Call(context.Background(), runtime.RoleHandle, []byte{5}, nil); !errors.Is(err, runtime.ErrDeadline) {
		t.Fatalf("loop held in Yield: %v", err)
	}
	if yields.Load() == 0 {
		t.Fatal("Yield was never called")
	}
	close(gate)
	// With the gate open the guest yields every 1000 iterations until cut.
	before := yields.Load()
	if _, err := m.Call(context.Background(), runtime.RoleHandle, []byte{5}, nil); !errors.Is(err, runtime.ErrDeadline) {
		t.Fatalf("loop: %v", err)
	}
	if n := yields.Load() - before; n < 10 {
		t.Fatalf("only %d yields in a 500 ms loop at one per 1000 iterations", n)
	}
}

func TestScaleBounds(t *testing.T) {
	e := newEngine(t, runtime.DefaultConfig())
	mc := kitConfig("bounded")
	mc.MaxConcurrency = 8
	mc.AllowScale = true
	mc.ScaleMin, mc.ScaleMax = 2, 3
	m := started(t, e, kit(t), mc)
	if got := cmd(t, m, "scale:10"); got != "3" {
		t.Fatalf("scale up capped at ScaleMax: %s", got)
	}
	if got := cmd(t, m, "scale:-10"); got != "2" {
		t.Fatalf("scale down floored at ScaleMin: %s", got)
	}
	bad := kitConfig("badbounds")
	bad.ScaleMin, bad.ScaleMax = 3, 2
	if _, err := e.Load(context.Background(), kit(t), bad); !errors.Is(err, runtime.ErrInvalidModule) {
		t.Fatalf("min > max: %v", err)
	}
}

func TestStateAndLevelJSON(t *testing.T) {
	for _, s := range runtime.States() {
		b, _ := json.Marshal(s)
		var back runtime.State
		if err := json.Unmarshal(b, &back); err != nil || back != s {
			t.Fatalf("state %s: %s -> %v %v", s, b, back, err)
		}
	}
	for _, l := range []runtime.Level{runtime.LevelDebug, runtime.LevelInfo, runtime.LevelWarn, runtime.LevelError} {
		b, _ := json.Marshal(l)
		var back runtime.Level
		if err := json.Unmarshal(b, &back); err != nil || back != l {
			t.Fatalf("level %s: %s -> %v %v", l, b, back, err)
		}
	}
	var s runtime.State
	if err := json.Unmarshal([]byte(`"sleeping"`), &s); err == nil {
		t.Fatal("unknown state accepted")
	}
}
