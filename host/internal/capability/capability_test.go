package capability

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/internal/wasmbuild"
	"github.com/wasmpod/wasmpod/runtime"
)

// lineServer answers each line with the line upper-cased; on "hang" it answers nothing.
func lineServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					l, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if l != "hang\n" {
						c.Write([]byte(strings.ToUpper(l)))
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// cacheDir is a compilation cache shared by this package's engines, so each test does not
// compile the guest again.
var cacheDir string

func TestMain(m *testing.M) {
	d, err := os.MkdirTemp("", "capability-cache")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	cacheDir = d
	code := m.Run()
	os.RemoveAll(d)
	os.Exit(code)
}

type pod struct {
	caps *Host
	mods map[string]*runtime.Module
}

// newPod loads capguest as modules a, b, c and d. a may dial the allowlist given; the others
// have no network; c may not call b.
func newPod(t *testing.T, allowA []string, cfg Config, tweak ...func(*runtime.ModuleConfig)) *pod {
	t.Helper()
	wasm, err := os.ReadFile(wasmbuild.Go(t, "testdata/capguest"))
	if err != nil {
		t.Fatal(err)
	}
	p := &pod{mods: map[string]*runtime.Module{}}
	var mu sync.Mutex
	cfg.Resolve = func(name string) (*runtime.Module, error) {
		mu.Lock()
		defer mu.Unlock()
		if m := p.mods[name]; m != nil {
			return m, nil
		}
		return nil, fmt.Errorf("module %q: %w", name, ErrNoModule)
	}
	cfg.Allow = func(caller, target string) bool { return caller != target && !(caller == "c" && target == "b") }
	cfg.Allowlist = func(m string) []string {
		if m == "a" {
			return allowA
		}
		return nil
	}
	p.caps = New(cfg)
	t.Cleanup(func() { p.caps.Close() })
	ecfg := runtime.DefaultConfig()
	ecfg.Imports = p.caps.Functions()
	ecfg.CacheDir = cacheDir
	ctx := context.Background()
	eng, err := runtime.NewEngine(ctx, ecfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close(ctx) })
	for _, name := range []string{"a", "b", "c", "d"} {
		mc := runtime.DefaultModuleConfig(name)
		mc.MaxConcurrency, mc.MinInstances = 2, 1
		for _, f := range tweak {
			f(&mc)
		}
		m, err := eng.Load(ctx, wasm, mc)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Start(ctx, runtime.StartOptions{}); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		p.mods[name] = m
		mu.Unlock()
	}
	return p
}

func (p *pod) call(t *testing.T, ctx context.Context, module, cmd string) (string, error) {
	t.Helper()
	out, err := p.mods[module].Call(ctx, runtime.RoleHandle, []byte(cmd), nil)
	return string(out), err
}

func TestPodCall(t *testing.T) {
	p := newPod(t, nil, Config{MaxResponseBytes: 100_000, MaxCallDepth: 2})
	for _, tc := range []struct {
		name, from, cmd string
		want            string // exact, or a prefix when it ends with "*"
	}{
		{"echo", "a", "call b echo hi", "hi"},
		{"response larger than the first buffer", "a", "call b big 70000", strings.Repeat("x", 70000)},
		{"empty response", "a", "call b echo", ""},
		{"no such module", "a", "call nope echo hi", `ERR nomodule: pod call nope: call "nope": module "nope": no such module`},
		{"self", "a", "call a echo hi", "ERR notallowed: *"},
		{"policy", "c", "call b echo hi", `ERR notallowed: pod call b: call "b": module "c" may not call it`},
		{"target failed, message kept", "a", "call b fail", "ERR failed: *boom*"},
		{"too large", "a", "call b big 200000", "ERR toolarge: *exceeds the limit of 100000*"},
		{"nested", "a", "call b call c echo deep", "deep"},
		{"cycle", "a", "call b call a echo x", `*ERR notallowed: pod call a: call "a": a cycle: a -> b -> a`},
		{"depth limit", "a", "call b call c call d echo x", "*nested 2 pod-local calls deep (limit 2)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := p.call(t, context.Background(), tc.from, tc.cmd)
			if err != nil {
				t.Fatal(err)
			}
			if !match(got, tc.want) {
				t.Fatalf("got %.200q, want %.200q", got, tc.want)
			}
		})
	}
}

