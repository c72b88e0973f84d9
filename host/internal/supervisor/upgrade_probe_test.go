package supervisor

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/runtime"
)

// TestUpgradeReadinessFollowsTheProbes: an upgrade (and a restart, which is one) waits for the
// new version as the module's probes say: it needs successThreshold successes even when that
// is more than failureThreshold, and a startup probe gives a slow version its own window
// before the readiness probe's thresholds count (as Kubernetes holds readiness probes until the
// startup probe succeeds). A version that never gets ready is still rolled back.
func TestUpgradeReadinessFollowsTheProbes(t *testing.T) {
	kit := podkit(t)
	timed := readWasm(t, guest(t, "host/testdata/timed"))
	never := readWasm(t, guest(t, "host/testdata/neverready"))
	for _, tc := range []struct {
		name, extra string
		op          func(*Supervisor) error
		wantErr     error
		wantAnswer  string // what "version" gets afterwards
	}{
		{
			name:       "restart with successThreshold above failureThreshold",
			extra:      "      readinessProbe: {periodSeconds: 1, successThreshold: 2, failureThreshold: 1}\n",
			op:         func(s *Supervisor) error { return s.RestartModule(context.Background(), "web") },
			wantAnswer: "podkit-1",
		},
		{
			name: "startup probe window for a slow new version",
			extra: "      config: {readyAfter: 3s}\n" +
				"      startupProbe: {periodSeconds: 1, failureThreshold: 10}\n" +
				"      readinessProbe: {periodSeconds: 1, failureThreshold: 1}\n",
			op:         func(s *Supervisor) error { return s.Upgrade(context.Background(), "web", timed) },
			wantAnswer: "timed",
		},
		{
			name: "never ready is rolled back after the startup window",
			extra: "      startupProbe: {periodSeconds: 1, failureThreshold: 2}\n" +
				"      readinessProbe: {periodSeconds: 1, failureThreshold: 1}\n",
			op:         func(s *Supervisor) error { return s.Upgrade(context.Background(), "web", never) },
			wantErr:    ErrUpgradeFailed,
			wantAnswer: "podkit-1",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := pod(t, module("web", "main", kit, "      resources: {concurrency: 1}\n"+tc.extra), "")
			waitStatus(t, s, "web", "ready", func(st ModuleStatus) bool { return st.Ready })
			err := tc.op(s)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Fatalf("got %v, want %v", err, tc.wantErr)
			}
			if got := call(t, s, "web", "version"); got != tc.wantAnswer {
				t.Fatalf("the module answers %q, want %q", got, tc.wantAnswer)
			}
		})
	}
}

// TestUpgradeThatFailsLater: a new version that passes start and the upgrade's readiness check,
// then fails its liveness probe a few seconds later, is not rolled back by itself (the switch
// is done; Kubernetes does not roll a Deployment back either): it crash-loops under the restart
// policy with its counters saying so, the version stays the new one, and an operator's
// Rollback from the back-off brings the old version back, which the pending restart then leaves
// alone.
func TestUpgradeThatFailsLater(t *testing.T) {
	timed := readWasm(t, guest(t, "host/testdata/timed"))
	s, _ := pod(t, module("web", "main", podkit(t), "      resources: {concurrency: 1}\n      config: {unhealthyAfter: 2s}\n      livenessProbe: {periodSeconds: 1, failureThreshold: 1}\n"),
		"  restartBackoff: {initial: 1s, max: 2s, resetAfter: 1h}\n")
	waitStatus(t, s, "web", "ready", func(st ModuleStatus) bool { return st.Ready })
	if err := s.Upgrade(context.Background(), "web", timed); err != nil {
		t.Fatal(err)
	}
	if got := call(t, s, "web", "version"); got != "timed" {
		t.Fatalf("after the upgrade the module answers %q", got)
	}
	st := waitStatus(t, s, "web", "two liveness failures", func(st ModuleStatus) bool { return st.Failures >= 2 })
	if st.Version != 2 || !strings.Contains(st.LastError, "liveness") || st.Restarts < 1 {
		t.Fatalf("after the new version failed: version %d, restarts %d, last error %q", st.Version, st.Restarts, st.LastError)
	}
	// Roll back, whether it is running or waiting in back-off at that moment.
	if err := s.Rollback(context.Background(), "web"); err != nil {
		t.Fatal(err)
	}
	st = waitStatus(t, s, "web", "old version ready", func(st ModuleStatus) bool { return st.Ready })
	if st.Version != 3 {
		t.Fatalf("version after the rollback %d, want 3", st.Version)
	}
	// The old version stays, past any restart that was pending (podkit ignores unhealthyAfter).
	time.Sleep(3 * time.Second)
	if got := call(t, s, "web", "version"); got != "podkit-1" {
		t.Fatalf("after the rollback the module answers %q", got)
	}
	if st, _ := s.Status("web"); st.Reason != "" || st.State != runtime.StateRunning {
		t.Fatalf("after the rollback: state %s, reason %q", st.State, st.Reason)
	}
}

