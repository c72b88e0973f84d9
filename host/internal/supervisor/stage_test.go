package supervisor

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/host/internal/podspec"
	"github.com/wasmpod/wasmpod/internal/wasmbuild"
	"github.com/wasmpod/wasmpod/runtime"
)

// stageGuest is a native stage module (exports wasmpod_stage); stageCmd a plain WASI command.
func stageGuest(t *testing.T) string { return guest(t, "host/testdata/stageguest") }

func stageCmd(t *testing.T) string { return built(t, "host/testdata/stagecmd", wasmbuild.GoCommand) }

// runCommand runs one admitted run of a command stage on a file holding content.
func runCommand(t *testing.T, ctx context.Context, r *StageRun, name, content string) (runtime.RunResult, error) {
	t.Helper()
	in := filepath.Join(t.TempDir(), "input")
	if err := os.WriteFile(in, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return r.Command.RunInputs(ctx, []runtime.CommandInput{{Name: name, Path: in}}, name, t.TempDir())
}

func TestStageKinds(t *testing.T) {
	s, _ := pod(t,
		module("native", "stage", stageGuest(t), "")+
			module("cmd", "stage", stageCmd(t), "      resources: {concurrency: 3, timeout: 2s}\n      priority: low\n")+
			module("web", "main", podkit(t), ""), "")
	ctx := context.Background()
	if got := strings.Join(s.StageModules(), ","); got != "native,cmd" {
		t.Errorf("StageModules() = %s", got)
	}
	tests := []struct {
		module     string
		wantCalls  string
		wantTarget int
		wantImage  string // the image note's prefix after one run
	}{
		{"native", "stage", 1, "pending: "}, // built once a second instance is needed
		{"cmd", "command", 3, "ready: "},    // built after the first run
	}
	for _, tt := range tests {
		t.Run(tt.module, func(t *testing.T) {
			st, err := s.Status(tt.module)
			if err != nil {
				t.Fatal(err)
			}
			if st.State != runtime.StateRunning || !st.Ready || st.Calls != tt.wantCalls || st.Target != tt.wantTarget || st.StartedAt == nil {
				t.Errorf("status: state %s ready %v calls %q target %d started %v", st.State, st.Ready, st.Calls, st.Target, st.StartedAt)
			}
			rctx, run, err := s.AcquireStage(ctx, tt.module)
			if err != nil {
				t.Fatal(err)
			}
			if (run.Command != nil) != (tt.wantCalls == "command") || (run.Module != nil) == (run.Command != nil) {
				t.Fatalf("run has module %v, command %v", run.Module != nil, run.Command != nil)
			}
			if dl, ok := rctx.Deadline(); !ok || time.Until(dl) > st.Spec.Resources.Timeout.Std() {
				t.Errorf("run context deadline %v (set %v), want within resources.timeout %s", dl, ok, st.Spec.Resources.Timeout)
			}
			if run.MaxInputBytes != int64(runtime.DefaultConfig().MaxInputBytes) || run.MaxOutputBytes != int64(runtime.DefaultConfig().MaxOutputBytes) {
				t.Errorf("limits %d/%d", run.MaxInputBytes, run.MaxOutputBytes)
			}
			if st, _ := s.Status(tt.module); st.Runs != 1 {
				t.Errorf("runs in flight = %d, want 1", st.Runs)
			}
			var out string
			if run.Command != nil {
				res, err := runCommand(t, rctx, run, "x.txt", "abc")
				run.Done(err)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := os.ReadFile(res.Outputs[0])
				out = string(b)
			} else {
				b, err := run.Module.Call(rctx, runtime.RoleStage, []byte("abc"), nil)
				run.Done(err)
				if err != nil {
					t.Fatal(err)
				}
				out = string(b)
			}
			if !strings.Contains(out, "ABC") {
				t.Errorf("output %q", out)
			}
			// The status says whether the next instances or runs start from an instance image.
			eventually(t, tt.module+"'s image "+tt.wantImage, func() bool {
				st, err := s.Status(tt.module)
				return err == nil && strings.HasPrefix(st.Image, tt.wantImage)
			})
			run.Done(nil) // idempotent
			if st, _ := s.Status(tt.module); st.Runs != 0 {
				t.Errorf("runs in flight after Done = %d", st.Runs)
			}
		})
	}

	// A command takes no calls and has no instances to pause or scale.
	if _, err := s.Call(ctx, "cmd", runtime.RoleStage, nil, nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("Call on a command: %v", err)
	}
	if _, err := s.Module("cmd"); !errors.Is(err, ErrInvalid) {
		t.Errorf("Module on a command: %v", err)
	}
	for what, err := range map[string]error{"pause": s.Pause("cmd"), "resume": s.Resume("cmd"), "scale": s.Scale("cmd", 1)} {
		if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "WASI command stage") {
			t.Errorf("%s of a command: %v", what, err)
		}
	}
	// Draining stops ingress, not runs: the host stops its workers before the modules.
	if err := s.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	if _, run, err := s.AcquireStage(ctx, "native"); err != nil {
		t.Errorf("AcquireStage while draining: %v", err)
	} else {
		run.Done(nil)
	}
	// Only stage modules take runs.
	if _, _, err := s.AcquireStage(ctx, "web"); !errors.Is(err, ErrInvalid) {
		t.Errorf("AcquireStage(main) = %v", err)
	}
	if _, _, err := s.AcquireStage(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("AcquireStage(unknown) = %v", err)
	}

	// Runs of a command are counted like calls: one success above, then a failure.
	_, run, err := s.AcquireStage(ctx, "cmd")
	if err != nil {
		t.Fatal(err)
	}
	run.Done(&runtime.ExitError{Command: "cmd", Code: 3})
	var mm ModuleMetrics
	for _, m := range s.Metrics() {
		if m.Name == "cmd" {
			mm = m
		}
	}
	if mm.Stats.Calls != 2 || mm.Stats.Errors != 1 || mm.Stats.GuestErrors != 1 || mm.Stats.Latency.Count != 2 || mm.State != runtime.StateRunning {
		t.Errorf("command metrics: %+v", mm.Stats)
	}

	// Stop and start again: counters carry over, and the command is loaded anew.
	if err := s.StopModule(ctx, "cmd"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.AcquireStage(ctx, "cmd"); !errors.Is(err, ErrNotReady) {
		t.Errorf("AcquireStage on a stopped module: %v", err)
	}
	if st, _ := s.Status("cmd"); st.State != runtime.StateStopped || st.Ready {
		t.Errorf("stopped command: state %s ready %v", st.State, st.Ready)
	}
	if err := s.StartModule(ctx, "cmd"); err != nil {
		t.Fatal(err)
	}
	for _, m := range s.Metrics() {
		if m.Name == "cmd" && m.Stats.Calls != 2 {
			t.Errorf("calls after restart = %d, want the 2 from before", m.Stats.Calls)
		}
	}

	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.AcquireStage(ctx, "cmd"); !errors.Is(err, ErrNotReady) {
		t.Errorf("AcquireStage after shutdown: %v", err)
	}
}

// TestStageUpgradeSwitchesKind upgrades a stage module from its native build to a command and
// back: a run admitted before the upgrade finishes on its version, the next one gets the new
// version, and the old version is released only once its run is done.
func TestStageUpgradeSwitchesKind(t *testing.T) {
	s, _ := pod(t, module("st", "stage", stageGuest(t), ""), "")
	ctx := context.Background()
	cmdWasm, err := os.ReadFile(stageCmd(t))
	if err != nil {
		t.Fatal(err)
	}
	nativeWasm, err := os.ReadFile(stageGuest(t))
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		wasm        []byte
		wantCommand bool
	}{
		{cmdWasm, true},
		{nativeWasm, false},
		{cmdWasm, true},
	}
	for i, step := range steps {
		_, old, err := s.AcquireStage(ctx, "st")
		if err != nil {
			t.Fatal(err)
		}
		upgraded := make(chan error, 1)
		go func() { upgraded <- s.Upgrade(ctx, "st", step.wasm) }()
		// The switch happens while the old run is in flight; the upgrade then waits for it.
		eventually(t, "the switch", func() bool {
			st, _ := s.Status("st")
			return (st.Calls == "command") == step.wantCommand
		})
		rctx, cur, err := s.AcquireStage(ctx, "st")
		if err != nil {
			t.Fatal(err)
		}
		if (cur.Command != nil) != step.wantCommand {
			t.Fatalf("step %d: the run after the switch has command %v, want %v", i, cur.Command != nil, step.wantCommand)
		}
		select {
		case err := <-upgraded:
			t.Fatalf("step %d: upgrade returned (%v) while a run of the old version was in flight", i, err)
		case <-time.After(50 * time.Millisecond):
		}
		// The old version still works for its run.
		if old.Command != nil {
			_, err = runCommand(t, ctx, old, "a.txt", "x")
		} else {
			_, err = old.Module.Call(ctx, runtime.RoleStage, []byte("x"), nil)
		}
		old.Done(err)
		if err != nil {
			t.Fatalf("step %d: the old version's run failed: %v", i, err)
		}
		if err := <-upgraded; err != nil {
			t.Fatal(err)
		}
		cur.Done(rctx.Err())
		if st, _ := s.Status("st"); st.Version != i+2 {
			t.Errorf("version %d, want %d", st.Version, i+2)
		}
	}
	if err := s.Rollback(ctx, "st"); err != nil {
		t.Fatal(err)
	}
	if st, _ := s.Status("st"); st.Calls != "stage" {
		t.Errorf("after rollback calls %q, want the native version", st.Calls)
	}
}

