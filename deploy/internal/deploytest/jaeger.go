package deploytest

import (
	"bytes"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
)

var (
	jaegerOnce sync.Once
	jaegerBin  string
	jaegerErr  error
)

// Jaeger returns the Jaeger all-in-one binary pinned by tools/jaeger, built by
// tools/jaeger/build.sh into the user's cache once per version (a lock makes a concurrent
// caller, say CI's background build, and this one share a build). It runs the script once per
// test process.
func Jaeger() (string, error) {
	jaegerOnce.Do(func() {
		root, err := RepoRoot()
		if err != nil {
			jaegerErr = err
			return
		}
		script := filepath.Join(root, "tools", "jaeger", "build.sh")
		var stdout, stderr bytes.Buffer
		cmd := exec.Command(script)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			jaegerErr = fmt.Errorf("%s: %w\n%s", script, err, tail(stderr.String(), 40))
			return
		}
		jaegerBin = strings.TrimSpace(stdout.String())
	})
	return jaegerBin, jaegerErr
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
