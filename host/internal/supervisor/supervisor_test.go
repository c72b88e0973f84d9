package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/host/internal/podspec"
	"github.com/wasmpod/wasmpod/host/internal/snapshot"
	"github.com/wasmpod/wasmpod/internal/wasmbuild"
	"github.com/wasmpod/wasmpod/runtime"
)

// The tests run real guests (built from source by wasmbuild) through a real engine. They share
// one state directory, so each guest compiles once per test binary; every test names its own
// pod, so their snapshots do not meet.

var stateDir string

func TestMain(m *testing.M) {
	d, err := os.MkdirTemp("", "supervisor-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	stateDir = d
	code := m.Run()
	os.RemoveAll(d)
	os.Exit(code)
}

var (
	guestMu sync.Mutex
	guestAt = map[string]string{}
)

// guest builds (once) the Go guest in the repository directory dir and returns its path.
func guest(t *testing.T, dir string) string { return built(t, dir, wasmbuild.Go) }

// built returns the module that build makes of dir (below the repository's root), made once
// per test process.
func built(t *testing.T, dir string, build func(testing.TB, string) string) string {
	t.Helper()
	guestMu.Lock()
	defer guestMu.Unlock()
	if p, ok := guestAt[dir]; ok {
		return p
	}
	root, err := wasmbuild.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	p := build(t, filepath.Join(root, dir))
	guestAt[dir] = p
	return p
}

func podkit(t *testing.T) string { return guest(t, "host/testdata/podkit") }

// recorder keeps the supervisor's log records, to check the order of starts and stops.
type recorder struct {
	mu   sync.Mutex
	recs []string // "message module to" per record
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &attrsHandler{r: r, attrs: attrs}
}
func (r *recorder) WithGroup(string) slog.Handler { return r }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	return r.handle(rec, nil)
}

func (r *recorder) handle(rec slog.Record, pre []slog.Attr) error {
	kv := map[string]string{}
	for _, a := range pre {
		kv[a.Key] = a.Value.String()
	}
	rec.Attrs(func(a slog.Attr) bool { kv[a.Key] = a.Value.String(); return true })
	r.mu.Lock()
	r.recs = append(r.recs, strings.TrimSpace(rec.Message+" "+kv["module"]+" "+kv["to"]))
	r.mu.Unlock()
	return nil
}

func (r *recorder) lines(prefix string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, l := range r.recs {
		if strings.HasPrefix(l, prefix) {
			out = append(out, strings.TrimPrefix(l, prefix))
		}
	}
	return out
}

type attrsHandler struct {
	r     *recorder
	attrs []slog.Attr
}

func (h *attrsHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *attrsHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &attrsHandler{r: h.r, attrs: append(append([]slog.Attr(nil), h.attrs...), attrs...)}
}
func (h *attrsHandler) WithGroup(string) slog.Handler { return h }
func (h *attrsHandler) Handle(_ context.Context, rec slog.Record) error {
	return h.r.handle(rec, h.attrs)
}

// pod starts a supervisor for a pod named after the test whose spec has the given modules
// (YAML list items) and spec lines; it is shut down when the test ends.
func pod(t *testing.T, modules, specExtra string) (*Supervisor, *recorder) {
	t.Helper()
	p := testPod(t, "  terminationGracePeriodSeconds: 10\n"+specExtra, modules)
	rec := &recorder{}
	cfg := DefaultConfig()
	cfg.Pod = p
	cfg.StateDir = stateDir
	cfg.Logger = slog.New(rec)
	cfg.UpgradeReadyTimeout = 2 * time.Second
	cfg.ProbePoll = 10 * time.Millisecond
	ctx := context.Background()
	s, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := s.Shutdown(ctx); err != nil { // idempotent
			t.Errorf("second shutdown: %v", err)
		}
	})
	os.Remove(s.store.Path("web")) // a rerun of the test starts from no state
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return s, rec
}

// testPod parses a pod named after the test whose spec has the given spec lines and modules
// (YAML list items).
func testPod(t *testing.T, specExtra, modules string) *podspec.Pod {
	t.Helper()
	name := strings.ToLower(strings.NewReplacer("/", "-", "_", "-", " ", "-").Replace(t.Name()))
	if len(name) > 60 {
		name = name[:60]
	}
	name = strings.Trim(name, "-")
	y := fmt.Sprintf("apiVersion: wasmpod.dev/v1\nkind: Pod\nmetadata: {name: %s}\nspec:\n%s  modules:\n%s", name, specExtra, modules)
	p, err := podspec.Parse([]byte(y), t.TempDir())
	if err != nil {
		t.Fatalf("pod spec: %v\n%s", err, y)
	}
	return p
}

