//go:build !wasip1

// The tests go through the public SDK only, as a plugin author's tests would.

package wasmpodtest_test

import (
	"bytes"
	"errors"
	"fmt"
	stdnet "net"
	"slices"
	"strings"
	"testing"
	"time"

	wasmpod "github.com/wasmpod/wasmpod/guest-sdk/go"
	"github.com/wasmpod/wasmpod/guest-sdk/go/election"
	"github.com/wasmpod/wasmpod/guest-sdk/go/handler"
	"github.com/wasmpod/wasmpod/guest-sdk/go/leaf"
	"github.com/wasmpod/wasmpod/guest-sdk/go/merge"
	"github.com/wasmpod/wasmpod/guest-sdk/go/net"
	"github.com/wasmpod/wasmpod/guest-sdk/go/pod"
	"github.com/wasmpod/wasmpod/guest-sdk/go/stage"
	"github.com/wasmpod/wasmpod/guest-sdk/go/wasmpodtest"
	"github.com/wasmpod/wasmpod/guest-sdk/go/wphttp"
)

func TestConfig(t *testing.T) {
	wasmpodtest.Reset()
	long := strings.Repeat("v", 1000) // longer than the SDK's first buffer
	wasmpodtest.SetConfig("mode", "fast")
	wasmpodtest.SetConfig("long", long)
	wasmpodtest.SetConfig("empty", "")
	wasmpodtest.SetConfig("gone", "x")
	wasmpodtest.DeleteConfig("gone")
	for _, tc := range []struct {
		key, want string
		ok        bool
	}{
		{"mode", "fast", true},
		{"long", long, true},
		{"empty", "", true},
		{"gone", "", false},
		{"never", "", false},
	} {
		if v, ok := wasmpod.Config(tc.key); v != tc.want || ok != tc.ok {
			t.Errorf("Config(%q) = %.20q, %v; want %.20q, %v", tc.key, v, ok, tc.want, tc.ok)
		}
	}
	wasmpodtest.Reset()
	if _, ok := wasmpod.Config("mode"); ok {
		t.Error("Reset kept the config")
	}
}

func TestLogs(t *testing.T) {
	wasmpodtest.Reset()
	wasmpod.Debugf("d %d", 1)
	wasmpod.Infof("i %s", "two")
	wasmpod.Warnf("w")
	wasmpod.Errorf("e")
	wasmpod.Log(wasmpod.LevelInfo, "raw")
	want := []wasmpodtest.LogLine{
		{Level: wasmpod.LevelDebug, Msg: "d 1"}, {Level: wasmpod.LevelInfo, Msg: "i two"},
		{Level: wasmpod.LevelWarn, Msg: "w"}, {Level: wasmpod.LevelError, Msg: "e"},
		{Level: wasmpod.LevelInfo, Msg: "raw"},
	}
	if got := wasmpodtest.Logs(); !slices.Equal(got, want) {
		t.Fatalf("Logs = %v, want %v", got, want)
	}
	if got := wasmpodtest.TakeLogs(); !slices.Equal(got, want) {
		t.Fatalf("TakeLogs = %v, want %v", got, want)
	}
	if got := wasmpodtest.TakeLogs(); got != nil {
		t.Fatalf("TakeLogs after TakeLogs = %v, want nil", got)
	}
	wasmpod.Infof("after")
	if got := wasmpodtest.TakeLogs(); len(got) != 1 || got[0].String() != "info: after" {
		t.Fatalf("TakeLogs = %v, want [info: after]", got)
	}
	wasmpod.Infof("x")
	wasmpodtest.Reset()
	if got := wasmpodtest.Logs(); got != nil {
		t.Fatalf("Logs after Reset = %v", got)
	}
}

