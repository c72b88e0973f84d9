package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/host/internal/version"
)

// TestStateDirFormatTooNew: `wasmpod run` on a state directory stamped with a newer state
// format than the binary's (a downgrade across a format change) exits 1 before starting
// anything, naming the directory, both formats and what to run instead, and leaves the stamp.
// A directory it runs on gets its own format stamped (TestStateDirInUse's host did).
func TestStateDirFormatTooNew(t *testing.T) {
	spec := writePod(t, podYAML("echo", "", ""))
	dir := t.TempDir()
	newer := strconv.Itoa(version.StateFormat + 1)
	stamp := filepath.Join(dir, version.StateFormatFile)
	if err := os.WriteFile(stamp, []byte(newer+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Bounded: a run that does not refuse would serve until killed.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b, err := exec.CommandContext(ctx, binary, "run", spec, "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--state-dir", dir).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("run on a newer state dir: %v, want exit 1\n%s", err, b)
	}
	for _, want := range []string{dir, "state format " + newer, "reads formats up to " + strconv.Itoa(version.StateFormat)} {
		if !strings.Contains(string(b), want) {
			t.Fatalf("the refusal does not say %q:\n%s", want, b)
		}
	}
	if strings.Contains(string(b), "cluster node started") || strings.Contains(string(b), "pod running") {
		t.Fatalf("the refused run started:\n%s", b)
	}
	if got, _ := os.ReadFile(stamp); string(got) != newer+"\n" {
		t.Fatalf("stamp now %q", got)
	}

	ok := startHost(t, spec, "")
	if got, err := os.ReadFile(filepath.Join(ok.stateDir, version.StateFormatFile)); err != nil || string(got) != strconv.Itoa(version.StateFormat)+"\n" {
		t.Fatalf("a fresh state dir's stamp: %q, %v", got, err)
	}
}
