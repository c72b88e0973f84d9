package supervisor

import (
	"context"
	"testing"
)

// TestLogLimitsFromSpec: resources.logs reaches the runtime, and the lines its limit drops are
// counted in the module's metrics (wasmpod_module_log_lines_dropped_total); a module without
// it keeps the runtime's default, which 50 lines are far below.
func TestLogLimitsFromSpec(t *testing.T) {
	for _, tc := range []struct {
		name, extra string
		wantMin     uint64 // least lines dropped of 50
		wantMax     uint64
	}{
		{"limited", "      resources: {logs: {linesPerSecond: 1, burst: 5}}\n", 40, 50},
		{"default", "", 0, 0},
		{"unlimited", "      resources: {logs: {unlimited: true}}\n", 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := pod(t, module("web", "main", podkit(t), tc.extra), "")
			waitStatus(t, s, "web", "ready", func(st ModuleStatus) bool { return st.Ready })
			for range 50 {
				call(t, s, "web", "log:a line")
			}
			checkDropped(t, s, "web", 50, tc.wantMin, tc.wantMax)
		})
	}
}

// TestLogLimitsFromSpecCommandStage: resources.logs reaches a command stage too (its runs
// share one limit) and its drops show in the metrics; before, command stages always had the
// runtime's default. Each failing run writes one stderr line.
func TestLogLimitsFromSpecCommandStage(t *testing.T) {
	for _, tc := range []struct {
		name, extra      string
		wantMin, wantMax uint64 // lines dropped of 10
	}{
		{"limited", "      resources: {logs: {linesPerSecond: 1, burst: 2}}\n", 6, 8},
		{"default", "", 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := pod(t, module("cmd", "stage", stageCmd(t), tc.extra), "")
			for range 10 {
				ctx, run, err := s.AcquireStage(context.Background(), "cmd")
				if err != nil {
					t.Fatal(err)
				}
				if _, err := runCommand(t, ctx, run, "fail.txt", "x"); err == nil {
					t.Fatal("fail.txt succeeded")
				}
				run.Done(nil)
			}
			checkDropped(t, s, "cmd", 10, tc.wantMin, tc.wantMax)
		})
	}
}

// checkDropped checks that module's metrics count between min and max of its of log lines
// dropped, and bytes with them.
func checkDropped(t *testing.T, s *Supervisor, module string, of int, min, max uint64) {
	t.Helper()
	var dropped, bytes uint64
	for _, m := range s.Metrics() {
		if m.Name == module {
			dropped, bytes = m.Stats.LogLinesDropped, m.Stats.LogBytesDropped
		}
	}
	if dropped < min || dropped > max || (dropped > 0) != (bytes > 0) {
		t.Fatalf("%d lines (%d bytes) dropped of %d, want %d to %d", dropped, bytes, of, min, max)
	}
}