func module(name, role, wasm, extra string) string {
	return fmt.Sprintf("    - name: %s\n      role: %s\n      wasm: %s\n%s", name, role, wasm, extra)
}

func call(t *testing.T, s *Supervisor, mod, cmd string) string {
	t.Helper()
	out, err := s.Call(context.Background(), mod, runtime.RoleHandle, []byte(cmd), nil)
	if err != nil {
		t.Fatalf("%s %q: %v", mod, cmd, err)
	}
	return string(out)
}

func waitStatus(t *testing.T, s *Supervisor, mod, what string, cond func(ModuleStatus) bool) ModuleStatus {
	t.Helper()
	var st ModuleStatus
	eventually(t, mod+": "+what, func() bool {
		var err error
		st, err = s.Status(mod)
		if err != nil {
			t.Fatal(err)
		}
		return cond(st)
	})
	return st
}

func TestStartStopOrder(t *testing.T) {
	kit := podkit(t)
	s, rec := pod(t, module("web", "main", kit, "")+module("side", "sidecar", kit, "")+module("adapt", "adapter", kit, ""), "")
	if got, want := strings.Join(s.Modules(), ","), "side,adapt,web"; got != want {
		t.Fatalf("start order %s, want %s", got, want)
	}
	var running []string
	for _, l := range rec.lines("module state ") {
		if m, ok := strings.CutSuffix(l, " running"); ok {
			running = append(running, m)
		}
	}
	if got := strings.Join(running, ","); got != "side,adapt,web" {
		t.Fatalf("modules reached running in the order %s, want helpers first", got)
	}
	if ok, why := s.Ready(); !ok {
		t.Fatalf("pod not ready: %v", why)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(rec.lines("module stopped "), ","); got != "web,adapt,side" {
		t.Fatalf("stop order %s, want the reverse of the start order", got)
	}
	if _, err := s.Call(context.Background(), "web", runtime.RoleHandle, []byte("echo:x"), nil); !errors.Is(err, ErrNotReady) {
		t.Fatalf("call after shutdown: %v", err)
	}
}

func TestRestartPolicy(t *testing.T) {
	backoff := podspec.Backoff{Initial: podspec.Duration(time.Millisecond), Max: podspec.Duration(4 * time.Millisecond), ResetAfter: podspec.Duration(time.Hour)}
	for _, tc := range []struct {
		policy     podspec.RestartPolicy
		wantReason string
		failures   int // wait for at least this many
	}{
		{podspec.RestartAlways, "CrashLoopBackOff", 5},
		{podspec.RestartOnFailure, "CrashLoopBackOff", 3},
		{podspec.RestartNever, "Failed", 1},
	} {
		t.Run(string(tc.policy), func(t *testing.T) {
			s, _ := pod(t, module("web", "main", podkit(t), "      config: {failstart: \"true\"}\n"),
				fmt.Sprintf("  restartPolicy: %s\n  restartBackoff: {initial: 1ms, max: 4ms, resetAfter: 1h}\n", tc.policy))
			st := waitStatus(t, s, "web", "failures", func(st ModuleStatus) bool { return st.Failures >= tc.failures })
			if st.Reason != tc.wantReason || !strings.Contains(st.LastError, "failstart") {
				t.Fatalf("reason %q (want %q), last error %q", st.Reason, tc.wantReason, st.LastError)
			}
			if tc.policy == podspec.RestartNever {
				if st.Restarts != 0 || st.NextRestart != nil || st.State != runtime.StateFailed {
					t.Fatalf("Never: restarts %d, next restart %v, state %s", st.Restarts, st.NextRestart, st.State)
				}
				return
			}
			// Every scheduled delay follows the schedule: doubling from 1ms, capped at 4ms.
			st = waitStatus(t, s, "web", "capped backoff", func(st ModuleStatus) bool { return st.Failures >= 4 })
			if st.LastBackoff != "4ms" {
				t.Fatalf("after %d failures backoff %s, want the 4ms cap", st.Failures, st.LastBackoff)
			}
			if err := s.StopModule(context.Background(), "web"); err != nil {
				t.Fatal(err)
			}
			if st, _ := s.Status("web"); st.Reason != "Stopped" || st.NextRestart != nil {
				t.Fatalf("operator stop: reason %q, next restart %v", st.Reason, st.NextRestart)
			}
		})
	}
	// The schedule itself.
	for n, want := range map[int]time.Duration{0: time.Millisecond, 1: time.Millisecond, 2: 2 * time.Millisecond, 3: 4 * time.Millisecond, 9: 4 * time.Millisecond} {
		if got := backoff.Delay(n); got != want {
			t.Errorf("Delay(%d) = %s, want %s", n, got, want)
		}
	}
}

func TestProbes(t *testing.T) {
	for _, tc := range []struct {
		name, extra string
		check       func(t *testing.T, s *Supervisor)
	}{
		{"readiness takes it out of traffic", "      readinessProbe: {periodSeconds: 1, failureThreshold: 1}\n", func(t *testing.T, s *Supervisor) {
			waitStatus(t, s, "web", "ready", func(st ModuleStatus) bool { return st.Ready })
			call(t, s, "web", "sethealth:1")
			waitStatus(t, s, "web", "not ready", func(st ModuleStatus) bool { return !st.Ready })
			if _, err := s.AcquireMain(); !errors.Is(err, ErrNotReady) {
				t.Fatalf("lease on a not ready main: %v", err)
			}
			if st, _ := s.Status("web"); st.Restarts != 0 || st.State != runtime.StateRunning {
				t.Fatalf("readiness must not restart: %+v", st)
			}
		}},
		{"liveness restarts", "      livenessProbe: {periodSeconds: 1, failureThreshold: 1}\n", func(t *testing.T, s *Supervisor) {
			call(t, s, "web", "inc")
			call(t, s, "web", "sethealth:2")
			st := waitStatus(t, s, "web", "restart", func(st ModuleStatus) bool { return st.Restarts >= 1 && st.State == runtime.StateRunning })
			if !strings.Contains(st.LastError, "liveness") {
				t.Fatalf("last error %q", st.LastError)
			}
			// The restart went through a snapshot: the counter survived it.
			if got := call(t, s, "web", "state"); got != "1" {
				t.Fatalf("state after a liveness restart %q, want 1", got)
			}
		}},
		{"startup probe fails the module", "      config: {health: notready}\n      startupProbe: {periodSeconds: 1, failureThreshold: 1}\n", func(t *testing.T, s *Supervisor) {
			st := waitStatus(t, s, "web", "startup failure", func(st ModuleStatus) bool { return st.Failures >= 1 })
			if !strings.Contains(st.LastError, "startup probe") {
				t.Fatalf("last error %q", st.LastError)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := pod(t, module("web", "main", podkit(t), "      resources: {concurrency: 1}\n"+tc.extra), "  restartBackoff: {initial: 1ms, max: 1ms}\n")
			tc.check(t, s)
		})
	}
}

func TestUpgrade(t *testing.T) {
	kit := podkit(t)
	newKit := guest(t, "runtime/testdata/kit") // another stateful module: same inc/state commands
	never := guest(t, "host/testdata/neverready")
	read := func(t *testing.T, p string) []byte {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, tc := range []struct {
		name    string
		to      func(t *testing.T) []byte
		wantErr error
	}{
		{"never ready rolls back", func(t *testing.T) []byte { return read(t, never) }, ErrUpgradeFailed},
		{"not wasm", func(*testing.T) []byte { return []byte("\x00asm garbage") }, ErrUpgradeFailed},
		{"stateful carries its state", func(t *testing.T) []byte { return read(t, newKit) }, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := pod(t, module("web", "main", kit, "      resources: {concurrency: 1}\n      readinessProbe: {periodSeconds: 1, failureThreshold: 1}\n"), "")
			waitStatus(t, s, "web", "ready", func(st ModuleStatus) bool { return st.Ready })
			for range 3 {
				call(t, s, "web", "inc")
			}
			err := s.Upgrade(context.Background(), "web", tc.to(t))
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Fatalf("upgrade: %v, want %v", err, tc.wantErr)
			}
			st, _ := s.Status("web")
			if tc.wantErr != nil {
				// the old version kept serving, untouched
				if got := call(t, s, "web", "version"); got != "podkit-1" {
					t.Fatalf("after a failed upgrade the module answers %q", got)
				}
				if st.Version != 1 || call(t, s, "web", "state") != "3" {
					t.Fatalf("after a failed upgrade: version %d, state %s", st.Version, call(t, s, "web", "state"))
				}
				if err := s.Rollback(context.Background(), "web"); !errors.Is(err, ErrNoPrevious) {
					t.Fatalf("rollback without a previous version: %v", err)
				}
				return
			}
			if st.Version != 2 {
				t.Fatalf("version %d", st.Version)
			}
			if _, err := s.Call(context.Background(), "web", runtime.RoleHandle, []byte("version"), nil); err == nil {
				t.Fatal("the old version still answers")
			}
			if got := call(t, s, "web", "state"); got != "3" {
				t.Fatalf("state after the upgrade %q, want 3", got)
			}
			// persisted: the store has the carried state
			if snap, err := s.store.Load("web"); err != nil || snap == nil || string(snap.State) != "3" {
				t.Fatalf("stored snapshot %+v, %v", snap, err)
			}
			call(t, s, "web", "inc")
			if err := s.Rollback(context.Background(), "web"); err != nil {
				t.Fatal(err)
			}
			if got := call(t, s, "web", "version") + " " + call(t, s, "web", "state"); got != "podkit-1 4" {
				t.Fatalf("after rollback %q, want podkit-1 with state 4", got)
			}
		})
	}
}

func TestHandoverEdges(t *testing.T) {
	hog := guest(t, "host/testdata/hog")
	kit, err := os.ReadFile(podkit(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Run("empty snapshot hands nothing over", func(t *testing.T) {
		s, _ := pod(t, module("web", "main", hog, "      resources: {concurrency: 1}\n"), "")
		if err := s.store.Save(snapshot.Snapshot{Module: "web", State: []byte("5")}); err != nil {
			t.Fatal(err)
		}
		if err := s.Upgrade(context.Background(), "web", kit); err != nil {
			t.Fatal(err)
		}
		// the new version started from the stored snapshot, and it stays stored
		if got := call(t, s, "web", "state"); got != "5" {
			t.Fatalf("state %q, want the stored 5", got)
		}
		if snap, err := s.store.Load("web"); err != nil || string(snap.State) != "5" {
			t.Fatalf("stored snapshot %+v %v", snap, err)
		}
	})
	t.Run("refused state rolls back", func(t *testing.T) {
		s, _ := pod(t, module("web", "main", hog, "      resources: {concurrency: 1}\n      config: {snapshot: not-a-number}\n"), "")
		err := s.Upgrade(context.Background(), "web", kit)
		if !errors.Is(err, ErrUpgradeFailed) || !strings.Contains(err.Error(), "refused") {
			t.Fatalf("upgrade: %v", err)
		}
		waitStatus(t, s, "web", "old version back", func(st ModuleStatus) bool { return st.Ready })
		if got := call(t, s, "web", "version"); got != "hog" {
			t.Fatalf("after the refused handover the module answers %q", got)
		}
		if st, _ := s.Status("web"); st.Version != 1 {
			t.Fatalf("version %d", st.Version)
		}
	})
}

// TestUpgradeLosesNoWrite upgrades a stateful module while clients keep incrementing its
// counter: every acknowledged increment is in the final state, none is lost in the handover.
func TestUpgradeLosesNoWrite(t *testing.T) {
	s, _ := pod(t, module("web", "main", podkit(t), "      resources: {concurrency: 1}\n"), "")
	newKit, err := os.ReadFile(guest(t, "runtime/testdata/kit"))
	if err != nil {
		t.Fatal(err)
	}
	var acked atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				lease, err := s.AcquireMain()
				if err != nil {
					continue
				}
				// as Lease.Call does, but to the handle export, which both versions have
				if err = lease.g.awaitHandover(context.Background()); err == nil {
					_, err = lease.g.mod.Call(context.Background(), runtime.RoleHandle, []byte("inc"), nil)
				}
				lease.Release()
				// Not running (the handover) and overloaded (a loaded machine kept the one
				// instance busy past the wait) mean the call never ran: not acknowledged.
				if err == nil {
					acked.Add(1)
				} else if !errors.Is(err, runtime.ErrNotRunning) && !errors.Is(err, runtime.ErrOverloaded) {
					t.Error(err)
					return
				}
			}
		}()
	}
	eventually(t, "some increments", func() bool { return acked.Load() > 20 })
	if err := s.Upgrade(context.Background(), "web", newKit); err != nil {
		t.Fatal(err)
	}
	before := acked.Load()
	eventually(t, "increments on the new version", func() bool { return acked.Load() > before+20 })
	close(stop)
	wg.Wait()
	if got, want := call(t, s, "web", "state"), fmt.Sprint(acked.Load()); got != want {
		t.Fatalf("state %s after %s acknowledged increments", got, want)
	}
}

