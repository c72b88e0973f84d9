package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/runtime"
)

// These tests hold an operator's commands to what they say while a long operation holds the
// module (an upgrade waiting for a version that never gets ready, a reload whose wasmpod_start
// hangs): a stop cuts the operation and stops the module at once, and pause, resume, scale and
// a command whose context ends do not hang behind it.

// longOp starts op on s in the background and waits until it is under way: the version it
// starts reached the lifecycle state underWay for the n-th time (as the shutdown test does).
func longOp(t *testing.T, s *Supervisor, rec *recorder, underWay string, n int, op func(context.Context, *Supervisor) error) <-chan error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- op(context.Background(), s) }()
	eventually(t, fmt.Sprintf("web %s (%d)", underWay, n), func() bool {
		select {
		case err := <-done:
			t.Fatalf("the operation ended before the command: %v", err)
		default:
		}
		k := 0
		for _, l := range rec.lines("module state web ") {
			if l == underWay {
				k++
			}
		}
		return k >= n
	})
	time.Sleep(200 * time.Millisecond) // into the guest's loop, or the first probes
	return done
}

// TestStopCutsOperationUnderWay: an operator's stop during an upgrade to a version that never
// gets ready (a 40 s readiness window) or a reload into a wasmpod_start that spins to its 1 min
// deadline cuts that operation: it fails as an upgrade that did not happen (the old version and
// spec stand), and the stop takes the module down within seconds, with its state saved, so that
// a start brings it back as it was.
func TestStopCutsOperationUnderWay(t *testing.T) {
	const bound = 10 * time.Second // the operations below take 40 s or more on their own
	never := readWasm(t, guest(t, "host/testdata/neverready"))
	stuckWasm := readWasm(t, stuck(t))
	for _, tc := range []struct {
		name, modules, underWay string
		n                       int
		op                      func(ctx context.Context, s *Supervisor) error
		stateful                bool
	}{
		{
			name:     "upgrade to a version never ready",
			modules:  module("web", "main", podkit(t), "      readinessProbe: {periodSeconds: 1, failureThreshold: 40}\n"),
			underWay: "running", n: 2,
			op:       func(ctx context.Context, s *Supervisor) error { return s.Upgrade(ctx, "web", never) },
			stateful: true,
		},
		{
			name:     "reload into a hanging wasmpod_start",
			modules:  module("web", "main", stuck(t), "      resources: {timeout: 1m}\n"),
			underWay: "starting", n: 2,
			op: func(ctx context.Context, s *Supervisor) error {
				m := *s.ModuleSpec("web")
				m.Config = map[string]string{"hang_start": "1"}
				return s.Reconfigure(ctx, &m, stuckWasm)
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			s := newPod(t, tc.modules, "  terminationGracePeriodSeconds: 1\n", func(c *Config) {
				c.UpgradeReadyTimeout = time.Minute
				c.Logger = slog.New(rec)
			})
			if err := s.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			waitStatus(t, s, "web", "ready", func(st ModuleStatus) bool { return st.Ready })
			if tc.stateful {
				call(t, s, "web", "inc")
			}
			before, _ := s.Status("web")
			opDone := longOp(t, s, rec, tc.underWay, tc.n, tc.op)

			begin := time.Now()
			err := s.StopModule(context.Background(), "web")
			took := time.Since(begin)
			t.Logf("StopModule took %v: %v", took.Round(time.Millisecond), err)
			if err != nil {
				t.Errorf("stop: %v", err)
			}
			if took > bound {
				t.Errorf("StopModule took %v during an operation (%s): it waited for it", took.Round(time.Second), tc.name)
			}
			select {
			case err := <-opDone:
				t.Logf("operation: %v", err)
				if !errors.Is(err, ErrUpgradeFailed) || !strings.Contains(err.Error(), "stopped by an operator") {
					t.Errorf("operation cut by the stop returned %v, want ErrUpgradeFailed saying it was stopped", err)
				}
			case <-time.After(bound):
				t.Fatalf("the operation had not returned %v after the stop", bound)
			}
			st, _ := s.Status("web")
			if st.State != runtime.StateStopped || st.Reason != "Stopped" || st.Version != before.Version || st.SHA256 != before.SHA256 || st.NextRestart != nil {
				t.Fatalf("after the stop: state %s reason %q version %d (was %d) next restart %v", st.State, st.Reason, st.Version, before.Version, st.NextRestart)
			}
			if len(s.ModuleSpec("web").Config) != 0 {
				t.Fatalf("the cut reload left its spec: config %v", s.ModuleSpec("web").Config)
			}
			// The old version and spec come back, with the state the stop saved.
			if err := s.StartModule(context.Background(), "web"); err != nil {
				t.Fatal(err)
			}
			waitStatus(t, s, "web", "ready again", func(st ModuleStatus) bool { return st.Ready })
			if tc.stateful {
				if got := call(t, s, "web", "state"); got != "1" {
					t.Fatalf("state after stop and start %q, want 1", got)
				}
			}
			if st, _ := s.Status("web"); st.Failures != 0 || st.Restarts != 0 {
				t.Fatalf("the operator's stop counted as failures %d, restarts %d (last error %q)", st.Failures, st.Restarts, st.LastError)
			}
		})
	}
}