// match compares got with want, in which '*' matches any text.
func match(got, want string) bool {
	parts := strings.Split(want, "*")
	if len(parts) == 1 {
		return got == want
	}
	if !strings.HasPrefix(got, parts[0]) {
		return false
	}
	got = got[len(parts[0]):]
	for _, p := range parts[1 : len(parts)-1] {
		i := strings.Index(got, p)
		if i < 0 {
			return false
		}
		got = got[i+len(p):]
	}
	return strings.HasSuffix(got, parts[len(parts)-1])
}

func TestNet(t *testing.T) {
	addr := lineServer(t)
	_, port, _ := net.SplitHostPort(addr)
	p := newPod(t, []string{addr, "localhost:1"}, Config{MaxHandles: 3})
	for _, tc := range []struct {
		name, from, cmd, want string
	}{
		{"allowed literal", "a", "fetch " + addr + " hello", "HELLO"},
		{"no allowlist", "b", "fetch " + addr + " hello", `ERR notallowed: *has no network allowlist*`},
		{"allowed name resolving to a listed literal", "a", "fetch localhost:" + port + " hello", "ERR notallowed: *"},
		{"other port", "a", "fetch 127.0.0.1:1 hello", `ERR notallowed: *not on the module's network allowlist*`},
		{"other address, same port", "a", "fetch 127.0.0.2:" + port + " hello", `ERR notallowed: *`},
		{"name resolving to loopback", "a", "fetch localhost:1 hello", `ERR notallowed: *need a literal allowlist entry*`},
		{"not host:port", "a", "fetch nonsense hello", `ERR badargs: *`},
		{"kept across calls: dial", "a", "hold " + addr, "ok"},
		{"kept across calls: use", "a", "use again", "AGAIN"},
		{"handle limit", "a", "dialn " + addr + " 5", "2 ERR toomany: *limit 3*"},
		{"close all", "a", "closeall", "ok"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := p.call(t, context.Background(), tc.from, tc.cmd)
			if err != nil {
				t.Fatal(err)
			}
			if !match(got, tc.want) {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
	if n := p.caps.OpenConns(); n != 0 {
		t.Fatalf("%d connections open after closeall", n)
	}
}

func TestNetDeadline(t *testing.T) {
	addr := lineServer(t)
	p := newPod(t, []string{addr}, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	got, err := p.call(t, ctx, "a", "fetch "+addr+" hang")
	// Either the read timed out in the host (the guest saw ErrTimeout), or the runtime cut the
	// guest at the same deadline first; both end the call, and the connection is gone.
	if !(err == nil && strings.HasPrefix(got, "ERR timeout: ")) && !errors.Is(err, runtime.ErrDeadline) {
		t.Fatalf("got %q, %v; want a timeout", got, err)
	}
	if p.caps.OpenConns() != 0 { // a cut instance's connections go with it; see seam_test.go
		t.Fatalf("%d connections open after a timed-out read", p.caps.OpenConns())
	}
}

// TestStateLivesWithInstance: a connection kept across calls stays while its instance lives and
// is closed the moment the instance goes (here: the module stops), with no sweeper.
func TestStateLivesWithInstance(t *testing.T) {
	addr := lineServer(t)
	p := newPod(t, []string{addr}, Config{})
	if got, _ := p.call(t, context.Background(), "a", "hold "+addr); got != "ok" {
		t.Fatal(got)
	}
	if p.caps.OpenConns() != 1 {
		t.Fatal("a live instance lost its connection")
	}
	if got, _ := p.call(t, context.Background(), "a", "use again"); got != "AGAIN" {
		t.Fatalf("kept connection: %q", got)
	}
	if err := p.mods["a"].Stop(context.Background(), runtime.StopOptions{}); err != nil {
		t.Fatal(err)
	}
	if n := p.caps.OpenConns(); n != 0 {
		t.Fatalf("stopped module kept %d connections", n)
	}
}

func TestClosedHost(t *testing.T) {
	addr := lineServer(t)
	p := newPod(t, []string{addr}, Config{})
	p.caps.Close()
	got, err := p.call(t, context.Background(), "a", "fetch "+addr+" x")
	if err != nil || !strings.HasPrefix(got, "ERR notallowed") {
		t.Fatalf("after Close: %q, %v", got, err)
	}
}
