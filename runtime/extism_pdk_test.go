package runtime_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/wasmpod/wasmpod/internal/wasmbuild"
	"github.com/wasmpod/wasmpod/runtime"
)

// The Extism contract, host function by host function, against plugins built here from source
// with the official PDKs (extism go-pdk and @extism/as-pdk): vars, config, every log level,
// errors, http_request allowed, refused and redirected, and functions with odd names.

func TestExtismVars(t *testing.T) {
	for _, p := range []struct {
		name  string
		build func(testing.TB) []byte
	}{{"go-pdk", extismGo}, {"as-pdk", extismAS}} {
		t.Run(p.name, func(t *testing.T) {
			e := newEngine(t, runtime.DefaultConfig())
			mc := extismConfig("vars-" + p.name)
			mc.MaxConcurrency = 1 // one instance, so one var store
			m := started(t, e, p.build(t), mc)
			for want := 1; want <= 3; want++ {
				if got := extCmd(t, m, "count:hits"); got != string(rune('0'+want)) {
					t.Fatalf("count %d: %q", want, got)
				}
			}
			if got := extCmd(t, m, "count:other"); got != "1" {
				t.Fatalf("a second var: %q", got)
			}
		})
	}

	e := newEngine(t, runtime.DefaultConfig())
	ctx := context.Background()
	bounded := extismConfig("vars-bounded")
	bounded.MaxVarBytes = 4 << 10
	m := started(t, e, extismGo(t), bounded)
	extCmd(t, m, "setvar:small=1000")
	if got := extCmd(t, m, "getvar:small"); got != "1000" {
		t.Fatalf("getvar: %q", got)
	}
	if _, err := m.Call(ctx, runtime.RoleHandle, []byte("setvar:big=8000"), nil); !errors.Is(err, runtime.ErrTrap) || !strings.Contains(err.Error(), "Variable store is full") {
		t.Fatalf("a var over MaxVarBytes: %v", err)
	}

	off := extismConfig("vars-off")
	off.MaxVarBytes = 0
	m = started(t, e, extismGo(t), off)
	if _, err := m.Call(ctx, runtime.RoleHandle, []byte("count:x"), nil); !errors.Is(err, runtime.ErrTrap) || !strings.Contains(err.Error(), "disabled") {
		t.Fatalf("vars disabled: %v", err)
	}
	bad := extismConfig("vars-negative")
	bad.MaxVarBytes = -1
	if _, err := e.Load(ctx, extismGo(t), bad); !errors.Is(err, runtime.ErrInvalidModule) {
		t.Fatalf("negative MaxVarBytes: %v", err)
	}
}

func TestExtismLogLevels(t *testing.T) {
	for _, p := range []struct {
		name   string
		build  func(testing.TB) []byte
		levels map[string]runtime.Level
	}{
		// go-pdk v1.1.3 imports log_error for its trace level (env.go), so trace lines arrive
		// at error: the host logs what the plugin calls.
		{"go-pdk", extismGo, map[string]runtime.Level{"trace": runtime.LevelError, "debug": runtime.LevelDebug, "info": runtime.LevelInfo, "warn": runtime.LevelWarn, "error": runtime.LevelError}},
		// as-pdk 1.0.0 has no trace level.
		{"as-pdk", extismAS, map[string]runtime.Level{"debug": runtime.LevelDebug, "info": runtime.LevelInfo, "warn": runtime.LevelWarn, "error": runtime.LevelError}},
	} {
		t.Run(p.name, func(t *testing.T) {
			logs := &logRecorder{}
			cfg := runtime.DefaultConfig()
			cfg.Logs = logs
			e := newEngine(t, cfg)
			m := started(t, e, p.build(t), extismConfig("logs-"+p.name))
			extCmd(t, m, "logall:line")
			for name, level := range p.levels {
				if !logs.findLevel("guest", name+" line", level) {
					t.Errorf("%s: no guest line %q at %s in %+v", p.name, name+" line", level, logs.lines)
				}
			}
		})
	}
}

func (l *logRecorder) findLevel(source, msg string, level runtime.Level) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range l.lines {
		if e.Source == source && e.Message == msg && e.Level == level {
			return true
		}
	}
	return false
}

// TestExtismOddNames: real plugins export count_vowels, run_test, ...; any role maps to any of
// them, and a mapping to a function the module lacks names the functions it has.
func TestExtismOddNames(t *testing.T) {
	e := newEngine(t, runtime.DefaultConfig())
	ctx := context.Background()
	for _, p := range []struct {
		name  string
		build func(testing.TB) []byte
	}{{"go-pdk", extismGo}, {"as-pdk", extismAS}} {
		t.Run(p.name, func(t *testing.T) {
			for _, r := range []runtime.Role{runtime.RoleHandle, runtime.RoleLeaf, runtime.RoleStage} {
				mc := extismConfig("odd-" + p.name)
				mc.ExtismFunctions = map[runtime.Role]string{r: "count_vowels"}
				m := started(t, e, p.build(t), mc)
				out, err := m.Call(ctx, r, []byte("Hello, World!"), nil)
				if err != nil || string(out) != "3" {
					t.Fatalf("%s mapped to count_vowels: %q %v", r, out, err)
				}
			}
		})
	}
	mc := extismConfig("missing")
	mc.ExtismFunctions = map[runtime.Role]string{runtime.RoleHandle: "count_consonants"}
	_, err := e.Load(ctx, extismGo(t), mc)
	if !errors.Is(err, runtime.ErrNoExport) || !strings.Contains(err.Error(), "count_vowels") || !strings.Contains(err.Error(), "run_test") {
		t.Fatalf("missing function: %v", err)
	}
	desc, derr := runtime.Describe(extismGo(t))
	if derr != nil {
		t.Fatal(derr)
	}
	if err := desc.CheckExtismFunction("run_test"); err != nil {
		t.Fatal(err)
	}
	if err := desc.CheckExtismFunction("memory"); !errors.Is(err, runtime.ErrNoExport) {
		t.Fatalf("memory as a function: %v", err)
	}
	if err := desc.CheckExtismFunction("nope"); !errors.Is(err, runtime.ErrNoExport) || !strings.Contains(err.Error(), "count_vowels") {
		t.Fatalf("nope: %v", err)
	}
}