// TestCommandsDoNotHangBehindAnOperation: while an upgrade waits for a version that never gets
// ready, pause, resume and scale fail at once with ErrBusy naming the upgrade, and a restart or
// rollback whose context ends gives up then instead of queueing for the upgrade's 40 s.
func TestCommandsDoNotHangBehindAnOperation(t *testing.T) {
	const quick = 3 * time.Second
	never := readWasm(t, guest(t, "host/testdata/neverready"))
	rec := &recorder{}
	s := newPod(t, module("web", "main", podkit(t), "      resources: {concurrency: 4}\n      readinessProbe: {periodSeconds: 1, failureThreshold: 40}\n"),
		"  terminationGracePeriodSeconds: 1\n", func(c *Config) {
			c.UpgradeReadyTimeout = time.Minute
			c.Logger = slog.New(rec)
		})
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	before := waitStatus(t, s, "web", "ready", func(st ModuleStatus) bool { return st.Ready })
	opDone := longOp(t, s, rec, "running", 2, func(ctx context.Context, s *Supervisor) error { return s.Upgrade(ctx, "web", never) })
	timed := func(what string, cmd func() error) error {
		t.Helper()
		done := make(chan error, 1)
		begin := time.Now()
		go func() { done <- cmd() }()
		select {
		case err := <-done:
			t.Logf("%s during the upgrade took %v: %v", what, time.Since(begin).Round(time.Millisecond), err)
			return err
		case <-time.After(quick):
			t.Errorf("%s during an upgrade to a never-ready version still waited after %v", what, quick)
			return nil
		}
	}
	for _, c := range []struct {
		what string
		cmd  func() error
	}{
		{"Pause", func() error { return s.Pause("web") }},
		{"Resume", func() error { return s.Resume("web") }},
		{"Scale", func() error { return s.Scale("web", 2) }},
	} {
		err := timed(c.what, c.cmd)
		if err != nil && (!errors.Is(err, ErrBusy) || !strings.Contains(err.Error(), "an upgrade is under way (since ")) {
			t.Errorf("%s: %v, want ErrBusy naming the upgrade under way", c.what, err)
		}
		if err == nil && !t.Failed() {
			t.Errorf("%s succeeded during the upgrade", c.what)
		}
	}
	for _, c := range []struct {
		what string
		cmd  func(context.Context) error
	}{
		{"RestartModule", func(ctx context.Context) error { return s.RestartModule(ctx, "web") }},
		{"Rollback", func(ctx context.Context) error { return s.Rollback(ctx, "web") }},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		err := timed(c.what+" with a 300ms context", func() error { return c.cmd(ctx) })
		cancel()
		if err != nil && (!errors.Is(err, ErrBusy) || !errors.Is(err, context.DeadlineExceeded)) {
			t.Errorf("%s: %v, want ErrBusy and the context's end", c.what, err)
		}
	}
	select {
	case err := <-opDone:
		t.Fatalf("the upgrade ended early: %v", err)
	default:
	}
	if st, _ := s.Status("web"); st.State != runtime.StateRunning || st.Restarts != 0 || st.Target != before.Target {
		t.Errorf("the refused commands changed the module: state %s restarts %d target %d (was %d)", st.State, st.Restarts, st.Target, before.Target)
	}
}

