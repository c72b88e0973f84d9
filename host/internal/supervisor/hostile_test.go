package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/internal/wasmbuild"
	"github.com/wasmpod/wasmpod/runtime"
)

// These tests run guests that break the lifecycle contract on purpose (host/testdata/stuck:
// lifecycle exports that never return) and hold the supervisor to its promises: the pod's
// grace period bounds a shutdown whatever the modules do, whatever operation is under way.

// stuck builds (once) the WAT guest host/testdata/stuck and returns its path.
func stuck(t *testing.T) string {
	return built(t, "host/testdata/stuck/stuck.wat", wasmbuild.WAT)
}

// newPod is pod without Start: a supervisor for a pod named after the test, with tweak applied
// to its config, shut down when the test ends (the test may shut it down itself first).
func newPod(t *testing.T, modules, specExtra string, tweak func(*Config)) *Supervisor {
	t.Helper()
	p := testPod(t, specExtra, modules)
	cfg := DefaultConfig()
	cfg.Pod, cfg.StateDir, cfg.Logger = p, stateDir, slog.New(slog.DiscardHandler)
	cfg.ProbePoll = 10 * time.Millisecond
	if tweak != nil {
		tweak(&cfg)
	}
	s, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	for _, m := range s.Modules() {
		os.Remove(s.store.Path(m)) // a rerun starts from no state
	}
	return s
}

func readWasm(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestShutdownCutsOperationsUnderWay: SIGTERM (Shutdown) while an operation holds a module, a
// start whose wasmpod_start never returns or an upgrade waiting for a version that never gets
// ready, ends that operation and finishes within the grace period (plus a generous margin),
// not when the operation's own, much longer, deadline or readiness window runs out.
func TestShutdownCutsOperationsUnderWay(t *testing.T) {
	const grace = time.Second
	const bound = 15 * time.Second // the operations below would take 60s or more on their own
	never := readWasm(t, guest(t, "host/testdata/neverready"))
	stuckWasm := readWasm(t, stuck(t))
	for _, tc := range []struct {
		name    string
		modules string
		// started reports whether the pod is started before op (else op starts it).
		started bool
		op      func(ctx context.Context, s *Supervisor) error
		// underWay is the lifecycle state the module's version that op runs must reach (the
		// n-th time) before the shutdown comes.
		underWay string
		n        int
	}{
		{
			name:     "pod start in a hanging wasmpod_start",
			modules:  module("web", "main", stuck(t), "      resources: {timeout: 1m}\n      config: {hang_start: \"1\"}\n"),
			op:       func(ctx context.Context, s *Supervisor) error { return s.Start(ctx) },
			underWay: "starting", n: 1,
		},
		{
			name:    "upgrade to a version never ready",
			modules: module("web", "main", podkit(t), "      readinessProbe: {periodSeconds: 1, failureThreshold: 120}\n"),
			started: true,
			op: func(ctx context.Context, s *Supervisor) error {
				return s.Upgrade(ctx, "web", never)
			},
			underWay: "running", n: 2, // the old version's, then the new one's
		},
		{
			name:    "reload into a hanging wasmpod_start",
			modules: module("web", "main", stuck(t), "      resources: {timeout: 1m}\n"),
			started: true,
			op: func(ctx context.Context, s *Supervisor) error {
				m := *s.ModuleSpec("web")
				m.Config = map[string]string{"hang_start": "1"}
				return s.Reconfigure(ctx, &m, stuckWasm)
			},
			underWay: "starting", n: 2,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			s := newPod(t, tc.modules, fmt.Sprintf("  terminationGracePeriodSeconds: %d\n", int(grace.Seconds())), func(c *Config) {
				c.UpgradeReadyTimeout = time.Minute
				c.Logger = slog.New(rec)
			})
			if tc.started {
				if err := s.Start(context.Background()); err != nil {
					t.Fatal(err)
				}
				waitStatus(t, s, "web", "ready", func(st ModuleStatus) bool { return st.Ready })
			}
			opDone := make(chan error, 1)
			go func() { opDone <- tc.op(context.Background(), s) }()
			// Let the operation get under way (the guest spins or the new version is probed).
			eventually(t, fmt.Sprintf("web %s (%d)", tc.underWay, tc.n), func() bool {
				select {
				case err := <-opDone:
					t.Fatalf("the operation ended before the shutdown: %v", err)
				default:
				}
				n := 0
				for _, l := range rec.lines("module state web ") {
					if l == tc.underWay {
						n++
					}
				}
				return n >= tc.n
			})
			time.Sleep(100 * time.Millisecond) // into the guest's loop, or the first probes
			took, _ := timedShutdown(t, s, grace)
			if took > bound {
				t.Errorf("shutdown with a grace period of %v took %v: it waited for the operation under way", grace, took.Round(time.Millisecond))
			}
			select {
			case err := <-opDone:
				t.Logf("operation: %v", err)
				if want := map[bool]error{true: ErrUpgradeFailed, false: ErrClosed}[tc.started]; !errors.Is(err, want) {
					t.Errorf("operation cut by the shutdown returned %v, want %v", err, want)
				}
			case <-time.After(bound):
				t.Fatalf("the operation had not returned %v after the shutdown", bound)
			}
		})
	}
}