// TestStageStopCutsRuns checks that a run still going when its version's grace period is over
// is cut through its context.
func TestStageStopCutsRuns(t *testing.T) {
	s, _ := pod(t, module("st", "stage", stageCmd(t), ""), "")
	rctx, run, err := s.AcquireStage(context.Background(), "st")
	if err != nil {
		t.Fatal(err)
	}
	stopped := make(chan error, 1)
	t0 := time.Now()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		stopped <- s.StopModule(ctx, "st")
	}()
	<-rctx.Done()
	if d := time.Since(t0); d < 150*time.Millisecond {
		t.Errorf("run cut after %s, before the stop's deadline", d)
	}
	run.Done(rctx.Err())
	if err := <-stopped; err != nil {
		t.Fatalf("stop: %v", err)
	}
}

func TestCommandStageMisfits(t *testing.T) {
	tests := []struct {
		extra string
		want  string
	}{
		{"      config: {a: b}\n      trusted: true\n", "a command stage cannot have config, trusted"},
		{"      tickInterval: 1s\n      readinessProbe: {}\n", "cannot have readinessProbe, tickInterval"},
		{"      volumeMounts: [{name: v, mountPath: /v}]\n", "cannot have volumeMounts"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			y := "apiVersion: wasmpod.dev/v1\nkind: Pod\nmetadata: {name: misfit}\nspec:\n  volumes: [{name: v, emptyDir: {}}]\n  modules:\n" + module("st", "stage", stageCmd(t), tt.extra)
			p, err := podspec.Parse([]byte(y), t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			cfg := DefaultConfig()
			cfg.Pod, cfg.StateDir, cfg.Logger = p, stateDir, slog.New(slog.DiscardHandler)
			s, err := New(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Shutdown(context.Background())
			err = s.Start(context.Background())
			if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "WASI command (it exports _start, not wasmpod_stage)") {
				t.Fatalf("Start = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestStageWithoutStageExport(t *testing.T) {
	// podkit exports neither wasmpod_stage nor _start: the error says what a stage needs.
	y := "apiVersion: wasmpod.dev/v1\nkind: Pod\nmetadata: {name: nostage}\nspec:\n  modules:\n" + module("st", "stage", podkit(t), "")
	p, err := podspec.Parse([]byte(y), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Pod, cfg.StateDir = p, stateDir
	s, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(context.Background())
	err = s.Start(context.Background())
	if !errors.Is(err, runtime.ErrNoExport) || !strings.Contains(err.Error(), "role stage needs export wasmpod_stage (or be a WASI command exporting _start)") {
		t.Fatalf("Start = %v", err)
	}
}

// TestStageRunSlots checks that a stage module's runs are bounded by its concurrency.
func TestStageRunSlots(t *testing.T) {
	s, _ := pod(t, module("st", "stage", stageCmd(t), "      resources: {concurrency: 1}\n"), "")
	ctx := context.Background()
	_, first, err := s.AcquireStage(ctx, "st")
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if _, _, err := s.AcquireStage(short, "st"); !errors.Is(err, runtime.ErrOverloaded) || !strings.Contains(err.Error(), "all 1 run slots (resources.concurrency) stayed busy") {
		t.Fatalf("second run while the only slot is taken: %v", err)
	}
	got := make(chan error, 1)
	go func() {
		_, run, err := s.AcquireStage(ctx, "st")
		if err == nil {
			run.Done(nil)
		}
		got <- err
	}()
	select {
	case err := <-got:
		t.Fatalf("a run was admitted past the bound (%v)", err)
	case <-time.After(50 * time.Millisecond):
	}
	first.Done(nil)
	if err := <-got; err != nil {
		t.Fatalf("the waiting run, once the slot freed: %v", err)
	}
}