// TestRestartCountsRestartsOnly: an operator's restart of a running module whose fresh
// instances never take over (here: its context ends during their readiness wait) restarted
// nothing, the old instances still serve, so Restarts (and wasmpod_module_restarts_total) does
// not move; one that switches counts one.
func TestRestartCountsRestartsOnly(t *testing.T) {
	s, _ := pod(t, module("web", "main", podkit(t), "      readinessProbe: {initialDelaySeconds: 2, periodSeconds: 1}\n"), "")
	waitStatus(t, s, "web", "ready", func(st ModuleStatus) bool { return st.Ready })
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	err := s.RestartModule(ctx, "web")
	cancel()
	if !errors.Is(err, ErrUpgradeFailed) {
		t.Fatalf("restart cut in its readiness wait: %v, want ErrUpgradeFailed", err)
	}
	if st, _ := s.Status("web"); st.Restarts != 0 || !st.Ready || st.State != runtime.StateRunning {
		t.Fatalf("after a restart that did not happen: restarts %d, ready %v, state %s", st.Restarts, st.Ready, st.State)
	}
	if err := s.RestartModule(context.Background(), "web"); err != nil {
		t.Fatal(err)
	}
	if st, _ := s.Status("web"); st.Restarts != 1 || !st.Ready {
		t.Fatalf("after a restart: restarts %d, ready %v, want 1 and ready", st.Restarts, st.Ready)
	}
}

// TestStopCutsAStart: an operator's start whose wasmpod_start spins to its 1 min deadline is
// cut by a stop: the start fails as a conflict saying so, and the module is stopped, with no
// failure counted and no restart scheduled.
func TestStopCutsAStart(t *testing.T) {
	rec := &recorder{}
	s := newPod(t, module("web", "main", stuck(t), "      resources: {timeout: 1m}\n"), "  terminationGracePeriodSeconds: 1\n", func(c *Config) {
		c.Logger = slog.New(rec)
	})
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s.StopModule(context.Background(), "web"); err != nil {
		t.Fatal(err)
	}
	// A stopped module takes a new spec for its next start.
	m := *s.ModuleSpec("web")
	m.Config = map[string]string{"hang_start": "1"}
	if err := s.Reconfigure(context.Background(), &m, readWasm(t, stuck(t))); err != nil {
		t.Fatal(err)
	}
	opDone := longOp(t, s, rec, "starting", 2, func(ctx context.Context, s *Supervisor) error { return s.StartModule(ctx, "web") })
	begin := time.Now()
	err := s.StopModule(context.Background(), "web")
	took := time.Since(begin)
	t.Logf("StopModule took %v: %v", took.Round(time.Millisecond), err)
	if err != nil || took > 10*time.Second {
		t.Errorf("StopModule during a start in a hanging wasmpod_start took %v: %v", took.Round(time.Second), err)
	}
	select {
	case err := <-opDone:
		t.Logf("start: %v", err)
		if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "stopped by an operator") {
			t.Errorf("start cut by the stop returned %v, want ErrConflict saying it was stopped", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the start had not returned 10s after the stop")
	}
	if st, _ := s.Status("web"); st.State != runtime.StateStopped || st.Reason != "Stopped" || st.Failures != 0 || st.NextRestart != nil {
		t.Fatalf("after the stop: state %s reason %q failures %d next restart %v", st.State, st.Reason, st.Failures, st.NextRestart)
	}
}
