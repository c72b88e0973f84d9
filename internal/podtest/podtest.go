// Package podtest runs the examples end to end: it builds the real wasmpod binary and the
// examples' plugins from source, runs `wasmpod run` on a pod spec and talks to its ingress and
// admin API, as a user following an example's README would.
package podtest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/internal/wasmbuild"
)

// Token is the admin token the hosts run with.
const Token = "podtest-token"

var (
	buildOnce sync.Once
	binary    string
	buildErr  error
)

// Binary builds the wasmpod binary once per test process and returns its path. Go builds of
// the same source are the same file, so the binary is kept once per content below binDir,
// instead of in a temporary directory that every test process would leave behind.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() { binary, buildErr = buildBinary() })
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binary
}

// binDir is where built binaries are kept: os.UserCacheDir()/wasmpod/podtest
// (os.TempDir()/wasmpod-podtest if there is no user cache dir).
func binDir() string {
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "wasmpod", "podtest")
	}
	return filepath.Join(os.TempDir(), "wasmpod-podtest")
}

// buildBinary builds ./host/cmd/wasmpod in a directory of its own below binDir and moves it to
// binDir/wasmpod-<sha256 prefix> unless that file is there already (test processes running
// at once build the same file; the rename is atomic, and a file in use keeps its content).
func buildBinary() (string, error) {
	root, err := wasmbuild.RepoRoot()
	if err != nil {
		return "", err
	}
	dir := binDir()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("build wasmpod: %w", err)
	}
	tmp, err := os.MkdirTemp(dir, "build-")
	if err != nil {
		return "", fmt.Errorf("build wasmpod: %w", err)
	}
	defer os.RemoveAll(tmp)
	out := filepath.Join(tmp, "wasmpod")
	cmd := exec.Command("go", "build", "-o", out, "./host/cmd/wasmpod")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build wasmpod: %v\n%s", err, b)
	}
	f, err := os.Open(out)
	if err != nil {
		return "", fmt.Errorf("build wasmpod: %w", err)
	}
	h := sha256.New()
	_, err = io.Copy(h, f)
	f.Close()
	if err != nil {
		return "", fmt.Errorf("build wasmpod: %w", err)
	}
	final := filepath.Join(dir, "wasmpod-"+hex.EncodeToString(h.Sum(nil))[:16])
	if st, err := os.Stat(final); err == nil && st.Mode().IsRegular() {
		return final, nil
	}
	if err := os.Rename(out, final); err != nil {
		return "", fmt.Errorf("build wasmpod: %w", err)
	}
	return final, nil
}

// Plugin builds plugins/<name> (a Go guest: a reactor, or a plain WASI command) and returns the
// .wasm path.
func Plugin(t testing.TB, name string) string {
	t.Helper()
	root, err := wasmbuild.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "plugins", name)
	if lang, _, err := wasmbuild.Detect(dir); err == nil && lang == "go-command" {
		return wasmbuild.GoCommand(t, dir)
	}
	return wasmbuild.Go(t, dir)
}

// Host is one running `wasmpod run`.
type Host struct {
	t       testing.TB
	cmd     *exec.Cmd
	log     *SyncBuffer
	Admin   string
	Ingress string
	done    chan struct{}
	exitErr error
}

// SyncBuffer collects a process's output while the test reads it: safe for concurrent use.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var (
	adminRE   = regexp.MustCompile(`admin API listening.*? addr=(\S+)`)
	ingressRE = regexp.MustCompile(`pod running.*? ingress=(\S+)`)
)

// Start runs the pod spec at spec and waits until its listeners are up and the pod is ready.
func Start(t testing.TB, spec string) *Host {
	t.Helper()
	tok := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tok, []byte(Token+"\n"), 0o600)
	h := &Host{t: t, log: &SyncBuffer{}, done: make(chan struct{})}
	h.cmd = exec.Command(Binary(t), "run", spec, "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
		"--state-dir", t.TempDir(), "--token-file", tok)
	h.cmd.Stdout, h.cmd.Stderr = h.log, h.log
	if err := h.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { h.exitErr = h.cmd.Wait(); close(h.done) }()
	t.Cleanup(func() {
		h.Kill()
		if t.Failed() {
			t.Logf("host log:\n%s", h.log.String())
		}
	})
	deadline := time.Now().Add(2 * time.Minute)
	for {
		s := h.log.String()
		if m := adminRE.FindStringSubmatch(s); m != nil {
			h.Admin = m[1]
		}
		if m := ingressRE.FindStringSubmatch(s); m != nil {
			h.Ingress = m[1]
		}
		if h.Admin != "" && h.Ingress != "" {
			break
		}
		select {
		case <-h.done:
			t.Fatalf("host exited early: %v\n%s", h.exitErr, s)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("host not listening after 2m:\n%s", s)
		}
		time.Sleep(50 * time.Millisecond)
	}
	WaitFor(t, time.Minute, "pod ready", func() bool { c, _ := h.AdminDo("GET", "/readyz", nil); return c == 200 })
	return h
}