func TestCallLeaf(t *testing.T) {
	for _, tc := range []struct {
		name     string
		fn       func([]byte) ([]byte, error)
		in       string
		want     string
		wantCode int
		wantMsg  string
	}{
		{name: "output", fn: func(in []byte) ([]byte, error) { return append([]byte("out:"), in...), nil }, in: "in", want: "out:in"},
		{name: "output aliases input", fn: func(in []byte) ([]byte, error) { return in, nil }, in: "same", want: "same"},
		{name: "empty output", fn: func([]byte) ([]byte, error) { return nil, nil }, in: "x"},
		{name: "large input", fn: func(in []byte) ([]byte, error) { return []byte(fmt.Sprint(len(in))), nil }, in: strings.Repeat("x", 200_000), want: "200000"},
		{name: "error", fn: func([]byte) ([]byte, error) { return nil, errors.New("nope") }, wantCode: 1, wantMsg: "nope"},
		{name: "coded error", fn: func([]byte) ([]byte, error) { return nil, wasmpod.Codef(7, "bad query %q", "q") }, wantCode: 7, wantMsg: `bad query "q"`},
		{name: "panic", fn: func([]byte) ([]byte, error) { panic("boom") }, wantCode: 1, wantMsg: "panic: boom"},
		{name: "not registered", wantCode: 1, wantMsg: "wasmpod: no leaf handler registered (call leaf.Handle in an init function)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wasmpodtest.Reset()
			leaf.Handle(tc.fn)
			out, err := wasmpodtest.CallLeaf([]byte(tc.in))
			if tc.wantCode == 0 {
				if err != nil || string(out) != tc.want {
					t.Fatalf("CallLeaf = %.40q, %v; want %.40q", out, err, tc.want)
				}
				if msg, ok := wasmpodtest.TakeError(); ok {
					t.Fatalf("a successful call set the error %q", msg)
				}
				return
			}
			var ce *wasmpodtest.CallError
			if !errors.As(err, &ce) || ce.Export != "wasmpod_leaf" || ce.Code != tc.wantCode || ce.Message != tc.wantMsg || out != nil {
				t.Fatalf("CallLeaf = %q, %#v; want code %d, message %q", out, err, tc.wantCode, tc.wantMsg)
			}
			if got := wasmpod.CodeOf(err); got != tc.wantCode {
				t.Fatalf("wasmpod.CodeOf = %d, want %d", got, tc.wantCode)
			}
			if msg, ok := wasmpodtest.TakeError(); !ok || msg != tc.wantMsg {
				t.Fatalf("TakeError = %q, %v; want %q", msg, ok, tc.wantMsg)
			}
			if msg, ok := wasmpodtest.TakeError(); ok {
				t.Fatalf("second TakeError = %q, want none", msg)
			}
		})
	}
	leaf.Handle(nil)
}

// TestPanicLogsStack: a panic's stack is logged at error level, and the next call works.
func TestPanicLogsStack(t *testing.T) {
	wasmpodtest.Reset()
	leaf.Handle(func(in []byte) ([]byte, error) {
		if len(in) == 0 {
			panic(fmt.Sprintf("empty input %d", 42))
		}
		return in, nil
	})
	defer leaf.Handle(nil)
	if _, err := wasmpodtest.CallLeaf(nil); err == nil || !strings.Contains(err.Error(), "panic: empty input 42") {
		t.Fatalf("CallLeaf(nil) err = %v", err)
	}
	logs := wasmpodtest.TakeLogs()
	if len(logs) != 1 || logs[0].Level != wasmpod.LevelError || !strings.HasPrefix(logs[0].Msg, "panic: empty input 42\n") ||
		!strings.Contains(logs[0].Msg, "wasmpodtest_test") {
		t.Fatalf("logs = %q, want the panic and its stack at error level", logs)
	}
	if out, err := wasmpodtest.CallLeaf([]byte("ok")); err != nil || string(out) != "ok" {
		t.Fatalf("call after the panic = %q, %v", out, err)
	}
}

// TestOutputIsCopy: the output survives the next call (the SDK reuses its buffers).
func TestOutputIsCopy(t *testing.T) {
	wasmpodtest.Reset()
	stage.Handle(func(in []byte) ([]byte, error) { return in, nil })
	defer stage.Handle(nil)
	a, _ := wasmpodtest.CallStage([]byte("first"))
	b, _ := wasmpodtest.CallStage([]byte("SECOND"))
	if string(a) != "first" || string(b) != "SECOND" {
		t.Fatalf("outputs %q, %q", a, b)
	}
}

