package runtime_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/internal/wasmbuild"
	"github.com/wasmpod/wasmpod/runtime"
)

func TestTrapMatrix(t *testing.T) {
	e := newEngine(t, runtime.DefaultConfig())
	m := started(t, e, trapkit(t), runtime.DefaultModuleConfig("traps"))
	ctx := context.Background()
	cases := []struct {
		name string
		op   byte
		kind string
	}{
		{"unreachable", 0, "unreachable"},
		{"out of bounds", 1, "out-of-bounds"},
		{"divide by zero", 2, "divide-by-zero"},
		{"stack overflow", 3, "stack-overflow"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := m.Stats()
			_, err := m.Call(ctx, runtime.RoleHandle, []byte{tc.op}, nil)
			var te *runtime.TrapError
			if !errors.As(err, &te) || !errors.Is(err, runtime.ErrTrap) {
				t.Fatalf("want a TrapError, got %v", err)
			}
			if te.Kind != tc.kind {
				t.Fatalf("trap kind %q, want %q (%v)", te.Kind, tc.kind, err)
			}
			// Only that call and that instance failed: the next call works.
			out, err := m.Call(ctx, runtime.RoleHandle, []byte("hello"), nil)
			if err != nil || string(out) != "hello" {
				t.Fatalf("call after trap: %q, %v", out, err)
			}
			after := m.Stats()
			if after.Traps != before.Traps+1 || after.Discards != before.Discards+1 {
				t.Fatalf("traps %d->%d, discards %d->%d; want +1 each", before.Traps, after.Traps, before.Discards, after.Discards)
			}
		})
	}
}

func TestGuestErrorKeepsInstance(t *testing.T) {
	e := newEngine(t, runtime.DefaultConfig())
	m := started(t, e, trapkit(t), runtime.DefaultModuleConfig("guesterr"))
	_, err := m.Call(context.Background(), runtime.RoleHandle, []byte{7}, nil)
	var ge *runtime.GuestError
	if !errors.As(err, &ge) || ge.Code != 7 || ge.Message != "boom" {
		t.Fatalf("want guest error 7 boom, got %v", err)
	}
	if s := m.Stats(); s.Discards != 0 || s.GuestErrors != 1 {
		t.Fatalf("stats after guest error: %+v", s)
	}
}

func TestBadOutputIsRefused(t *testing.T) {
	e := newEngine(t, runtime.DefaultConfig())
	m := started(t, e, trapkit(t), runtime.DefaultModuleConfig("badout"))
	for _, tc := range []struct {
		op   byte
		want error
	}{{8, runtime.ErrInvalidModule}, {9, runtime.ErrOutput}} {
		if _, err := m.Call(context.Background(), runtime.RoleHandle, []byte{tc.op}, nil); !errors.Is(err, tc.want) {
			t.Fatalf("op %d: want %v, got %v", tc.op, tc.want, err)
		}
	}
}

func TestRunawayCutAtDeadlineWhileOthersAnswer(t *testing.T) {
	e := newEngine(t, runtime.DefaultConfig())
	cfg := runtime.DefaultModuleConfig("runaway")
	cfg.CallTimeout = 300 * time.Millisecond
	runaway := started(t, e, trapkit(t), cfg)
	other := started(t, e, trapkit(t), runtime.DefaultModuleConfig("other"))

	done := make(chan error, 1)
	go func() {
		_, err := runaway.Call(context.Background(), runtime.RoleHandle, []byte{5}, nil)
		done <- err
	}()
	answered := 0
	for {
		select {
		case err := <-done:
			if !errors.Is(err, runtime.ErrDeadline) {
				t.Fatalf("runaway call: want ErrDeadline, got %v", err)
			}
			if answered == 0 {
				t.Fatal("the other module never answered while the runaway ran")
			}
			// The runaway's instance was replaced; the module still serves.
			if out, err := runaway.Call(context.Background(), runtime.RoleHandle, []byte("ok"), nil); err != nil || string(out) != "ok" {
				t.Fatalf("after deadline: %q %v", out, err)
			}
			if s := runaway.Stats(); s.Timeouts != 1 || s.Discards != 1 {
				t.Fatalf("stats: %+v", s)
			}
			return
		case <-time.After(20 * time.Second):
			t.Fatal("runaway call was never cut")
		default:
		}
		if out, err := other.Call(context.Background(), runtime.RoleHandle, []byte("x"), nil); err != nil || string(out) != "x" {
			t.Fatalf("other module: %q %v", out, err)
		}
		answered++
	}
}

