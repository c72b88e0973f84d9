// Package suptest starts real supervisors for the tests of packages built on top of the
// supervisor (stage runners, pipeline wiring), as httptest does for servers.
package suptest

import (
	"context"
	"log/slog"
	"testing"

	"github.com/wasmpod/wasmpod/host/internal/podspec"
	"github.com/wasmpod/wasmpod/host/internal/supervisor"
)

// Start parses spec (pod YAML, relative paths resolved against a fresh directory), starts it
// under a real supervisor keeping its state in stateDir (a fresh directory when ""), and
// shuts the supervisor down when the test ends. A spec or start error fails the test.
func Start(t testing.TB, spec, stateDir string) *supervisor.Supervisor {
	t.Helper()
	p, err := podspec.Parse([]byte(spec), t.TempDir())
	if err != nil {
		t.Fatalf("%v\n%s", err, spec)
	}
	if stateDir == "" {
		stateDir = t.TempDir()
	}
	cfg := supervisor.DefaultConfig()
	cfg.Pod, cfg.StateDir, cfg.Logger = p, stateDir, slog.New(slog.DiscardHandler)
	ctx := context.Background()
	s, err := supervisor.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(ctx) })
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return s
}