func TestCallHandlerAndStage(t *testing.T) {
	wasmpodtest.Reset()
	handler.Handle(func(req []byte) ([]byte, error) { return bytes.ToUpper(req), nil })
	stage.Handle(func(in []byte) ([]byte, error) { return nil, wasmpod.Code(3, nil) })
	defer handler.Handle(nil)
	defer stage.Handle(nil)
	if out, err := wasmpodtest.CallHandler([]byte("hi")); err != nil || string(out) != "HI" {
		t.Fatalf("CallHandler = %q, %v", out, err)
	}
	_, err := wasmpodtest.CallStage([]byte("x"))
	var ce *wasmpodtest.CallError
	// wasmpod.Code(3, nil) passes the message "error code 3".
	if !errors.As(err, &ce) || ce.Export != "wasmpod_stage" || ce.Code != 3 || ce.Message != "error code 3" {
		t.Fatalf("CallStage err = %#v", err)
	}
}

func TestCallMerge(t *testing.T) {
	wasmpodtest.Reset()
	merge.Handle(func(parts []merge.Part) ([]byte, error) {
		var out []byte
		for _, p := range parts {
			if p.Missing {
				out = append(out, '-')
				continue
			}
			out = append(out, p.Data...)
		}
		return out, nil
	})
	defer merge.Handle(nil)
	out, err := wasmpodtest.CallMerge([]merge.Part{{Data: []byte("a")}, {Missing: true}, {Data: []byte("bc")}, {}})
	if err != nil || string(out) != "a-bc" {
		t.Fatalf("CallMerge = %q, %v", out, err)
	}
}

func TestCallHTTP(t *testing.T) {
	wasmpodtest.Reset()
	wphttp.Handle(func(req *wphttp.Request) *wphttp.Response {
		switch req.URI {
		case "/nil":
			return nil
		case "/default":
			return &wphttp.Response{Body: []byte("default")}
		}
		h := wphttp.Headers{}
		h.Set("X-Method", req.Method)
		return &wphttp.Response{Status: 201, Header: h, Body: append([]byte(req.Header.Get("x-in")+":"), req.Body...)}
	})
	defer wphttp.Handle(nil)
	resp, err := wasmpodtest.CallHTTP(&wphttp.Request{Method: "POST", URI: "/x", Header: wphttp.Headers{{Name: "X-In", Value: "v"}}, Body: []byte("body")})
	if err != nil || resp.Status != 201 || resp.Header.Get("x-method") != "POST" || string(resp.Body) != "v:body" {
		t.Fatalf("CallHTTP = %+v, %v", resp, err)
	}
	if resp, err := wasmpodtest.CallHTTP(&wphttp.Request{Method: "GET", URI: "/default"}); err != nil || resp.Status != 200 {
		t.Fatalf("default status: %+v, %v", resp, err)
	}
	if _, err := wasmpodtest.CallHTTP(&wphttp.Request{Method: "GET", URI: "/nil"}); err == nil || !strings.Contains(err.Error(), "nil response") {
		t.Fatalf("nil response: err = %v", err)
	}
}

