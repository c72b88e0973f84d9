package runtime_test

import (
	"context"
	"encoding/binary"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/runtime"
)

func kitConfig(name string) runtime.ModuleConfig {
	cfg := runtime.DefaultModuleConfig(name)
	cfg.MaxMemoryPages = 1024 // Go guests need a few MiB of heap
	return cfg
}

func cmd(t *testing.T, m *runtime.Module, c string) string {
	t.Helper()
	out, err := m.Call(context.Background(), runtime.RoleHandle, []byte(c), nil)
	if err != nil {
		t.Fatalf("%s: %v", c, err)
	}
	return string(out)
}

func TestGoGuestRolesAndImports(t *testing.T) {
	logs := &logRecorder{}
	cfg := runtime.DefaultConfig()
	cfg.Logs = logs
	e := newEngine(t, cfg)
	mc := kitConfig("kit")
	mc.Config = map[string]string{"greeting": "hello"}
	m := started(t, e, kit(t), mc)
	ctx := context.Background()

	info := m.Info()
	if strings.Join(info.Roles, ",") != "handle,leaf,merge,http,stage" {
		t.Fatalf("roles %v", info.Roles)
	}
	if strings.Join(info.Lifecycle, ",") != "start,stop,health,tick,snapshot,restore" {
		t.Fatalf("lifecycle %v", info.Lifecycle)
	}

	t.Run("config", func(t *testing.T) {
		if got := cmd(t, m, "config:greeting"); got != "hello" {
			t.Fatalf("config: %q", got)
		}
		_, err := m.Call(ctx, runtime.RoleHandle, []byte("config:nope"), nil)
		var ge *runtime.GuestError
		if !errors.As(err, &ge) || ge.Code != 4 {
			t.Fatalf("missing key: %v", err)
		}
	})
	t.Run("guest error with message", func(t *testing.T) {
		_, err := m.Call(ctx, runtime.RoleHandle, []byte("fail:it broke"), nil)
		var ge *runtime.GuestError
		if !errors.As(err, &ge) || ge.Code != 7 || ge.Message != "it broke" {
			t.Fatalf("fail: %v", err)
		}
	})
	t.Run("panic is a failed call, not a lost instance", func(t *testing.T) {
		before := m.Stats().Discards
		_, err := m.Call(ctx, runtime.RoleHandle, []byte("panic:oops"), nil)
		if !errors.Is(err, runtime.ErrGuest) || !strings.Contains(err.Error(), "oops") {
			t.Fatalf("panic: %v", err)
		}
		if m.Stats().Discards != before {
			t.Fatal("a recovered panic discarded the instance")
		}
	})
	t.Run("exit is contained", func(t *testing.T) {
		_, err := m.Call(ctx, runtime.RoleHandle, []byte("exit:3"), nil)
		var te *runtime.TrapError
		if !errors.As(err, &te) || te.Kind != "exit" || te.ExitCode != 3 {
			t.Fatalf("exit: %v", err)
		}
		if got := cmd(t, m, "echo:still here"); got != "still here" {
			t.Fatal(got)
		}
	})
	t.Run("logs", func(t *testing.T) {
		cmd(t, m, "log:line one")
		for _, src := range []string{"guest", "stdout", "stderr"} {
			if !logs.find(src, "line one") {
				t.Errorf("no %s log line", src)
			}
		}
	})
	t.Run("guest metrics", func(t *testing.T) {
		cmd(t, m, "metric:2")
		cmd(t, m, "metric:3")
		got := map[string]runtime.GuestMetric{}
		for _, g := range m.GuestMetrics() {
			got[g.Name] = g
		}
		if c := got["kit_ops_total"]; c.Kind != runtime.Counter || c.Value != 5 {
			t.Fatalf("counter %+v", c)
		}
		if g := got["kit_last"]; g.Kind != runtime.Gauge || g.Value != 3 {
			t.Fatalf("gauge %+v", g)
		}
		if h := got["kit_value"]; h.Kind != runtime.HistogramKind || h.Histogram.Count != 2 || h.Histogram.Sum != 5 {
			t.Fatalf("histogram %+v", h.Histogram)
		}
	})
	t.Run("leaf", func(t *testing.T) {
		in := make([]byte, 256)
		var want uint64
		for i := range in {
			in[i] = byte(i * 7)
			want += uint64(in[i])
		}
		out, err := m.Call(ctx, runtime.RoleLeaf, in, nil)
		if err != nil || len(out) != 8 || binary.LittleEndian.Uint64(out) != want {
			t.Fatalf("leaf: %x %v (want %d)", out, err, want)
		}
	})
	t.Run("merge with a missing part", func(t *testing.T) {
		out, err := m.Merge(ctx, []runtime.Part{{Data: []byte("a")}, {Missing: true}, {Data: []byte("c")}}, nil)
		if err != nil || string(out) != "missing=1\na\nc" {
			t.Fatalf("merge: %q %v", out, err)
		}
		out, err = m.Merge(ctx, []runtime.Part{{Data: []byte("x")}, {Data: []byte{}}}, nil)
		if err != nil || string(out) != "x\n" {
			t.Fatalf("merge: %q %v", out, err)
		}
	})
	t.Run("large input grows the buffer", func(t *testing.T) {
		big := strings.Repeat("z", 300<<10)
		if got := cmd(t, m, "echo:"+big); got != big {
			t.Fatalf("echo of %d bytes came back as %d", len(big), len(got))
		}
	})
	t.Run("output appends to dst", func(t *testing.T) {
		out, err := m.Call(ctx, runtime.RoleHandle, []byte("echo:b"), []byte("a"))
		if err != nil || string(out) != "ab" {
			t.Fatalf("%q %v", out, err)
		}
	})
	t.Run("role not exported", func(t *testing.T) {
		tk := started(t, e, trapkit(t), runtime.DefaultModuleConfig("tk"))
		if _, err := tk.Call(ctx, runtime.RoleStage, nil, nil); !errors.Is(err, runtime.ErrNoExport) {
			t.Fatalf("stage on trapkit: %v", err)
		}
	})
}