func TestCallerDeadlineIsShared(t *testing.T) {
	e := newEngine(t, runtime.DefaultConfig())
	m := started(t, e, trapkit(t), runtime.DefaultModuleConfig("shared"))
	// The request's own deadline (earlier than CallTimeout) cuts the call.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := m.Call(ctx, runtime.RoleHandle, []byte{5}, nil); !errors.Is(err, runtime.ErrDeadline) {
		t.Fatalf("want ErrDeadline, got %v", err)
	}
	// An expired request deadline fails before any wasm runs, and costs no instance. The first
	// call may have been cut by the instance's own timer an instant before the context's timer
	// marked ctx done (both fire at the deadline; on a loaded machine either may run first), so
	// wait for ctx to be done: only then is it expired as far as ctx.Err is concerned.
	<-ctx.Done()
	before := m.Stats().Discards
	if _, err := m.Call(ctx, runtime.RoleHandle, []byte("x"), nil); !errors.Is(err, runtime.ErrDeadline) {
		t.Fatalf("expired ctx: want ErrDeadline, got %v", err)
	}
	if m.Stats().Discards != before {
		t.Fatal("an expired deadline discarded an instance")
	}
}

func TestMemoryLimits(t *testing.T) {
	e := newEngine(t, runtime.DefaultConfig())
	mod := func(mem string) []byte {
		return readFile(t, wasmbuild.WATString(t, `(module (memory (export "memory") `+mem+`)
  (func (export "wasmpod_abi_version") (result i32) (i32.const 1))
  (func (export "wasmpod_buffer") (param i32) (result i32) (i32.const 1024)))`))
	}
	for _, tc := range []struct {
		name, mem string
		limit     uint32
		ok        bool
	}{
		{"min under limit", "3", 4, true},
		{"min over limit", "5", 4, false},
		{"encoded max over limit", "2 100", 4, false},
		{"encoded max at limit", "2 4", 4, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := runtime.DefaultModuleConfig("mem")
			cfg.MaxMemoryPages = tc.limit
			m, err := e.Load(context.Background(), mod(tc.mem), cfg)
			if tc.ok {
				if err != nil {
					t.Fatal(err)
				}
				m.Close(context.Background())
				return
			}
			if !errors.Is(err, runtime.ErrMemoryLimit) || !strings.Contains(err.Error(), "pages") {
				t.Fatalf("want ErrMemoryLimit naming pages, got %v", err)
			}
		})
	}

	t.Run("grow past limit fails in the guest", func(t *testing.T) {
		cfg := runtime.DefaultModuleConfig("grow")
		cfg.MaxMemoryPages = 4
		m := started(t, e, trapkit(t), cfg)
		grow := func(n byte) int32 {
			out, err := m.Call(context.Background(), runtime.RoleHandle, []byte{6, n}, nil)
			if err != nil {
				t.Fatal(err)
			}
			return int32(binary.LittleEndian.Uint32(out))
		}
		if got := grow(1); got != 2 { // 2 pages -> 3
			t.Fatalf("grow by 1 returned %d, want previous size 2", got)
		}
		if got := grow(2); got != -1 { // 3 + 2 > 4
			t.Fatalf("grow past the limit returned %d, want -1", got)
		}
		if got := grow(1); got != 3 {
			t.Fatalf("grow to the limit returned %d, want 3", got)
		}
		if s := m.Stats(); s.MemoryPages < 4 {
			t.Fatalf("memory pages %d, want >= 4", s.MemoryPages)
		}
	})
}

