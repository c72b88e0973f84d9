package main

import (
	"bufio"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestLogsFollow: `wasmpod logs -f` streams a module's new log lines as they are written.
func TestLogsFollow(t *testing.T) {
	h := startHost(t, writePod(t, podYAML("podkit", "", "")), "")
	waitFor(t, time.Minute, "ready", func() bool { return h.status("web").Ready })
	cmd := exec.Command(binary, "logs", "-f", "--tail", "0", "--admin", h.admin, "-o", "json", "web")
	cmd.Env = append(os.Environ(), "WASMPOD_TOKEN="+token) // logs need the host's admin token
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	lines := make(chan string, 64)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	deadline := time.After(30 * time.Second)
	for i := 0; ; i++ {
		// Keep writing until the follower, which may still be connecting, shows one.
		if code, body := h.call("log:followed line"); code != 200 {
			t.Fatalf("log call: %d %q", code, body)
		}
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("logs -f ended")
			}
			if strings.Contains(l, "followed line") {
				return
			}
		case <-time.After(200 * time.Millisecond):
		case <-deadline:
			t.Fatal("logs -f never showed the new line")
		}
	}
}
