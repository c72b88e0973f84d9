package main

import (
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/internal/podtest"
)

// A host that joins a cluster with neither key nor certificates refuses to start and says how
// to make a key; with --insecure-cluster it starts, warns in its log and in /readyz.
func TestInsecureClusterFlag(t *testing.T) {
	spec := helloPod(t)
	args := []string{"run", spec, "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--state-dir", t.TempDir(),
		"--bind", "127.0.0.1:0", "--raft-addr", "127.0.0.1:0", "--join", "127.0.0.1:1"}
	out, err := exec.Command(binary, args...).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "openssl rand -base64 32") || !strings.Contains(string(out), "--insecure-cluster") {
		t.Fatalf("insecure multi-node start: %v: %s", err, out)
	}

	log := &podtest.SyncBuffer{}
	cmd := exec.Command(binary, append(args, "--insecure-cluster")...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	var admin string
	deadline := time.Now().Add(2 * time.Minute)
	for admin == "" {
		if time.Now().After(deadline) {
			t.Fatalf("no admin listener: %s", log.String())
		}
		if m := addrRE["admin"].FindStringSubmatch(log.String()); m != nil {
			admin = m[1]
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(log.String(), "WARNING: insecure cluster") {
		t.Errorf("no warning at start: %s", log.String())
	}
	resp, err := http.Get("http://" + admin + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "warning: insecure cluster") {
		t.Errorf("/readyz: %d %q", resp.StatusCode, body)
	}
}
