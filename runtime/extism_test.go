package runtime_test

import (
	"context"
	"encoding/binary"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/internal/wasmbuild"
	"github.com/wasmpod/wasmpod/runtime"
)

// extismGo is plugins/extism-go, built with extism go-pdk.
func extismGo(t testing.TB) []byte { return readFile(t, wasmbuild.Go(t, "../plugins/extism-go")) }

// extismAS is plugins/extism-as, built with @extism/as-pdk.
func extismAS(t testing.TB) []byte {
	return readFile(t, wasmbuild.ExtismAssemblyScript(t, "../plugins/extism-as"))
}

func extismConfig(name string) runtime.ModuleConfig {
	cfg := runtime.DefaultModuleConfig(name)
	cfg.ABI = runtime.ABIExtism
	cfg.MaxMemoryPages = 1024 // Go guests need a few MiB of heap
	return cfg
}

func sumLE(in []byte) []byte {
	var s uint64
	for _, b := range in {
		s += uint64(b)
	}
	return binary.LittleEndian.AppendUint64(nil, s)
}

func TestExtismPlugins(t *testing.T) {
	plugins := []struct {
		name  string
		build func(testing.TB) []byte
	}{
		{"go-pdk", extismGo},
		{"as-pdk", extismAS},
	}
	for _, p := range plugins {
		t.Run(p.name, func(t *testing.T) {
			logs := &logRecorder{}
			cfg := runtime.DefaultConfig()
			cfg.Logs = logs
			e := newEngine(t, cfg)
			mc := extismConfig("ext-" + p.name)
			mc.Config = map[string]string{"greeting": "hello from the pod spec"}
			m := started(t, e, p.build(t), mc)
			ctx := context.Background()

			if got := strings.Join(m.Info().Roles, ","); got != "handle,leaf,merge" {
				t.Fatalf("roles %s", got)
			}
			if len(m.Info().Lifecycle) != 0 {
				t.Fatalf("lifecycle %v", m.Info().Lifecycle)
			}
			for _, tc := range []struct {
				name string
				in   []byte
			}{{"empty", nil}, {"256", input256()}, {"1MiB", make([]byte, 1<<20)}} {
				out, err := m.Call(ctx, runtime.RoleLeaf, tc.in, nil)
				if err != nil || string(out) != string(sumLE(tc.in)) {
					t.Fatalf("leaf %s: %x %v", tc.name, out, err)
				}
			}
			out, err := m.Merge(ctx, []runtime.Part{{Data: []byte("a")}, {Missing: true}, {Data: []byte("c")}}, nil)
			if err != nil || string(out) != "missing=1\na\nc" {
				t.Fatalf("merge: %q %v", out, err)
			}
			out, err = m.Call(ctx, runtime.RoleMerge, []byte{1, 0, 0, 0, 9, 0, 0, 0}, nil)
			if !errors.Is(err, runtime.ErrGuest) {
				t.Fatalf("malformed merge input: %q %v", out, err)
			}
			if got := extCmd(t, m, "config:greeting"); got != "hello from the pod spec" {
				t.Fatalf("config: %q", got)
			}
			_, err = m.Call(ctx, runtime.RoleHandle, []byte("fail:it broke"), nil)
			var ge *runtime.GuestError
			if !errors.As(err, &ge) || ge.Code != 7 || ge.Message != "it broke" {
				t.Fatalf("fail: %v", err)
			}
			extCmd(t, m, "log:a guest line")
			if !logs.find("guest", "a guest line") {
				t.Fatal("the guest's log line did not reach the sink")
			}
			out, err = m.Call(ctx, runtime.RoleHandle, []byte("echo:b"), []byte("a"))
			if err != nil || string(out) != "ab" {
				t.Fatalf("output must append to dst: %q %v", out, err)
			}
			st := m.Stats()
			if st.Errors != 2 || st.GuestErrors != 2 || st.Discards != 0 || st.MemoryPages == 0 || st.Instantiations == 0 {
				t.Fatalf("stats %+v", st)
			}
			if h, err := m.Health(ctx); h != runtime.Ready || err != nil {
				t.Fatalf("health %s %v", h, err)
			}
			if err := m.Stop(ctx, runtime.StopOptions{Grace: time.Second}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func extCmd(t *testing.T, m *runtime.Module, c string) string {
	t.Helper()
	out, err := m.Call(context.Background(), runtime.RoleHandle, []byte(c), nil)
	if err != nil {
		t.Fatalf("%s: %v", c, err)
	}
	return string(out)
}

func input256() []byte {
	b := make([]byte, 256)
	for i := range b {
		b[i] = byte(i * 31)
	}
	return b
}

func TestExtismABISelection(t *testing.T) {
	e := newEngine(t, runtime.DefaultConfig())
	ctx := context.Background()
	wasm := extismGo(t)

	if a, err := runtime.DetectABI(wasm); err != nil || a != runtime.ABIExtism {
		t.Fatalf("DetectABI(extism-go) = %s, %v", a, err)
	}
	if a, err := runtime.DetectABI(kit(t)); err != nil || a != runtime.ABINative {
		t.Fatalf("DetectABI(kit) = %s, %v", a, err)
	}
	if _, err := runtime.DetectABI([]byte("\x00asm\x01\x00\x00\x00")); !errors.Is(err, runtime.ErrUnknownABI) {
		t.Fatalf("DetectABI(empty module): %v", err)
	}
	if _, err := runtime.DetectABI([]byte("nope")); !errors.Is(err, runtime.ErrInvalidModule) {
		t.Fatalf("DetectABI(garbage): %v", err)
	}

	native := extismConfig("as-native")
	native.ABI = runtime.ABINative
	if _, err := e.Load(ctx, wasm, native); !errors.Is(err, runtime.ErrInvalidModule) || !strings.Contains(err.Error(), "Extism") {
		t.Fatalf("native load of an Extism plugin: %v", err)
	}
	auto := extismConfig("auto")
	auto.ABI = runtime.ABIAuto
	m := started(t, e, wasm, auto)
	if m.Config().ABI != runtime.ABIExtism {
		t.Fatalf("auto resolved to %s", m.Config().ABI)
	}

	mapped := extismConfig("mapped")
	mapped.ExtismFunctions = map[runtime.Role]string{runtime.RoleHandle: "noop", runtime.RoleStage: "leaf"}
	m = started(t, e, wasm, mapped)
	if out, err := m.Call(ctx, runtime.RoleHandle, []byte("echo:x"), nil); err != nil || len(out) != 0 {
		t.Fatalf("handle mapped to noop: %q %v", out, err)
	}
	if out, err := m.Call(ctx, runtime.RoleStage, []byte{1, 2}, nil); err != nil || string(out) != string(sumLE([]byte{1, 2})) {
		t.Fatalf("stage mapped to leaf: %x %v", out, err)
	}
	if _, err := m.Call(ctx, runtime.RoleHTTP, nil, nil); !errors.Is(err, runtime.ErrNoExport) {
		t.Fatalf("unexported role: %v", err)
	}

	for _, tc := range []struct {
		name   string
		mutate func(*runtime.ModuleConfig)
		want   error
	}{
		{"mapped to a missing function", func(c *runtime.ModuleConfig) {
			c.ExtismFunctions = map[runtime.Role]string{runtime.RoleLeaf: "nope"}
		}, runtime.ErrNoExport},
		{"memory limit below the declared minimum", func(c *runtime.ModuleConfig) { c.MaxMemoryPages = 1 }, runtime.ErrMemoryLimit},
		{"bad allowed host", func(c *runtime.ModuleConfig) { c.AllowedHosts = []string{"http://x/"} }, runtime.ErrInvalidModule},
	} {
		c := extismConfig("bad")
		tc.mutate(&c)
		if _, err := e.Load(ctx, wasm, c); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestExtismDeadline(t *testing.T) {
	e := newEngine(t, runtime.DefaultConfig())
	mc := extismConfig("spin")
	mc.CallTimeout = time.Second // the echo after the cut runs on a fresh instance: a margin under -race
	m := started(t, e, extismGo(t), mc)
	if _, err := m.Call(context.Background(), runtime.RoleHandle, []byte("spin"), nil); !errors.Is(err, runtime.ErrDeadline) {
		t.Fatalf("spin: %v", err)
	}
	if got := extCmd(t, m, "echo:alive"); got != "alive" {
		t.Fatal(got)
	}
	if s := m.Stats(); s.Timeouts != 1 || s.Discards != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestExtismStopCutsCalls(t *testing.T) {
	e := newEngine(t, runtime.DefaultConfig())
	mc := extismConfig("cut")
	mc.CallTimeout = time.Minute
	m := started(t, e, extismGo(t), mc)
	done := make(chan error, 1)
	go func() {
		_, err := m.Call(context.Background(), runtime.RoleHandle, []byte("spin"), nil)
		done <- err
	}()
	eventually(t, "the call is running", func() bool { return m.Stats().Busy == 1 })
	if err := m.Stop(context.Background(), runtime.StopOptions{Grace: 50 * time.Millisecond}); err == nil || !strings.Contains(err.Error(), "cut") {
		t.Fatalf("stop: %v", err)
	}
	if err := <-done; !errors.Is(err, runtime.ErrNotRunning) {
		t.Fatalf("cut call: %v", err)
	}
	if m.State() != runtime.StateStopped {
		t.Fatal(m.State())
	}
}

func TestExtismHTTPAllowedHosts(t *testing.T) {
	var evilHits atomic.Int32
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		evilHits.Add(1)
		w.Write([]byte("secrets"))
	}))
	defer evil.Close()
	good := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			w.Write([]byte("hello"))
		case "/redirect-evil":
			http.Redirect(w, r, evil.URL+"/", http.StatusFound)
		case "/redirect-ok":
			http.Redirect(w, r, "/ok", http.StatusFound)
		default:
			http.NotFound(w, r)
		}
	}))
	defer good.Close()
	goodHost := strings.TrimPrefix(good.URL, "http://") // 127.0.0.1:port
	_, goodPort, _ := strings.Cut(goodHost, ":")

	e := newEngine(t, runtime.DefaultConfig())
	ctx := context.Background()
	wasm := extismGo(t)
	for _, tc := range []struct {
		name    string
		allowed []string
		url     string
		want    string // output, or "" for refused
	}{
		{"deny by default", nil, good.URL + "/ok", ""},
		{"allowed host:port", []string{goodHost}, good.URL + "/ok", "200 hello"},
		{"allowed host, any port", []string{"127.0.0.1"}, good.URL + "/ok", "200 hello"},
		{"other port refused", []string{"127.0.0.1:1"}, good.URL + "/ok", ""},
		{"wildcard does not match an IP", []string{"*.0.0.1"}, good.URL + "/ok", ""},
		{"localhost is not 127.0.0.1", []string{"localhost:" + goodPort}, good.URL + "/ok", ""},
		{"redirect to an allowed host", []string{goodHost}, good.URL + "/redirect-ok", "200 hello"},
		{"redirect to a host not on the list", []string{goodHost}, good.URL + "/redirect-evil", ""},
		{"not http", []string{goodHost}, "file:///etc/passwd", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mc := extismConfig("http")
			mc.AllowedHosts = tc.allowed
			m := started(t, e, wasm, mc)
			out, err := m.Call(ctx, runtime.RoleHandle, []byte("fetch:"+tc.url), nil)
			if tc.want != "" {
				if err != nil || string(out) != tc.want {
					t.Fatalf("%q %v, want %q", out, err, tc.want)
				}
				return
			}
			var na *runtime.NotAllowedError
			if !errors.Is(err, runtime.ErrNotAllowed) || !errors.As(err, &na) {
				t.Fatalf("%q %v, want ErrNotAllowed", out, err)
			}
			// The instance was replaced; the module still serves.
			if got := extCmd(t, m, "echo:still here"); got != "still here" {
				t.Fatal(got)
			}
		})
	}
	if n := evilHits.Load(); n != 0 {
		t.Fatalf("the host not on the list got %d requests", n)
	}
}