func TestOverloadWithBoundedWait(t *testing.T) {
	e := newEngine(t, runtime.DefaultConfig())
	cfg := runtime.DefaultModuleConfig("busy")
	cfg.MaxConcurrency = 1
	cfg.QueueTimeout = 50 * time.Millisecond
	cfg.CallTimeout = 2 * time.Second
	m := started(t, e, trapkit(t), cfg)
	done := make(chan error, 1)
	go func() {
		_, err := m.Call(context.Background(), runtime.RoleHandle, []byte{5}, nil)
		done <- err
	}()
	eventually(t, "the looping call holds the only instance", func() bool { return m.Stats().Busy == 1 })
	if _, err := m.Call(context.Background(), runtime.RoleHandle, []byte("x"), nil); !errors.Is(err, runtime.ErrOverloaded) {
		t.Fatalf("want ErrOverloaded, got %v", err)
	}
	if err := <-done; !errors.Is(err, runtime.ErrDeadline) {
		t.Fatalf("looping call: %v", err)
	}
	if m.Stats().Overloads != 1 {
		t.Fatalf("overloads = %d", m.Stats().Overloads)
	}
}

func TestLifecycleTransitions(t *testing.T) {
	ctx := context.Background()
	var mu sync.Mutex
	var seen []string
	cfg := runtime.DefaultConfig()
	cfg.Events = func(ev runtime.Event) {
		mu.Lock()
		seen = append(seen, ev.From.String()+">"+ev.To.String())
		mu.Unlock()
	}
	e := newEngine(t, cfg)
	m, err := e.Load(ctx, trapkit(t), runtime.DefaultModuleConfig("life"))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(ctx)
	events, cancel := m.Subscribe(16)
	defer cancel()

	type step struct {
		name  string
		op    func() error
		want  error // nil: must succeed
		state runtime.State
	}
	call := func() error { _, err := m.Call(ctx, runtime.RoleHandle, []byte("x"), nil); return err }
	steps := []step{
		{"call before start", call, runtime.ErrNotRunning, runtime.StateCreated},
		{"pause before start", m.Pause, runtime.ErrIllegalTransition, runtime.StateCreated},
		{"resume before start", m.Resume, runtime.ErrIllegalTransition, runtime.StateCreated},
		{"start", func() error { return m.Start(ctx, runtime.StartOptions{}) }, nil, runtime.StateRunning},
		{"start twice", func() error { return m.Start(ctx, runtime.StartOptions{}) }, runtime.ErrIllegalTransition, runtime.StateRunning},
		{"call running", call, nil, runtime.StateRunning},
		{"resume running", m.Resume, runtime.ErrIllegalTransition, runtime.StateRunning},
		{"pause", m.Pause, nil, runtime.StatePaused},
		{"call paused", call, runtime.ErrNotRunning, runtime.StatePaused},
		{"pause twice", m.Pause, runtime.ErrIllegalTransition, runtime.StatePaused},
		{"resume", m.Resume, nil, runtime.StateRunning},
		{"stop", func() error { return m.Stop(ctx, runtime.StopOptions{}) }, nil, runtime.StateStopped},
		{"call stopped", call, runtime.ErrNotRunning, runtime.StateStopped},
		{"start stopped", func() error { return m.Start(ctx, runtime.StartOptions{}) }, runtime.ErrIllegalTransition, runtime.StateStopped},
		{"stop again", func() error { return m.Stop(ctx, runtime.StopOptions{}) }, nil, runtime.StateStopped},
	}
	for _, s := range steps {
		err := s.op()
		if s.want == nil && err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if s.want != nil && !errors.Is(err, s.want) {
			t.Fatalf("%s: want %v, got %v", s.name, s.want, err)
		}
		if got := m.State(); got != s.state {
			t.Fatalf("%s: state %s, want %s", s.name, got, s.state)
		}
	}
	want := []string{"created>starting", "starting>running", "running>paused", "paused>running", "running>stopping", "stopping>stopped"}
	mu.Lock()
	got := append([]string(nil), seen...)
	mu.Unlock()
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("events %v, want %v", got, want)
	}
	for _, w := range want {
		ev := <-events
		if ev.From.String()+">"+ev.To.String() != w || ev.Module != "life" {
			t.Fatalf("subscribed event %v, want %s", ev, w)
		}
	}
	for _, bad := range []struct{ from, to runtime.State }{
		{runtime.StateCreated, runtime.StateRunning},
		{runtime.StateStopped, runtime.StateRunning},
		{runtime.StatePaused, runtime.StateStopped},
		{runtime.StateStopping, runtime.StateRunning},
	} {
		if runtime.CanTransition(bad.from, bad.to) {
			t.Errorf("%s -> %s must be illegal", bad.from, bad.to)
		}
	}
}