// TestShutdownBoundedWithStuckHooks: a module whose lifecycle exports never return (the stop
// or snapshot hook that runs at shutdown, or a health probe or tick under way when it comes)
// holds a shutdown for at most the grace period plus one call deadline (resources.timeout,
// which the runtime gives the hooks after the drain) and a second of unwinding, and the error
// names the hook that was cut.
func TestShutdownBoundedWithStuckHooks(t *testing.T) {
	const grace, timeout = time.Second, 3 * time.Second
	const bound = grace + timeout + 8*time.Second // generous: the runtime's bound plus slack
	for _, tc := range []struct {
		hang, extra string
		wantErr     string // in Shutdown's error; "" for none
	}{
		{"hang_stop", "", "wasmpod_stop"},
		{"hang_snapshot", "", "wasmpod_snapshot"},
		{"hang_health", "      livenessProbe: {periodSeconds: 1, timeoutSeconds: 10, failureThreshold: 100}\n", ""},
		{"hang_tick", "      tickInterval: 100ms\n", ""},
	} {
		t.Run(tc.hang, func(t *testing.T) {
			s := newPod(t, module("web", "main", stuck(t), fmt.Sprintf("      resources: {timeout: %s}\n      config: {%s: \"1\"}\n%s", timeout, tc.hang, tc.extra)),
				fmt.Sprintf("  terminationGracePeriodSeconds: %d\n", int(grace.Seconds())), nil)
			if err := s.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			waitStatus(t, s, "web", "running", func(st ModuleStatus) bool { return st.Ready })
			time.Sleep(500 * time.Millisecond) // a probe or tick under way
			took, err := timedShutdown(t, s, grace)
			if took > bound {
				t.Errorf("shutdown with a grace period of %v and a call timeout of %v took %v", grace, timeout, took.Round(time.Millisecond))
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("shutdown error %v, want one naming %s", err, tc.wantErr)
			}
		})
	}
}

// TestShutdownLeavesATrustedProbeBehind: a trusted module is never cut (its timeout is only
// advisory), so a health check that sleeps 40s keeps its probe goroutine for 40s. The runtime
// gives such a call the grace period and one call timeout before it closes the module around
// it; the supervisor must not wait for the probe longer than that either, or a broken trusted
// module holds the whole pod's shutdown past its grace period.
func TestShutdownLeavesATrustedProbeBehind(t *testing.T) {
	const grace, timeout = time.Second, 2 * time.Second
	const bound = 15 * time.Second // the probe alone sleeps 40s
	s := newPod(t, module("web", "main", stuck(t), fmt.Sprintf("      trusted: true\n      resources: {timeout: %s}\n      config: {sleep_health: \"1\"}\n      livenessProbe: {periodSeconds: 1, failureThreshold: 100}\n", timeout)),
		fmt.Sprintf("  terminationGracePeriodSeconds: %d\n", int(grace.Seconds())), nil)
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, s, "web", "ready", func(st ModuleStatus) bool { return st.Ready })
	eventually(t, "the health check to be under way", func() bool {
		g := s.byName["web"].active.Load()
		return g != nil && g.mod.Stats().Busy > 0
	})
	took, err := timedShutdown(t, s, grace)
	if took > bound {
		t.Errorf("shutdown with a grace period of %v and a call timeout of %v took %v: it waited for the trusted guest's probe", grace, timeout, took.Round(time.Millisecond))
	}
	// The engine is closed, but not under the sleeping guest (the race detector would see it):
	// what the probe uses is released when it returns, and the error says so.
	if !errors.Is(err, runtime.ErrCallsRunning) || !strings.Contains(err.Error(), "1 probe or tick call(s) of a trusted module") {
		t.Errorf("shutdown error %v, want one wrapping runtime.ErrCallsRunning and naming the probe", err)
	}
}

// TestCountersNeverGoBackDuringAStop: the call counters a scrape sees (Metrics) include every
// version the module ran, so they never go back, also while an old version is being stopped:
// here its stop hook spins to its deadline during a restart, a window of seconds.
func TestCountersNeverGoBackDuringAStop(t *testing.T) {
	s := newPod(t, module("web", "main", stuck(t), "      resources: {timeout: 2s}\n      config: {hang_stop: \"1\"}\n"),
		"  terminationGracePeriodSeconds: 1\n", nil)
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	calls := func() uint64 {
		for _, m := range s.Metrics() {
			if m.Name == "web" {
				return m.Stats.Calls
			}
		}
		t.Fatal("no metrics for web")
		return 0
	}
	const n = 5
	for range n {
		call(t, s, "web", "x")
	}
	if got := calls(); got != n {
		t.Fatalf("calls %d after %d calls", got, n)
	}
	done := make(chan error, 1)
	go func() { done <- s.RestartModule(context.Background(), "web") }()
	lowest := uint64(n)
	for polling := true; polling; {
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("restart: %v", err)
			}
			polling = false
		case <-time.After(5 * time.Millisecond):
		}
		lowest = min(lowest, calls())
	}
	if lowest < n {
		t.Fatalf("the calls counter went back from %d to %d while the old version stopped", n, lowest)
	}
	if got := calls(); got != n {
		t.Fatalf("calls %d after the restart, want %d", got, n)
	}
}

// timedShutdown shuts s down under a context of the grace period, as a SIGTERM does, and returns
// how long that took and its error.
func timedShutdown(t *testing.T, s *Supervisor, grace time.Duration) (time.Duration, error) {
	t.Helper()
	begin := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	err := s.Shutdown(ctx)
	took := time.Since(begin)
	t.Logf("shutdown took %v: %v", took.Round(time.Millisecond), err)
	return took, err
}
