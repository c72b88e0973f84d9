package deploytest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
)

var (
	binOnce sync.Once
	binDir  string
	binErr  error
)

// Binary builds the wasmpod binary of the parent directory (go build, uncommitted changes
// included) once per test process, for tests that run it on this machine rather than in the
// image.
func Binary() (string, error) {
	binOnce.Do(func() {
		binDir, binErr = build("bin", func(root, out string) *exec.Cmd {
			cmd := exec.Command("go", "build", "-o", filepath.Join(out, "wasmpod"), "./host/cmd/wasmpod")
			cmd.Dir = root
			return cmd
		})
	})
	return filepath.Join(binDir, "wasmpod"), binErr
}

var (
	guestMu sync.Mutex
	guests  = map[string]string{}
)

// Guest builds the Go guest in dir (relative to the repository) once per test process:
// -buildmode=c-shared for a reactor (command false), a plain WASI command otherwise.
func Guest(dir string, command bool) (string, error) {
	guestMu.Lock()
	defer guestMu.Unlock()
	if p, ok := guests[dir]; ok {
		return p, nil
	}
	name := strings.ReplaceAll(dir, "/", "_")
	out, err := build("guest-"+name, func(root, out string) *exec.Cmd {
		args := []string{"build", "-trimpath", "-o", filepath.Join(out, "guest.wasm")}
		if !command {
			args = append(args, "-buildmode=c-shared")
		}
		cmd := exec.Command("go", append(args, ".")...)
		cmd.Dir = filepath.Join(root, dir)
		cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0", "GOWORK=off")
		return cmd
	})
	if err != nil {
		return "", err
	}
	guests[dir] = filepath.Join(out, "guest.wasm")
	return guests[dir], nil
}

// RunLocal starts the wasmpod binary bin with args on this machine (its own process group,
// killed at the end of the test) and waits until both its listeners are up.
func RunLocal(t *testing.T, bin string, env []string, args ...string) *Host {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	h := &Host{t: t, cmd: cmd, out: &SyncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = h.out, h.out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %v: %v", args, err)
	}
	go func() { h.exitErr = cmd.Wait(); close(h.done) }()
	t.Cleanup(func() {
		h.Kill()
		if t.Failed() {
			t.Logf("wasmpod %s output:\n%s", strings.Join(args, " "), h.out.String())
		}
	})
	h.waitListening(t)
	return h
}

// Kill ends the process at once (SIGKILL, no graceful shutdown) and waits for it: a crashed
// node. Idempotent.
func (h *Host) Kill() {
	select {
	case <-h.done:
		return
	default:
	}
	h.cmd.Process.Kill()
	<-h.done
}

var (
	cmdMu sync.Mutex
	cmds  = map[string]string{}
)

// Command builds the main package pkg of the wasmpod module (e.g. ./examples/leader/store)
// once per test process and returns the binary's path.
func Command(pkg string) (string, error) {
	cmdMu.Lock()
	defer cmdMu.Unlock()
	if p, ok := cmds[pkg]; ok {
		return p, nil
	}
	out, err := build("cmd-"+strings.NewReplacer("/", "_", ".", "_").Replace(pkg), func(root, out string) *exec.Cmd {
		cmd := exec.Command("go", "build", "-o", filepath.Join(out, filepath.Base(pkg)), pkg)
		cmd.Dir = root
		return cmd
	})
	if err != nil {
		return "", err
	}
	cmds[pkg] = filepath.Join(out, filepath.Base(pkg))
	return cmds[pkg], nil
}