func TestScaleWithinSpec(t *testing.T) {
	s, _ := pod(t, module("web", "main", podkit(t), "      resources: {concurrency: 8, minInstances: 2}\n      allowScale: {min: 2, max: 3}\n"), "")
	for _, tc := range []struct {
		cmd, want string
	}{
		{"scale:10", "3"},  // capped at allowScale.max, not concurrency
		{"scale:-10", "2"}, // floored at allowScale.min
		{"scale:1", "3"},
	} {
		if got := call(t, s, "web", tc.cmd); got != tc.want {
			t.Errorf("%s: target %s, want %s", tc.cmd, got, tc.want)
		}
	}
	if err := s.Scale("web", 4); !errors.Is(err, ErrInvalid) {
		t.Fatalf("operator scale past the spec: %v", err)
	}
	if err := s.Scale("web", 2); err != nil {
		t.Fatal(err)
	}
	// without allowScale the guest may not scale at all
	s2, _ := pod(t, module("web", "main", podkit(t), "      resources: {concurrency: 8}\n"), "")
	if got := call(t, s2, "web", "scale:2"); got != "-1" {
		t.Fatalf("scale without allowScale: %s", got)
	}
}

func TestLowPriorityParkedWhileMainBusy(t *testing.T) {
	s, _ := pod(t, module("web", "main", podkit(t), "      priority: high\n")+
		module("hog", "sidecar", guest(t, "host/testdata/hog"), "      priority: low\n      tickInterval: 1ms\n      resources: {timeout: 1m}\n      config: {spin: \"200000\"}\n      livenessProbe: {periodSeconds: 1}\n"), "")
	ticks := func() float64 {
		for _, m := range s.Metrics() {
			for _, g := range m.Guest {
				if m.Name == "hog" && g.Name == "hog_ticks" {
					return g.Value
				}
			}
		}
		return 0
	}
	eventually(t, "the sidecar to tick on an idle host", func() bool { return ticks() > 3 })
	// Main busy: a lease held. The sidecar's tick is parked inside its loop.
	lease, err := s.AcquireMain()
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the sidecar to park", func() bool { n, _ := s.Scheduler().Parked(); return n == 1 })
	held := ticks()
	// A low-priority call waits too, and main still serves.
	got := make(chan error, 1)
	go func() {
		_, err := s.Call(context.Background(), "hog", runtime.RoleHandle, []byte("spin:1000"), nil)
		got <- err
	}()
	if out, err := lease.Call(context.Background(), []byte("echo:main"), nil); err != nil || string(out) != "main" {
		t.Fatalf("main while the sidecar is parked: %q %v", out, err)
	}
	if now := ticks(); now != held {
		t.Fatalf("the sidecar ticked (%v -> %v) while main was busy", held, now)
	}
	select {
	case err := <-got:
		t.Fatalf("a low-priority call ran while main was busy: %v", err)
	default:
	}
	if st, _ := s.Status("hog"); st.State != runtime.StateRunning || st.Restarts != 0 {
		t.Fatalf("parked sidecar: %+v", st)
	}
	lease.Release()
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	eventually(t, "the sidecar to resume", func() bool { return ticks() > held })
}

// The snapshot package's store is what upgrades persist to; make sure a carried state is
// written with the old version's digest (it wrote the state).
func TestHandoverSnapshotHeader(t *testing.T) {
	s, _ := pod(t, module("web", "main", podkit(t), "      resources: {concurrency: 1}\n"), "")
	call(t, s, "web", "inc")
	oldSHA := s.byName["web"].sha
	newKit, _ := os.ReadFile(guest(t, "runtime/testdata/kit"))
	if err := s.Upgrade(context.Background(), "web", newKit); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(s.store.Path("web"))
	if err != nil {
		t.Fatal(err)
	}
	snap, err := snapshot.Decode(b)
	if err != nil || snap.WasmSHA256 != oldSHA || string(snap.State) != "1" {
		t.Fatalf("snapshot %+v (%v), want state 1 written by %.12s", snap, err, oldSHA)
	}
}
