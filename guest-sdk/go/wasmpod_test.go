//go:build !wasip1

// The tests play the host through core.FakeHost, which exists only off wasip1.

package wasmpod

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/guest-sdk/go/internal/core"
)

func resetHooks() *core.FakeHost {
	hooks.start, hooks.stop, hooks.health, hooks.tick, hooks.snapshot, hooks.restore = nil, nil, nil, nil, nil, nil
	core.Host = core.NewFakeHost()
	return core.Host
}

func TestRequiredExports(t *testing.T) {
	if abiVersion() != 1 {
		t.Fatal("ABI version must be 1")
	}
	if buffer(64<<10) == 0 {
		t.Fatal("buffer(64 KiB) failed")
	}
}

func TestLifecycleDefaults(t *testing.T) {
	resetHooks()
	if start() != 0 || stop(1000) != 0 || health() != 0 || tick(1) != 0 || snapshot() != 0 {
		t.Fatal("defaults must succeed, be healthy and have an empty state")
	}
	n := core.WriteInput([]byte("ignored state"))
	if restore(n) != 0 {
		t.Fatal("default restore must accept")
	}
}

func TestLifecycleHooks(t *testing.T) {
	h := resetHooks()
	var got []string
	OnStart(func() error { got = append(got, "start"); return nil })
	OnStop(func(grace time.Duration) error { got = append(got, "stop "+grace.String()); return nil })
	OnTick(func(now time.Time) error { got = append(got, "tick "+now.UTC().Format(time.RFC3339)); return nil })
	OnSnapshot(func() ([]byte, error) { return []byte("state-42"), nil })
	var restored string
	OnRestore(func(b []byte) error { restored = string(b); return nil })
	OnHealth(func() Health { return NotReady })

	if start() != 0 || stop(1500) != 0 || tick(86_400_000) != 0 {
		t.Fatal("hooks should succeed")
	}
	want := "start|stop 1.5s|tick 1970-01-02T00:00:00Z"
	if strings.Join(got, "|") != want {
		t.Fatalf("got %q, want %q", strings.Join(got, "|"), want)
	}
	if health() != 1 {
		t.Fatal("health should be NotReady")
	}
	r := snapshot()
	if _, n := core.Unpack(r); n != 8 || string(core.Output()) != "state-42" {
		t.Fatalf("snapshot r=%#x out=%q", r, core.Output())
	}
	if restore(core.WriteInput([]byte("state-7"))) != 0 || restored != "state-7" {
		t.Fatalf("restore got %q", restored)
	}

	OnStart(func() error { return Codef(3, "no %s", "database") })
	if start() != 3 || h.LastError() != "no database" {
		t.Fatalf("failing start: %q", h.LastError())
	}
	OnRestore(func([]byte) error { return errors.New("corrupt") })
	if restore(core.WriteInput([]byte("x"))) != 1 || h.LastError() != "corrupt" {
		t.Fatal("failing restore")
	}
	OnSnapshot(func() ([]byte, error) { return nil, Code(6, errors.New("cannot save")) })
	if snapshot() != -6 {
		t.Fatal("failing snapshot")
	}
	OnHealth(func() Health { panic("sick") })
	if health() != int32(Unhealthy) {
		t.Fatal("panicking health probe should be unhealthy")
	}
	OnTick(func(time.Time) error { panic("tock") })
	if tick(0) != 1 || h.LastError() != "panic: tock" {
		t.Fatal("panicking tick")
	}
	if restore(-5) == 0 {
		t.Fatal("restore with a bad length should fail")
	}
}

func TestCode(t *testing.T) {
	base := errors.New("base")
	err := Code(42, base)
	if CodeOf(err) != 42 || !errors.Is(err, base) || err.Error() != "base" {
		t.Fatalf("Code: %v %d", err, CodeOf(err))
	}
	if CodeOf(errors.New("x")) != 1 || CodeOf(nil) != 0 || CodeOf(Code(-3, nil)) != 1 {
		t.Fatal("CodeOf defaults")
	}
}

func TestLogConfigScale(t *testing.T) {
	h := resetHooks()
	Debugf("d%d", 0)
	Infof("i%d", 1)
	Warnf("w%d", 2)
	Errorf("e%d", 3)
	Log(LevelInfo, "plain")
	want := []core.LogLine{{Level: 0, Msg: "d0"}, {Level: 1, Msg: "i1"}, {Level: 2, Msg: "w2"}, {Level: 3, Msg: "e3"}, {Level: 1, Msg: "plain"}}
	if len(h.Logs) != len(want) {
		t.Fatalf("logs: %+v", h.Logs)
	}
	for i := range want {
		if h.Logs[i] != want[i] {
			t.Fatalf("log %d: %+v, want %+v", i, h.Logs[i], want[i])
		}
	}
	h.Config["k"] = "v"
	if v, ok := Config("k"); !ok || v != "v" {
		t.Fatal("Config")
	}
	if _, ok := Config("nope"); ok {
		t.Fatal("Config of a missing key")
	}
	if n, ok := Scale(2); !ok || n != 3 {
		t.Fatalf("Scale(2) = %d, %v", n, ok)
	}
	h.ScaleAllow = false
	if _, ok := Scale(1); ok {
		t.Fatal("Scale should be refused")
	}
}

func TestMetrics(t *testing.T) {
	h := resetHooks()
	c := NewCounter("reqs_total", "requests")
	g := NewGauge("temp", "temperature")
	hi := NewHistogram("lat_seconds", "latency")
	c.Add(2)
	c.Inc()
	g.Set(-4)
	hi.Observe(0.5)
	if h.Metrics[0] != (core.Metric{Kind: 0, Name: "reqs_total", Help: "requests"}) || h.Metrics[2].Kind != 2 {
		t.Fatalf("metrics: %+v", h.Metrics)
	}
	if v := h.Values[c.id]; len(v) != 2 || v[0] != 2 || v[1] != 1 {
		t.Fatalf("counter values %v", v)
	}
	if v := h.Values[g.id]; len(v) != 1 || v[0] != -4 {
		t.Fatalf("gauge values %v", v)
	}
	if v := h.Values[hi.id]; len(v) != 1 || v[0] != 0.5 {
		t.Fatalf("histogram values %v", v)
	}
	if again := NewCounter("reqs_total", ""); again != c {
		t.Fatal("redefining finds the same metric")
	}
	for _, c := range []struct {
		name string
		code int32
		def  func()
	}{
		{"bad-name", -1, func() { NewCounter("bad-name", "") }},
		{"temp", -2, func() { NewHistogram("temp", "") }},
	} {
		func() {
			defer func() {
				me, ok := recover().(*MetricError)
				if !ok || me.Code != c.code || me.Name != c.name || !strings.Contains(me.Error(), c.name) {
					t.Errorf("%s: panic %v", c.name, me)
				}
			}()
			c.def()
		}()
	}
}