func TestGoGuestRunawayLoopIsCut(t *testing.T) {
	e := newEngine(t, runtime.DefaultConfig())
	mc := kitConfig("kitloop")
	mc.CallTimeout = time.Second // the echo after the cut runs on a fresh instance: a margin under -race
	m := started(t, e, kit(t), mc)
	if _, err := m.Call(context.Background(), runtime.RoleHandle, []byte("loop"), nil); !errors.Is(err, runtime.ErrDeadline) {
		t.Fatalf("loop: %v", err)
	}
	if got := cmd(t, m, "echo:ok"); got != "ok" {
		t.Fatal(got)
	}
}

func TestGoGuestMemoryLimit(t *testing.T) {
	e := newEngine(t, runtime.DefaultConfig())
	mc := kitConfig("kitmem")
	mc.MaxMemoryPages = 512 // 32 MiB
	m := started(t, e, kit(t), mc)
	cmd(t, m, "alloc:4")
	// The Go runtime cannot get the memory it needs and aborts: the call fails, the host lives.
	_, err := m.Call(context.Background(), runtime.RoleHandle, []byte("alloc:64"), nil)
	if err == nil {
		t.Fatal("allocating 64 MiB under a 32 MiB limit succeeded")
	}
	if s := m.Stats(); s.MemoryPages > 512*uint64(s.Instances) {
		t.Fatalf("memory pages %d over the limit", s.MemoryPages)
	}
	if got := cmd(t, m, "echo:alive"); got != "alive" {
		t.Fatal(got)
	}
}