func TestLifecycle(t *testing.T) {
	wasmpodtest.Reset()
	t.Cleanup(func() {
		wasmpod.OnStart(nil)
		wasmpod.OnStop(nil)
		wasmpod.OnHealth(nil)
		wasmpod.OnTick(nil)
		wasmpod.OnSnapshot(nil)
		wasmpod.OnRestore(nil)
	})
	// Defaults: success, healthy, empty state.
	if err := wasmpodtest.CallStart(); err != nil {
		t.Fatal(err)
	}
	if s, err := wasmpodtest.CallSnapshot(); s != nil || err != nil || wasmpodtest.CallHealth() != wasmpod.Healthy {
		t.Fatalf("defaults: snapshot %q, %v", s, err)
	}

	var got []string
	var state string
	wasmpod.OnStart(func() error { return wasmpod.Codef(4, "no config") })
	wasmpod.OnStop(func(grace time.Duration) error { got = append(got, "stop "+grace.String()); return nil })
	wasmpod.OnTick(func(now time.Time) error { got = append(got, "tick "+now.UTC().Format(time.RFC3339)); return nil })
	wasmpod.OnHealth(func() wasmpod.Health { panic("sick") })
	wasmpod.OnSnapshot(func() ([]byte, error) { return []byte("state:" + state), nil })
	wasmpod.OnRestore(func(b []byte) error { state = string(b); return nil })

	var ce *wasmpodtest.CallError
	if err := wasmpodtest.CallStart(); !errors.As(err, &ce) || ce.Export != "wasmpod_start" || ce.Code != 4 || ce.Message != "no config" {
		t.Fatalf("CallStart = %#v", err)
	}
	if err := wasmpodtest.CallStop(1500 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if err := wasmpodtest.CallTick(time.Unix(86400, 0)); err != nil {
		t.Fatal(err)
	}
	if want := "stop 1.5s|tick 1970-01-02T00:00:00Z"; strings.Join(got, "|") != want {
		t.Fatalf("hooks ran %q, want %q", strings.Join(got, "|"), want)
	}
	if h := wasmpodtest.CallHealth(); h != wasmpod.Unhealthy {
		t.Fatalf("a panicking probe reported %d", h)
	}
	if err := wasmpodtest.CallRestore([]byte("42")); err != nil || state != "42" {
		t.Fatalf("CallRestore: %v, state %q", err, state)
	}
	if s, err := wasmpodtest.CallSnapshot(); err != nil || string(s) != "state:42" {
		t.Fatalf("CallSnapshot = %q, %v", s, err)
	}
}

func TestMetrics(t *testing.T) {
	wasmpodtest.Reset()
	c := wasmpod.NewCounter("wt_requests_total", "Requests.")
	g := wasmpod.NewGauge("wt_queue", "Queue length.")
	h := wasmpod.NewHistogram("wt_seconds", "Latency.")
	c.Inc()
	c.Add(2.5)
	g.Set(7)
	g.Set(3)
	h.Observe(0.25)
	for _, tc := range []struct {
		name string
		want []float64
	}{
		{"wt_requests_total", []float64{1, 2.5}},
		{"wt_queue", []float64{7, 3}},
		{"wt_seconds", []float64{0.25}},
		{"wt_undefined", nil},
	} {
		if got := wasmpodtest.MetricValues(tc.name); !slices.Equal(got, tc.want) {
			t.Errorf("MetricValues(%q) = %v, want %v", tc.name, got, tc.want)
		}
	}
	var kinds []string
	for _, m := range wasmpodtest.Metrics() {
		kinds = append(kinds, m.Name+"/"+m.Kind+"/"+m.Help)
	}
	if want := "wt_requests_total/counter/Requests.,wt_queue/gauge/Queue length.,wt_seconds/histogram/Latency."; strings.Join(kinds, ",") != want {
		t.Errorf("Metrics = %s, want %s", strings.Join(kinds, ","), want)
	}

	// Reset forgets the values but keeps the definitions, so the plugin's ids stay good.
	wasmpodtest.Reset()
	if got := wasmpodtest.MetricValues("wt_requests_total"); got != nil {
		t.Fatalf("values after Reset: %v", got)
	}
	c.Inc()
	if got := wasmpodtest.MetricValues("wt_requests_total"); !slices.Equal(got, []float64{1}) {
		t.Fatalf("a counter defined before Reset recorded %v", got)
	}

	// A definition the host refuses panics with *wasmpod.MetricError, as on the real host.
	defer func() {
		var me *wasmpod.MetricError
		if err, _ := recover().(error); !errors.As(err, &me) || me.Code != -2 {
			t.Fatalf("kind clash: recovered %v", err)
		}
	}()
	wasmpod.NewGauge("wt_requests_total", "")
}

func TestScale(t *testing.T) {
	wasmpodtest.Reset()
	if n, ok := wasmpodtest.Pool(); n != 1 || !ok {
		t.Fatalf("Pool after Reset = %d, %v", n, ok)
	}
	wasmpodtest.SetPool(4, true)
	for _, tc := range []struct {
		delta, want int
	}{{2, 6}, {-1, 5}, {-10, 0}} {
		if n, ok := wasmpod.Scale(tc.delta); n != tc.want || !ok {
			t.Fatalf("Scale(%d) = %d, %v; want %d", tc.delta, n, ok, tc.want)
		}
	}
	if n, _ := wasmpodtest.Pool(); n != 0 {
		t.Fatalf("Pool = %d, want 0", n)
	}
	wasmpodtest.SetPool(3, false)
	if n, ok := wasmpod.Scale(1); ok || n != 0 {
		t.Fatalf("Scale when not scalable = %d, %v", n, ok)
	}
	if n, ok := wasmpodtest.Pool(); n != 3 || ok {
		t.Fatalf("Pool = %d, %v; want 3, false", n, ok)
	}
	wasmpodtest.Reset()
	if n, ok := wasmpod.Scale(1); n != 2 || !ok {
		t.Fatalf("Scale(1) after Reset = %d, %v; want 2, true", n, ok)
	}
}

func TestHandleCall(t *testing.T) {
	wasmpodtest.Reset()
	wasmpodtest.HandleCall("cache", func(in []byte) ([]byte, error) { return append([]byte("hit:"), in...), nil })
	wasmpodtest.HandleCall("db", func([]byte) ([]byte, error) { return nil, errors.New("down") })
	wasmpodtest.HandleCall("removed", func([]byte) ([]byte, error) { return nil, nil })
	wasmpodtest.HandleCall("removed", nil)
	for _, tc := range []struct {
		target, want string
		wantErr      error
	}{
		{"cache", "hit:k", nil},
		{"db", "", pod.ErrFailed},
		{"removed", "", pod.ErrNoModule},
		{"main", "", pod.ErrNotAllowed}, // a module may not call itself
	} {
		out, err := pod.Call(tc.target, []byte("k"))
		if string(out) != tc.want || !errors.Is(err, tc.wantErr) {
			t.Errorf("pod.Call(%q) = %q, %v; want %q, %v", tc.target, out, err, tc.want, tc.wantErr)
		}
	}
	if got := strings.Join(wasmpodtest.PodCalls(), ","); got != "cache,db,removed,main" {
		t.Errorf("PodCalls = %s", got)
	}
	wasmpodtest.Reset()
	if _, err := pod.Call("cache", nil); !errors.Is(err, pod.ErrNoModule) || len(wasmpodtest.PodCalls()) != 1 {
		t.Errorf("after Reset: %v, calls %v", err, wasmpodtest.PodCalls())
	}
}

// TestResetNet: Reset closes net.Host's connections and forgets its allowlist.
func TestResetNet(t *testing.T) {
	ln, err := stdnet.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().String()
	wasmpodtest.Reset()
	net.Host.Allow = []string{addr}
	c, err := net.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	old := net.Host
	wasmpodtest.Reset()
	if old.Open() != 0 {
		t.Fatalf("Reset left %d connections open", old.Open())
	}
	if _, err := c.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write on a connection from before Reset: %v", err)
	}
	if _, err := net.Dial(addr); !errors.Is(err, net.ErrNotAllowed) {
		t.Fatalf("Dial after Reset: %v", err)
	}
}

// TestResetElection: Reset gives election.Host back its defaults.
func TestResetElection(t *testing.T) {
	wasmpodtest.Reset()
	election.Host.Grant("job", "other/module")
	if _, err := election.Campaign("job", 0); !errors.Is(err, election.ErrNotLeader) {
		t.Fatalf("Campaign against another holder: %v", err)
	}
	wasmpodtest.Reset()
	if l, err := election.Campaign("job", 0); err != nil || l.Session != "pod/module" {
		t.Fatalf("Campaign after Reset: %+v, %v", l, err)
	}
}