// TestExtismCountVowels runs a plugin written like Extism's published count-vowels example
// (config "vowels", a running total in the var "total", JSON out) unchanged.
func TestExtismCountVowels(t *testing.T) {
	wasm := readFile(t, wasmbuild.Go(t, "../plugins/extism-count-vowels"))
	e := newEngine(t, runtime.DefaultConfig())
	ctx := context.Background()
	type result struct {
		Count  int    `json:"count"`
		Total  int    `json:"total"`
		Vowels string `json:"vowels"`
	}
	call := func(m *runtime.Module, in string) result {
		t.Helper()
		out, err := m.Call(ctx, runtime.RoleHandle, []byte(in), nil)
		if err != nil {
			t.Fatal(err)
		}
		var r result
		if err := json.Unmarshal(out, &r); err != nil {
			t.Fatalf("%q: %v", out, err)
		}
		return r
	}
	mc := extismConfig("count-vowels")
	mc.MaxConcurrency = 1
	mc.ExtismFunctions = map[runtime.Role]string{runtime.RoleHandle: "count_vowels"}
	m := started(t, e, wasm, mc)
	if r := call(m, "Hello, World!"); r != (result{3, 3, "aeiouAEIOU"}) {
		t.Fatalf("first call: %+v", r)
	}
	if r := call(m, "Yellow sky"); r != (result{2, 5, "aeiouAEIOU"}) {
		t.Fatalf("second call (total kept in a var): %+v", r)
	}
	mc.Name = "count-vowels-y"
	mc.Config = map[string]string{"vowels": "aeiouyAEIOUY"}
	m = started(t, e, wasm, mc)
	if r := call(m, "Yellow sky"); r != (result{4, 4, "aeiouyAEIOUY"}) {
		t.Fatalf("config vowels: %+v", r)
	}
	if got := strings.Join(m.Info().Roles, ","); got != "handle" {
		t.Fatalf("roles %s", got)
	}
}

// TestExtismHTTPFromPDKs: the as-pdk plugin's http_request, allowed, refused and
// redirected to a host off its list; and go-pdk's POST with headers and response headers.
func TestExtismHTTPFromPDKs(t *testing.T) {
	var evilHits atomic.Int32
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		evilHits.Add(1)
	}))
	defer evil.Close()
	good := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			w.Write([]byte("hello"))
		case "/post":
			if r.Method != http.MethodPost || r.Header.Get("X-Plugin") != "extism-go" {
				http.Error(w, "bad request", http.StatusBadRequest)
				return
			}
			w.Header().Set("Content-Type", "text/x-pong")
			w.WriteHeader(http.StatusCreated)
			w.Write([]byte("pong"))
		case "/away":
			http.Redirect(w, r, evil.URL+"/", http.StatusFound)
		}
	}))
	defer good.Close()
	goodHost := strings.TrimPrefix(good.URL, "http://")
	e := newEngine(t, runtime.DefaultConfig())
	ctx := context.Background()

	mc := extismConfig("as-http")
	mc.AllowedHosts = []string{goodHost}
	m := started(t, e, extismAS(t), mc)
	if got := extCmd(t, m, "fetch:"+good.URL+"/ok"); got != "hello" {
		t.Fatalf("allowed: %q", got)
	}
	for _, u := range []string{evil.URL + "/", good.URL + "/away"} {
		if _, err := m.Call(ctx, runtime.RoleHandle, []byte("fetch:"+u), nil); !errors.Is(err, runtime.ErrNotAllowed) {
			t.Fatalf("fetch %s: %v", u, err)
		}
	}
	denied := extismConfig("as-http-denied")
	m = started(t, e, extismAS(t), denied)
	if _, err := m.Call(ctx, runtime.RoleHandle, []byte("fetch:"+good.URL+"/ok"), nil); !errors.Is(err, runtime.ErrNotAllowed) {
		t.Fatalf("deny by default: %v", err)
	}

	mc = extismConfig("go-post")
	mc.AllowedHosts = []string{goodHost}
	m = started(t, e, extismGo(t), mc)
	if got := extCmd(t, m, "post:"+good.URL+"/post"); got != "201 text/x-pong pong" {
		t.Fatalf("post: %q", got)
	}
	if n := evilHits.Load(); n != 0 {
		t.Fatalf("the host off the list got %d requests", n)
	}
}