func TestLifecycleExports(t *testing.T) {
	logs := &logRecorder{}
	cfg := runtime.DefaultConfig()
	cfg.Logs = logs
	e := newEngine(t, cfg)
	ctx := context.Background()

	t.Run("start, snapshot, stop, restore", func(t *testing.T) {
		mc := kitConfig("stateful")
		mc.MaxConcurrency = 1
		m, err := e.Load(ctx, kit(t), mc)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Start(ctx, runtime.StartOptions{}); err != nil {
			t.Fatal(err)
		}
		if got := cmd(t, m, "started"); got != "1" {
			t.Fatalf("start ran %s times", got)
		}
		cmd(t, m, "inc")
		cmd(t, m, "inc")
		var saved []byte
		// A far grace: the stop export must see what is left of it after the snapshot, which a
		// 1 s grace could leave at 0 under -race on a busy machine.
		err = m.Stop(ctx, runtime.StopOptions{Grace: 10 * time.Second, Snapshot: func(b []byte) error { saved = b; return nil }})
		if err != nil {
			t.Fatal(err)
		}
		if string(saved) != "2" {
			t.Fatalf("snapshot %q, want 2", saved)
		}
		found := false
		logs.mu.Lock()
		for _, l := range logs.lines {
			if l.Module == "stateful" && strings.HasPrefix(l.Message, "stopping grace=") {
				ms, _ := strconv.Atoi(strings.TrimPrefix(l.Message, "stopping grace="))
				found = ms > 0 && ms <= 10000
			}
		}
		logs.mu.Unlock()
		if !found {
			t.Fatal("stop export did not run with the remaining grace")
		}

		m2, err := e.Load(ctx, kit(t), mc)
		if err != nil {
			t.Fatal(err)
		}
		defer m2.Close(ctx)
		if err := m2.Start(ctx, runtime.StartOptions{State: saved}); err != nil {
			t.Fatal(err)
		}
		if got := cmd(t, m2, "state"); got != "2" {
			t.Fatalf("restored state %s", got)
		}
	})
	t.Run("restore refuses bad state", func(t *testing.T) {
		m, err := e.Load(ctx, kit(t), kitConfig("badstate"))
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close(ctx)
		err = m.Start(ctx, runtime.StartOptions{State: []byte("not a number")})
		if err == nil || !strings.Contains(err.Error(), "bad state") || m.State() != runtime.StateFailed {
			t.Fatalf("start with bad state: %v (%s)", err, m.State())
		}
	})
	t.Run("health", func(t *testing.T) {
		for _, tc := range []struct {
			config string
			want   runtime.Health
		}{{"", runtime.Ready}, {"ready", runtime.Ready}, {"notready", runtime.NotReady}, {"unhealthy", runtime.Unhealthy}} {
			mc := kitConfig("health-" + tc.config)
			mc.Config = map[string]string{"health": tc.config}
			m := started(t, e, kit(t), mc)
			h, err := m.Health(ctx)
			if err != nil || h != tc.want {
				t.Fatalf("health %q: %s %v", tc.config, h, err)
			}
		}
	})
	t.Run("tick", func(t *testing.T) {
		mc := kitConfig("ticker")
		mc.MaxConcurrency = 1
		m := started(t, e, kit(t), mc)
		for range 3 {
			if err := m.Tick(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if n, _ := strconv.Atoi(cmd(t, m, "ticks")); n != 3 {
			t.Fatalf("%d ticks counted by the guest, want 3", n)
		}
	})
	t.Run("scale import", func(t *testing.T) {
		mc := kitConfig("scaler")
		mc.MaxConcurrency = 4
		mc.AllowScale = true
		m := started(t, e, kit(t), mc)
		if got := cmd(t, m, "scale:2"); got != "3" {
			t.Fatalf("scale +2 from 1: %s", got)
		}
		eventually(t, "pool grows to 3", func() bool { return m.Stats().Instances == 3 })
		if got := cmd(t, m, "scale:10"); got != "4" {
			t.Fatalf("scale is not capped at MaxConcurrency: %s", got)
		}
		if got := cmd(t, m, "scale:-10"); got != "1" {
			t.Fatalf("scale is not floored at MinInstances: %s", got)
		}
		eventually(t, "pool shrinks to 1", func() bool { return m.Stats().Instances == 1 })

		denied := started(t, e, kit(t), kitConfig("noscale"))
		if got := cmd(t, denied, "scale:1"); got != "-1" {
			t.Fatalf("scale without permission: %s", got)
		}
	})
}