func TestStartFailureMarksFailed(t *testing.T) {
	e := newEngine(t, runtime.DefaultConfig())
	wasm := readFile(t, wasmbuild.WATString(t, `(module (memory (export "memory") 2)
  (func (export "wasmpod_abi_version") (result i32) (i32.const 1))
  (func (export "wasmpod_buffer") (param i32) (result i32) (i32.const 1024))
  (func (export "wasmpod_start") (result i32) (i32.const 3)))`))
	m, err := e.Load(context.Background(), wasm, runtime.DefaultModuleConfig("badstart"))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	err = m.Start(context.Background(), runtime.StartOptions{})
	if err == nil || !strings.Contains(err.Error(), "wasmpod_start returned 3") {
		t.Fatalf("want start failure, got %v", err)
	}
	if m.State() != runtime.StateFailed || m.LastError() == "" {
		t.Fatalf("state %s, last error %q", m.State(), m.LastError())
	}
	if err := m.Stop(context.Background(), runtime.StopOptions{}); err != nil || m.State() != runtime.StateStopped {
		t.Fatalf("stop failed module: %v, %s", err, m.State())
	}
}

func TestStopWhile1000GoroutinesCall(t *testing.T) {
	e := newEngine(t, runtime.DefaultConfig())
	cfg := runtime.DefaultModuleConfig("crowd")
	cfg.MaxConcurrency = 4
	cfg.QueueTimeout = 20 * time.Millisecond
	m := started(t, e, trapkit(t), cfg)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var ok, refused, overloaded int
	var unexpected []error
	startCalls := make(chan struct{})
	for g := 0; g < 1000; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			<-startCalls
			in := []byte{'g', byte(g), byte(g >> 8)}
			for k := 0; k < 50; k++ {
				out, err := m.Call(context.Background(), runtime.RoleHandle, in, nil)
				mu.Lock()
				switch {
				case err == nil && bytes.Equal(out, in):
					ok++
				case errors.Is(err, runtime.ErrNotRunning):
					refused++
				case errors.Is(err, runtime.ErrOverloaded):
					overloaded++
				default:
					unexpected = append(unexpected, err)
				}
				stop := errors.Is(err, runtime.ErrNotRunning)
				mu.Unlock()
				if stop {
					return
				}
			}
		}(g)
	}
	close(startCalls)
	eventually(t, "some calls succeed", func() bool { mu.Lock(); defer mu.Unlock(); return ok > 100 })
	if err := m.Stop(context.Background(), runtime.StopOptions{Grace: 5 * time.Second}); err != nil {
		t.Fatalf("stop: %v", err)
	}
	wg.Wait()
	if len(unexpected) > 0 {
		t.Fatalf("%d unexpected results, first: %v", len(unexpected), unexpected[0])
	}
	if refused == 0 {
		t.Fatal("no call was refused after stop")
	}
	if s := m.Stats(); s.Instances != 0 || s.State != runtime.StateStopped {
		t.Fatalf("after stop: %+v", s)
	}
	t.Logf("ok=%d refused=%d overloaded=%d", ok, refused, overloaded)
}