// Log returns what the host printed so far.
func (h *Host) Log() string { return h.log.String() }

// Kill ends the host (SIGKILL) and waits for it.
func (h *Host) Kill() {
	select {
	case <-h.done:
	default:
		h.cmd.Process.Kill()
		<-h.done
	}
}

// Do sends one request and returns the status and body; a transport error is status 0 with the
// error text as body.
func Do(method, url string, body []byte, token string) (int, string) {
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		return 0, err.Error()
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// Get sends a request to the pod's ingress.
func (h *Host) Get(method, path string, body []byte) (int, string) {
	return Do(method, "http://"+h.Ingress+path, body, "")
}

// AdminDo sends an authenticated request to the admin API.
func (h *Host) AdminDo(method, path string, body []byte) (int, string) {
	return Do(method, "http://"+h.Admin+path, body, Token)
}

// WaitFor polls cond every 50ms until it holds or limit passes.
func WaitFor(t testing.TB, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", limit, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// handedOut holds every port FreePort returned in this process, with the open lock file that
// reserves it from other processes (kept open, and so locked, until the process exits).
var handedOut sync.Map

// FreePort returns a loopback port that nothing listens on right now (TCP or UDP: gossip
// needs both) and that no FreePort call returned before, in this process or in any other
// process still running on the machine. A port is free only until the process it was meant
// for binds it, so two things guard that gap:
//
//   - The port comes from below the kernel's ephemeral range (ip_local_port_range), which the
//     kernel never hands to a listener on port 0 or to an outgoing connection: two hosts of one
//     test once got the same port, chosen for one's admin API, as the other's gossip listener.
//   - A port handed out is reserved with a lock on a file named after it in a directory of
//     os.TempDir(), held until the process exits, so test binaries running side by side
//     (go test runs packages in parallel) never pick the same one.
//
// Where no such range exists (an ephemeral range starting below 11,000), it falls back to a
// port the kernel offers on port 0, never one returned before in this process.
func FreePort(t testing.TB) int {
	t.Helper()
	lo, hi := reservedRange()
	if hi-lo < 1000 {
		return kernelPort(t)
	}
	n := hi - lo
	start := startOffset(n)
	for i := range n {
		port := lo + (start+i)%n
		if _, dup := handedOut.Load(port); dup {
			continue
		}
		lock, ok := reservePort(port)
		if !ok {
			continue
		}
		if !portFree(port) {
			lock.Close()
			continue
		}
		handedOut.Store(port, lock)
		return port
	}
	t.Fatalf("FreePort: no free port in %d-%d", lo, hi-1)
	return 0
}

// startOffset is where in a range of n ports FreePort starts looking: spread by time and
// process, so that processes rarely contend for the same locks. Tests fix it.
var startOffset = func(n int) int {
	return int((time.Now().UnixNano()/1000 + int64(os.Getpid())*7919) % int64(n))
}

// reservedRange is where FreePort picks ports: [lo, hi), below the kernel's ephemeral range.
func reservedRange() (lo, hi int) {
	hi = 32768 // Linux's default start of the ephemeral range
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		var a, z int
		if _, err := fmt.Sscan(string(b), &a, &z); err == nil {
			hi = a
		}
	}
	return 10000, hi
}

// portFree reports whether port can be bound on loopback for TCP and for UDP right now.
func portFree(port int) bool {
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	ln.Close()
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return false
	}
	pc.Close()
	return true
}

// kernelPort is FreePort's fallback: a port the kernel offers on port 0, never one returned
// before in this process.
func kernelPort(t testing.TB) int {
	for range 1000 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if _, dup := handedOut.LoadOrStore(port, nil); !dup {
			return port
		}
	}
	t.Fatal("FreePort: 1000 ports in a row were handed out before")
	return 0
}

// CopyExample copies examples/<name>/pod.yaml into a fresh directory, with the plugins it names
// (as name.wasm, built from plugins/<name>), applying replacements to the spec. It returns the
// spec's path.
func CopyExample(t testing.TB, example string, plugins []string, replace ...string) string {
	t.Helper()
	root, err := wasmbuild.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "examples", example, "pod.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	spec := strings.NewReplacer(replace...).Replace(string(b))
	dir := t.TempDir()
	for _, p := range plugins {
		w, err := os.ReadFile(Plugin(t, p))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, p+".wasm"), w, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "pod.yaml")
	if err := os.WriteFile(path, []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}
