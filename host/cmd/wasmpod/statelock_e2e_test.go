package main

import (
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/internal/podtest"
)

// TestStateDirInUse: a second `wasmpod run` on a state dir in use says so at once, naming the
// holder's pid, and stops on SIGTERM while it waits; with --wait-for-state-dir=false it fails
// with the same words.
func TestStateDirInUse(t *testing.T) {
	spec := writePod(t, podYAML("echo", "", ""))
	first := startHost(t, spec, "")
	want := fmt.Sprintf("state dir %s is in use by pid %d", first.stateDir, first.cmd.Process.Pid)

	second := exec.Command(binary, "run", spec, "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--state-dir", first.stateDir)
	out := &podtest.SyncBuffer{}
	second.Stdout, second.Stderr = out, out
	if err := second.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- second.Wait() }()
	defer second.Process.Kill()
	waitFor(t, 10*time.Second, "the second run to say it waits", func() bool { return strings.Contains(out.String(), want+"; waiting") })
	if err := second.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("second run after SIGTERM: %v\n%s", err, out.String())
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("the waiting run ignored SIGTERM:\n%s", out.String())
	}
	if strings.Contains(out.String(), "pod running") || strings.Contains(out.String(), "cluster node started") {
		t.Fatalf("the second run went past the lock:\n%s", out.String())
	}

	b, err := exec.Command(binary, "run", spec, "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--state-dir", first.stateDir, "--wait-for-state-dir=false").CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(b), want) {
		t.Fatalf("--wait-for-state-dir=false: %v\n%s", err, b)
	}
	if code, body := first.call("still serving"); code != 200 || body != "still serving" {
		t.Fatalf("the first host: %d %q", code, body)
	}
}