// TestEmptySnapshotKeepsAnotherVersionsState: a stateful version (podkit, a counter) is
// upgraded to a stateless one (hog: the Go SDK answers an empty snapshot), which is then
// stopped. Its empty state must not replace the counter the stateful version wrote, as it does
// not in the upgrade's handover: between versions an empty snapshot cannot be told from "no
// state". Else the rollback finds a snapshot its version refuses, and the counter is gone.
func TestEmptySnapshotKeepsAnotherVersionsState(t *testing.T) {
	hog := readWasm(t, guest(t, "host/testdata/hog"))
	s, _ := pod(t, module("web", "main", podkit(t), "      resources: {concurrency: 1}\n"), "")
	for range 3 {
		call(t, s, "web", "inc")
	}
	if err := s.Upgrade(context.Background(), "web", hog); err != nil {
		t.Fatal(err)
	}
	if err := s.StopModule(context.Background(), "web"); err != nil {
		t.Fatal(err)
	}
	if snap, err := s.store.Load("web"); err != nil || snap == nil || string(snap.State) != "3" {
		t.Fatalf("stored snapshot after the stateless version stopped: %+v, %v; want the counter 3", snap, err)
	}
	if err := s.Rollback(context.Background(), "web"); err != nil {
		t.Fatal(err)
	}
	if err := s.StartModule(context.Background(), "web"); err != nil {
		t.Fatal(err)
	}
	if got := call(t, s, "web", "version") + " " + call(t, s, "web", "state"); got != "podkit-1 3" {
		t.Fatalf("after the rollback %q, want podkit-1 with its counter 3", got)
	}
}

// TestPauseSurvivesAVersionSwitch: an operator's pause holds until Resume: an upgrade (a hot
// load, say) or a restart that switches versions while the module is paused leaves the new
// version paused, instead of letting traffic in behind the operator's back.
func TestPauseSurvivesAVersionSwitch(t *testing.T) {
	newKit := readWasm(t, guest(t, "runtime/testdata/kit"))
	for _, tc := range []struct {
		name, extra string
		op          func(*Supervisor) error
	}{
		{"upgrade", "", func(s *Supervisor) error { return s.Upgrade(context.Background(), "web", newKit) }},
		{"restart", "", func(s *Supervisor) error { return s.RestartModule(context.Background(), "web") }},
		// The new version's startup probe must not count the pause as failures (and restart it).
		{"restart with a startup probe", "      startupProbe: {periodSeconds: 1, failureThreshold: 2}\n", func(s *Supervisor) error {
			if err := s.RestartModule(context.Background(), "web"); err != nil {
				return err
			}
			time.Sleep(4 * time.Second) // past the startup probe's two periods
			return nil
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := pod(t, module("web", "main", podkit(t), "      resources: {concurrency: 1}\n"+tc.extra), "")
			waitStatus(t, s, "web", "ready", func(st ModuleStatus) bool { return st.Ready })
			call(t, s, "web", "inc")
			if err := s.Pause("web"); err != nil {
				t.Fatal(err)
			}
			if err := tc.op(s); err != nil {
				t.Fatal(err)
			}
			if st, _ := s.Status("web"); st.State != runtime.StatePaused || st.Failures != 0 {
				t.Fatalf("after the switch the module is %s after %d failures (last error %q), want paused without any", st.State, st.Failures, st.LastError)
			}
			if _, err := s.Call(context.Background(), "web", runtime.RoleHandle, []byte("state"), nil); !errors.Is(err, runtime.ErrNotRunning) {
				t.Fatalf("a call to the paused module: %v, want ErrNotRunning", err)
			}
			if ok, _ := s.Ready(); ok {
				t.Fatal("/readyz is ok with main paused")
			}
			if err := s.Resume("web"); err != nil {
				t.Fatal(err)
			}
			if got := call(t, s, "web", "state"); got != "1" {
				t.Fatalf("state after resume %q, want 1", got)
			}
		})
	}
}