func TestCompilationCacheReuse(t *testing.T) {
	dir := t.TempDir()
	wasm := kit(t)
	type fileState struct {
		size int64
		mod  time.Time
	}
	snapshot := func() map[string]fileState {
		out := map[string]fileState{}
		filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
			if err == nil && fi.Mode().IsRegular() {
				out[p] = fileState{fi.Size(), fi.ModTime()}
			}
			return nil
		})
		return out
	}
	load := func() time.Duration {
		cfg := runtime.DefaultConfig()
		cfg.CacheDir = dir
		e, err := runtime.NewEngine(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer e.Close(context.Background())
		start := time.Now()
		m, err := e.Load(context.Background(), wasm, runtime.DefaultModuleConfig("kit"))
		if err != nil {
			t.Fatal(err)
		}
		took := time.Since(start)
		m.Close(context.Background())
		return took
	}
	first := load()
	afterFirst := snapshot()
	if len(afterFirst) == 0 {
		t.Fatal("the first start wrote nothing to the compilation cache")
	}
	time.Sleep(20 * time.Millisecond) // so a rewrite would show in the modification time
	second := load()
	afterSecond := snapshot()
	// wazero writes a cache entry after every compilation; an unchanged cache proves the second
	// start compiled nothing.
	if len(afterSecond) != len(afterFirst) {
		t.Fatalf("second start added cache entries: %d -> %d", len(afterFirst), len(afterSecond))
	}
	for p, st := range afterFirst {
		if afterSecond[p] != st {
			t.Fatalf("second start rewrote %s", p)
		}
	}
	t.Logf("first load (compile) %s, second load (cache) %s", first, second)
}

func TestLoadErrors(t *testing.T) {
	e := newEngine(t, runtime.DefaultConfig())
	good := trapkit(t)
	wat := func(src string) []byte { return readFile(t, wasmbuild.WATString(t, src)) }
	const abi = `(memory (export "memory") 1)
  (func (export "wasmpod_abi_version") (result i32) (i32.const 1))
  (func (export "wasmpod_buffer") (param i32) (result i32) (i32.const 1024))`
	cases := []struct {
		name   string
		wasm   []byte
		sha    string
		want   error
		phrase string
	}{
		{"empty", nil, "", runtime.ErrInvalidModule, "invalid"},
		{"garbage", []byte("not wasm at all"), "", runtime.ErrInvalidModule, "invalid"},
		{"truncated", good[:len(good)/2], "", runtime.ErrInvalidModule, "invalid"},
		{"checksum", good, strings.Repeat("ab", 32), runtime.ErrChecksum, "expected abab"},
		{"no memory export", wat(`(module (func (export "wasmpod_abi_version") (result i32) (i32.const 1)))`), "", runtime.ErrInvalidModule, `export its memory as "memory"`},
		{"no buffer export", wat(`(module (memory (export "memory") 1) (func (export "wasmpod_abi_version") (result i32) (i32.const 1)))`), "", runtime.ErrInvalidModule, "wasmpod_buffer"},
		{"wrong version", wat(`(module (memory (export "memory") 1)
  (func (export "wasmpod_abi_version") (result i32) (i32.const 2))
  (func (export "wasmpod_buffer") (param i32) (result i32) (i32.const 1024)))`), "", runtime.ErrInvalidModule, "ABI version 2"},
		{"wrong handler signature", wat(`(module ` + abi + ` (func (export "wasmpod_leaf") (param i32) (result i32) (i32.const 0)))`), "", runtime.ErrInvalidModule, "wasmpod_leaf with signature (i32) -> (i32)"},
		{"unknown namespace", wat(`(module (import "env" "foo" (func)) ` + abi + `)`), "", runtime.ErrInvalidModule, "imports env.foo"},
		{"unknown wasmpod import", wat(`(module (import "wasmpod" "teleport" (func)) ` + abi + `)`), "", runtime.ErrInvalidModule, "wasmpod.teleport"},
		{"wrong import signature", wat(`(module (import "wasmpod" "log" (func (param i32))) ` + abi + `)`), "", runtime.ErrInvalidModule, "wasmpod.log with signature"},
		{"extism plugin", wat(`(module (import "extism:host/env" "input_length" (func (result i64))) ` + abi + `)`), "", runtime.ErrInvalidModule, "Extism plugin"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := runtime.DefaultModuleConfig(tc.name)
			cfg.SHA256 = tc.sha
			m, err := e.Load(context.Background(), tc.wasm, cfg)
			if err == nil {
				m.Close(context.Background())
				t.Fatal("loaded")
			}
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.phrase) {
				t.Fatalf("want %v containing %q, got %v", tc.want, tc.phrase, err)
			}
			if !strings.Contains(err.Error(), tc.name) {
				t.Fatalf("error does not name the module: %v", err)
			}
		})
	}
}

func TestConfigValidation(t *testing.T) {
	e := newEngine(t, runtime.DefaultConfig())
	for _, tc := range []struct {
		name string
		mod  func(*runtime.ModuleConfig)
	}{
		{"no name", func(c *runtime.ModuleConfig) { c.Name = "" }},
		{"zero timeout", func(c *runtime.ModuleConfig) { c.CallTimeout = 0 }},
		{"zero concurrency", func(c *runtime.ModuleConfig) { c.MaxConcurrency = 0 }},
		{"too many warm", func(c *runtime.ModuleConfig) { c.MinInstances = 9 }},
		{"memory", func(c *runtime.ModuleConfig) { c.MaxMemoryPages = 70000 }},
	} {
		cfg := runtime.DefaultModuleConfig("x")
		tc.mod(&cfg)
		if _, err := e.Load(context.Background(), trapkit(t), cfg); !errors.Is(err, runtime.ErrInvalidModule) {
			t.Errorf("%s: want ErrInvalidModule, got %v", tc.name, err)
		}
	}
}

func TestEngineCloseCascades(t *testing.T) {
	e, err := runtime.NewEngine(context.Background(), runtime.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	m, err := e.Load(context.Background(), trapkit(t), runtime.DefaultModuleConfig("a"))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(context.Background(), runtime.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if m.State() != runtime.StateStopped {
		t.Fatalf("module state after engine close: %s", m.State())
	}
	if err := e.Close(context.Background()); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if _, err := e.Load(context.Background(), trapkit(t), runtime.DefaultModuleConfig("b")); !errors.Is(err, runtime.ErrClosed) {
		t.Fatalf("load after close: %v", err)
	}
}

func TestTrustedModule(t *testing.T) {
	e := newEngine(t, runtime.DefaultConfig())
	cfg := runtime.DefaultModuleConfig("trusted")
	cfg.Trusted = true
	m := started(t, e, trapkit(t), cfg)
	out, err := m.Call(context.Background(), runtime.RoleHandle, []byte("abc"), nil)
	if err != nil || string(out) != "abc" {
		t.Fatalf("%q %v", out, err)
	}
	if !m.Info().Trusted {
		t.Fatal("info does not say trusted")
	}
	// Traps are contained without the guard too.
	if _, err := m.Call(context.Background(), runtime.RoleHandle, []byte{0}, nil); !errors.Is(err, runtime.ErrTrap) {
		t.Fatalf("trap: %v", err)
	}
}

func TestCallAllocations(t *testing.T) {
	e := newEngine(t, runtime.DefaultConfig())
	in := make([]byte, 256)
	dst := make([]byte, 0, 512)
	for _, tc := range []struct {
		trusted bool
		max     float64
	}{{true, 0}, {false, 0}} {
		cfg := runtime.DefaultModuleConfig("alloc")
		cfg.Trusted = tc.trusted
		m := started(t, e, trapkit(t), cfg)
		allocs := testing.AllocsPerRun(200, func() {
			if _, err := m.Call(context.Background(), runtime.RoleLeaf, in, dst[:0]); err != nil {
				t.Fatal(err)
			}
		})
		// Guarded or trusted, a warm call allocates nothing (the guard is the instrumentation's
		// fuel checks, not wazero's goroutine per call; see TestCancellableContextCostsNothing
		// for cancellable contexts).
		if allocs > tc.max {
			t.Errorf("trusted=%v: %.1f allocations per call, want <= %.0f", tc.trusted, allocs, tc.max)
		}
	}
}

// FuzzLoad: malformed or hostile bytes give an error, never a panic, a hang or a huge allocation.
func FuzzLoad(f *testing.F) {
	f.Add(readFile(f, wasmbuild.WAT(f, "testdata/trapkit.wat")))
	f.Add([]byte("\x00asm\x01\x00\x00\x00"))
	f.Add([]byte("\x00asm\x01\x00\x00\x00\x04\t\x84\x84\x84C\x840000")) // a table count far beyond its section
	e := newEngine(f, runtime.Config{})
	f.Fuzz(func(t *testing.T, wasm []byte) {
		for _, trusted := range []bool{false, true} {
			cfg := runtime.DefaultModuleConfig("fuzz")
			cfg.Trusted = trusted
			m, err := e.Load(context.Background(), wasm, cfg)
			if err != nil {
				if !errors.Is(err, runtime.ErrInvalidModule) && !errors.Is(err, runtime.ErrMemoryLimit) {
					t.Fatalf("error wraps no sentinel: %v", err)
				}
				continue
			}
			m.Close(context.Background())
		}
	})
}

// Call counts are exact while the latency histogram times a random sample of the calls
// (LatencySampleEvery): the sample is neither empty nor everything.
func TestLatencySampledCountsExact(t *testing.T) {
	e := newEngine(t, runtime.DefaultConfig())
	m := started(t, e, trapkit(t), runtime.DefaultModuleConfig("sampled"))
	ctx := context.Background()
	const n = 100 * runtime.LatencySampleEvery
	for range n {
		if _, err := m.Call(ctx, runtime.RoleHandle, []byte("hi"), nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := m.Call(ctx, runtime.RoleHandle, []byte{7}, nil); !errors.Is(err, runtime.ErrGuest) {
		t.Fatalf("guest error call: %v", err)
	}
	s := m.Stats()
	if s.Calls != n+1 || s.Errors != 1 || s.GuestErrors != 1 {
		t.Fatalf("calls %d errors %d guest errors %d; want %d, 1, 1", s.Calls, s.Errors, s.GuestErrors, n+1)
	}
	var sum uint64
	for _, c := range s.Latency.Counts {
		sum += c
	}
	if sum != s.Latency.Count || s.Latency.Count == 0 || s.Latency.Count > n/4 {
		t.Fatalf("latency sample: %d timed calls (buckets sum %d) of %d; want about %d", s.Latency.Count, sum, n+1, n/runtime.LatencySampleEvery)
	}
}

// At a low call rate every metrics interval with calls still has a timed call: the first call
// after each read of Stats is timed, whatever the random sample says.
func TestLatencyEveryStatsIntervalSampled(t *testing.T) {
	e := newEngine(t, runtime.DefaultConfig())
	m := started(t, e, trapkit(t), runtime.DefaultModuleConfig("lowrate"))
	ctx := context.Background()
	prev := m.Stats().Latency.Count
	for i := range 20 {
		if _, err := m.Call(ctx, runtime.RoleHandle, []byte("hi"), nil); err != nil {
			t.Fatal(err)
		}
		c := m.Stats().Latency.Count
		if c == prev {
			t.Fatalf("interval %d: one call after a Stats read, none timed", i)
		}
		prev = c
	}
}
