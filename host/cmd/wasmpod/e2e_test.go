package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
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
	"syscall"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/internal/podtest"
	"github.com/wasmpod/wasmpod/internal/wasmbuild"
)

// The end-to-end tests run the real binary, built once, against real guests built from source.

var (
	binary string
	guests = map[string]string{} // name -> .wasm path
)

const token = "s3cret-token"

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "wasmpod-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	binary = filepath.Join(dir, "wasmpod")
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build wasmpod: %v\n%s", err, out)
		return 1
	}
	root, err := wasmbuild.RepoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for name, d := range map[string]string{
		"podkit":     "host/testdata/podkit",
		"neverready": "host/testdata/neverready",
		"echo":       "plugins/echo",
		"extism-go":  "plugins/extism-go",
		"vowels":     "plugins/extism-count-vowels",
		"hello":      "examples/hello/guest",
	} {
		d = filepath.Join(root, d)
		key, err := wasmbuild.GoKey(d)
		if err == nil {
			guests[name], err = wasmbuild.CachedPath(key, name, func(out string) error { return wasmbuild.BuildGo(d, out) })
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "build guest %s: %v\n", name, err)
			return 1
		}
	}
	return m.Run()
}

type host struct {
	t        *testing.T
	cmd      *exec.Cmd
	stderr   *podtest.SyncBuffer
	admin    string
	ingress  string
	stateDir string
	done     chan struct{}
	exitErr  error
}

// podYAML renders a pod with one main module "web" running guest, plus extra module YAML.
func podYAML(guest, moduleExtra, specExtra string) string {
	return fmt.Sprintf(`apiVersion: wasmpod.dev/v1
kind: Pod
metadata: {name: e2e}
spec:
  terminationGracePeriodSeconds: 20
%s
  modules:
    - name: web
      wasm: %s
      resources: {memory: 64Mi, timeout: 5s, concurrency: 4}
%s
`, specExtra, guests[guest], moduleExtra)
}

func writePod(t *testing.T, yaml string) string {
	p := filepath.Join(t.TempDir(), "pod.yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

var addrRE = map[string]*regexp.Regexp{
	"admin":   regexp.MustCompile(`admin API listening.*? addr=(\S+)`),
	"ingress": regexp.MustCompile(`pod running.*? ingress=(\S+)`),
}

// startHost runs `wasmpod run` on a pod and waits until both listeners are up.
func startHost(t *testing.T, specPath, stateDir string) *host {
	t.Helper()
	return startHostIn(t, specPath, stateDir)
}

// startHostIn is startHost with extra flags for `wasmpod run`; stateDir "" is a new one.
func startHostIn(t *testing.T, specPath, stateDir string, extra ...string) *host {
	t.Helper()
	return launchHost(t, specPath, stateDir, true, extra...)
}

// launchHost starts the host and waits for its admin API and, with ingress, its ingress
// (which listens only once the pod has started).
func launchHost(t *testing.T, specPath, stateDir string, ingress bool, extra ...string) *host {
	t.Helper()
	tokFile := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tokFile, []byte(token+"\n"), 0o600)
	if stateDir == "" {
		stateDir = t.TempDir()
	}
	h := &host{t: t, stderr: &podtest.SyncBuffer{}, stateDir: stateDir, done: make(chan struct{})}
	args := append([]string{"run", specPath, "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
		"--state-dir", stateDir, "--token-file", tokFile}, extra...)
	h.cmd = exec.Command(binary, args...)
	h.cmd.Stderr, h.cmd.Stdout = h.stderr, h.stderr
	if err := h.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { h.exitErr = h.cmd.Wait(); close(h.done) }()
	t.Cleanup(func() {
		select {
		case <-h.done:
		default:
			h.cmd.Process.Kill()
			<-h.done
		}
		if t.Failed() {
			t.Logf("host log:\n%s", h.stderr.String())
		}
	})
	waitFor(t, 2*time.Minute, "host listening", func() bool {
		s := h.stderr.String()
		if m := addrRE["admin"].FindStringSubmatch(s); m != nil {
			h.admin = m[1]
		}
		if m := addrRE["ingress"].FindStringSubmatch(s); m != nil {
			h.ingress = m[1]
		}
		select {
		case <-h.done:
			t.Fatalf("host exited early: %v\n%s", h.exitErr, s)
		default:
		}
		return h.admin != "" && (h.ingress != "" || !ingress)
	})
	return h
}

func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", limit, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (h *host) do(method, url string, body []byte, auth string) (int, string) {
	h.t.Helper()
	req, _ := http.NewRequest(method, url, bytes.NewReader(body))
	if auth != "" {
		req.Header.Set("Authorization", "Bearer "+auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (h *host) call(cmd string) (int, string) {
	return h.do("POST", "http://"+h.ingress+"/", []byte(cmd), "")
}

func (h *host) adminDo(method, path string, body []byte) (int, string) {
	return h.do(method, "http://"+h.admin+path, body, token)
}

type status struct {
	State       string `json:"state"`
	Reason      string `json:"reason"`
	Ready       bool   `json:"ready"`
	Restarts    int    `json:"restarts"`
	Failures    int    `json:"failures"`
	LastBackoff string `json:"lastBackoff"`
	LastError   string `json:"lastError"`
	Version     int    `json:"version"`
	Target      int    `json:"target"`
}

func (h *host) status(name string) status {
	h.t.Helper()
	code, body := h.adminDo("GET", "/v1/modules/"+name, nil)
	if code != 200 {
		h.t.Fatalf("status %s: %d %s", name, code, body)
	}
	var s status
	if err := json.Unmarshal([]byte(body), &s); err != nil {
		h.t.Fatal(err)
	}
	return s
}

// stop sends sig and returns the exit code.
func (h *host) stop(sig os.Signal) int {
	h.t.Helper()
	h.cmd.Process.Signal(sig)
	select {
	case <-h.done:
	case <-time.After(time.Minute):
		h.t.Fatal("host did not exit within a minute of the signal")
	}
	var ee *exec.ExitError
	if errors.As(h.exitErr, &ee) {
		return ee.ExitCode()
	}
	return 0
}

// helloPod copies examples/hello/pod.yaml and its module into a directory; it returns the
// spec's path.
func helloPod(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	b, err := os.ReadFile("../../../examples/hello/pod.yaml")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "pod.yaml"), b, 0o600)
	w, _ := os.ReadFile(guests["hello"])
	os.WriteFile(filepath.Join(dir, "hello.wasm"), w, 0o600)
	return filepath.Join(dir, "pod.yaml")
}

func TestHelloExample(t *testing.T) {
	h := startHost(t, helloPod(t), "")
	waitFor(t, time.Minute, "ready", func() bool { c, _ := h.adminDo("GET", "/readyz", nil); return c == 200 })
	if code, body := h.do("GET", "http://"+h.ingress+"/world", nil, ""); code != 200 || body != "hello, world\n" {
		t.Fatalf("GET /world: %d %q", code, body)
	}
	if code, body := h.adminDo("GET", "/healthz", nil); code != 200 {
		t.Fatalf("healthz: %d %s", code, body)
	}
	if code, body := h.adminDo("GET", "/debug/pprof/goroutine?debug=1", nil); code != 200 || !strings.Contains(body, "goroutine") {
		t.Fatalf("pprof: %d", code)
	}
	_, metrics := h.adminDo("GET", "/metrics", nil)
	for _, want := range []string{`wasmpod_module_calls_total{module="hello",pod="hello"} 1`, `wasmpod_module_state{module="hello",pod="hello",state="running"} 1`, "wasmpod_module_call_duration_seconds_bucket",
		`wasmpod_compile_cache_max_bytes{pod="hello"} 1.073741824e+09`, `wasmpod_compile_cache_entries{pod="hello"}`, `wasmpod_compile_cache_removed_total{pod="hello"} 0`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if p, err := exec.LookPath("promtool"); err == nil {
		cmd := exec.Command(p, "check", "metrics")
		cmd.Stdin = strings.NewReader(metrics)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool check metrics: %v\n%s", err, out)
		}
	}
	out, err := exec.Command(binary, "get", "--admin", h.admin).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "hello") || !strings.Contains(string(out), "running") {
		t.Errorf("wasmpod get: %v\n%s", err, out)
	}
	if code := h.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("exit code %d", code)
	}
}

func TestAuthAndLimits(t *testing.T) {
	h := startHost(t, writePod(t, podYAML("podkit", "", "")), "")
	for _, tc := range []struct {
		name, method, path, auth string
		want                     int
	}{
		{"no token", "POST", "/v1/modules/web/pause", "", 401},
		{"wrong token", "POST", "/v1/modules/web/pause", "nope", 401},
		{"wrong token upgrade", "PUT", "/v1/modules/web/wasm", "s3cret-tokem", 401},
		{"right token", "POST", "/v1/modules/web/pause", token, 200},
		{"resume", "POST", "/v1/modules/web/resume", token, 200},
		{"reads are open", "GET", "/v1/modules", "", 200},
		{"unknown module", "POST", "/v1/modules/nope/stop", token, 404},
		{"unknown action", "POST", "/v1/modules/web/explode", token, 404},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if code, body := h.do(tc.method, "http://"+h.admin+tc.path, []byte("x"), tc.auth); code != tc.want {
				t.Fatalf("got %d (%s), want %d", code, body, tc.want)
			}
		})
	}
	t.Run("scale", func(t *testing.T) {
		if code, body := h.adminDo("POST", "/v1/modules/web/scale", []byte(`{"replicas": 3}`)); code != 200 {
			t.Fatalf("scale: %d %s", code, body)
		}
		if s := h.status("web"); s.Target != 3 {
			t.Fatalf("target %d", s.Target)
		}
		if code, body := h.adminDo("POST", "/v1/modules/web/scale", []byte(`{"replicas": 9}`)); code != 400 || !strings.Contains(body, "bounds") {
			t.Fatalf("scale out of bounds: %d %s", code, body)
		}
	})
	t.Run("oversize body 413", func(t *testing.T) {
		// Announce a 5 MiB body: the host answers 413 without reading it.
		c, err := net.Dial("tcp", h.ingress)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", 5<<20)
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		line, _ := bufio.NewReader(c).ReadString('\n')
		if !strings.Contains(line, "413") {
			t.Fatalf("got %q, want 413", line)
		}
	})
	t.Run("error mapping", func(t *testing.T) {
		if code, body := h.call("fail:boom"); code != 500 || !strings.Contains(body, "boom") {
			t.Fatalf("guest error: %d %q", code, body)
		}
		if code, _ := h.call("exit:3"); code != 500 {
			t.Fatalf("trap: %d", code)
		}
		if code, body := h.call("echo:still-up"); code != 200 || body != "still-up" {
			t.Fatalf("after trap: %d %q", code, body)
		}
	})
}

func TestProbesAndRestarts(t *testing.T) {
	h := startHost(t, writePod(t, podYAML("podkit", `      livenessProbe: {periodSeconds: 1, failureThreshold: 1}
      readinessProbe: {periodSeconds: 1, failureThreshold: 1}`, `  restartBackoff: {initial: 200ms, max: 300ms, resetAfter: 1h}`)), "")
	waitFor(t, time.Minute, "ready", func() bool { return h.status("web").Ready })
	// not ready: no traffic
	h.call("sethealth:1")
	waitFor(t, 30*time.Second, "not ready", func() bool { return !h.status("web").Ready })
	if code, _ := h.call("echo:x"); code != 503 {
		t.Fatalf("not-ready module got traffic: %d", code)
	}
	if code, _ := h.adminDo("GET", "/readyz", nil); code != 503 {
		t.Fatalf("readyz while not ready: %d", code)
	}
	// an operator restart brings it back (health comes from config again)
	if code, body := h.adminDo("POST", "/v1/modules/web/restart", nil); code != 200 {
		t.Fatalf("restart: %d %s", code, body)
	}
	waitFor(t, 30*time.Second, "ready again", func() bool { return h.status("web").Ready })
	base := h.status("web").Restarts
	// liveness failures restart it, with doubling back-off capped at max
	for i, want := range []string{"200ms", "300ms"} {
		waitFor(t, 30*time.Second, "ready", func() bool {
			s := h.status("web")
			return s.Ready && s.State == "running"
		})
		if code, _ := h.call("sethealth:2"); code != 200 {
			t.Fatalf("sethealth: %d", code)
		}
		waitFor(t, 30*time.Second, fmt.Sprintf("restart %d", i+1), func() bool { return h.status("web").Restarts >= base+i+1 })
		if s := h.status("web"); s.LastBackoff != want || !strings.Contains(s.LastError, "liveness") {
			t.Fatalf("restart %d: backoff %q (want %s), last error %q", i+1, s.LastBackoff, want, s.LastError)
		}
	}
}

func TestCrashLoop(t *testing.T) {
	h := startHost(t, writePod(t, podYAML("podkit", `      config: {failstart: "true"}`, `  restartBackoff: {initial: 100ms, max: 400ms, resetAfter: 1h}`)), "")
	waitFor(t, time.Minute, "four failures", func() bool { return h.status("web").Failures >= 4 })
	s := h.status("web")
	if s.State != "failed" && s.State != "running" {
		t.Errorf("state %q", s.State)
	}
	if s.LastBackoff != "400ms" || !strings.Contains(s.LastError, "failstart") {
		t.Fatalf("crash loop: backoff %q (want capped 400ms), error %q", s.LastBackoff, s.LastError)
	}
	if code, _ := h.call("echo:x"); code != 503 {
		t.Fatalf("crash-looping main answered %d, want 503", code)
	}
	if code, _ := h.adminDo("GET", "/healthz", nil); code != 200 {
		t.Fatal("host itself should stay healthy")
	}
	if code := h.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("exit %d", code)
	}
}

func TestGracefulStopUnderLoad(t *testing.T) {
	h := startHost(t, writePod(t, podYAML("podkit", "", "")), "")
	waitFor(t, time.Minute, "ready", func() bool { return h.status("web").Ready })
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		ok, shed int
		bad      []string
	)
	started := make(chan struct{}, 64)
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
			for {
				resp, err := c.Post("http://"+h.ingress+"/", "text/plain", strings.NewReader("sleep:30"))
				if err != nil {
					if errors.Is(err, syscall.ECONNREFUSED) {
						return // listener closed: the request was never sent
					}
					mu.Lock()
					bad = append(bad, err.Error())
					mu.Unlock()
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				mu.Lock()
				switch resp.StatusCode {
				case 200:
					ok++
				case 503:
					shed++
				default:
					bad = append(bad, resp.Status)
				}
				mu.Unlock()
				if resp.StatusCode == 503 {
					return
				}
				select {
				case started <- struct{}{}:
				default:
				}
			}
		}()
	}
	for range 20 {
		<-started
	}
	code := h.stop(syscall.SIGTERM)
	wg.Wait()
	if code != 0 {
		t.Fatalf("exit code %d", code)
	}
	if len(bad) > 0 || ok == 0 {
		t.Fatalf("ok %d shed %d, unanswered or bad: %v", ok, shed, bad)
	}
	t.Logf("ok %d, shed with 503 while draining %d", ok, shed)
}

func TestUpgradeAndRollback(t *testing.T) {
	h := startHost(t, writePod(t, podYAML("podkit", `      readinessProbe: {periodSeconds: 1, failureThreshold: 2}`, "")), "")
	waitFor(t, time.Minute, "ready", func() bool { return h.status("web").Ready })
	never, _ := os.ReadFile(guests["neverready"])
	code, body := h.adminDo("PUT", "/v1/modules/web/wasm", never)
	if code != 422 || !strings.Contains(body, "never got ready") {
		t.Fatalf("upgrade to never-ready: %d %s", code, body)
	}
	if code, body := h.call("version"); code != 200 || body != "podkit-1" {
		t.Fatalf("after failed upgrade: %d %q", code, body)
	}
	if code, body := h.adminDo("POST", "/v1/modules/web/rollback", nil); code != 409 {
		t.Fatalf("rollback without previous: %d %s", code, body)
	}
	echo, _ := os.ReadFile(guests["echo"])
	if code, body := h.adminDo("PUT", "/v1/modules/web/wasm", echo); code != 200 {
		t.Fatalf("upgrade to echo: %d %s", code, body)
	}
	if code, body := h.call("version"); code != 200 || body != "version" {
		t.Fatalf("after upgrade: %d %q", code, body)
	}
	if s := h.status("web"); s.Version != 2 {
		t.Fatalf("version %d", s.Version)
	}
	out, err := exec.Command(binary, "rollback", "web", "--admin", h.admin, "--token-file", writeToken(t)).CombinedOutput()
	if err != nil {
		t.Fatalf("wasmpod rollback: %v\n%s", err, out)
	}
	if code, body := h.call("version"); code != 200 || body != "podkit-1" {
		t.Fatalf("after rollback: %d %q", code, body)
	}
}

func writeToken(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "tok")
	os.WriteFile(p, []byte(token), 0o600)
	return p
}

func TestSnapshotAcrossRestartsAndCorruption(t *testing.T) {
	state := t.TempDir()
	spec := writePod(t, strings.Replace(podYAML("podkit", "", `  restartPolicy: Never`), "concurrency: 4", "concurrency: 1", 1))
	h := startHost(t, spec, state)
	waitFor(t, time.Minute, "ready", func() bool { return h.status("web").Ready })
	for range 3 {
		h.call("inc")
	}
	if code := h.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("exit %d", code)
	}
	h = startHost(t, spec, state)
	waitFor(t, time.Minute, "ready", func() bool { return h.status("web").Ready })
	if code, body := h.call("state"); code != 200 || body != "3" {
		t.Fatalf("state after restart: %d %q", code, body)
	}
	if code := h.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("exit %d", code)
	}
	snaps, _ := filepath.Glob(filepath.Join(state, "pods", "e2e", "snapshots", "web.snap"))
	if len(snaps) != 1 {
		t.Fatalf("snapshot file not found: %v", snaps)
	}
	b, _ := os.ReadFile(snaps[0])
	b[len(b)-1] ^= 0xff
	os.WriteFile(snaps[0], b, 0o600)
	h = startHost(t, spec, state)
	waitFor(t, time.Minute, "failed", func() bool { return h.status("web").State == "failed" })
	if s := h.status("web"); !strings.Contains(s.LastError, "corrupt snapshot") {
		t.Fatalf("last error %q", s.LastError)
	}
	if code, _ := h.call("state"); code != 503 {
		t.Fatalf("module with corrupt snapshot answered %d", code)
	}
}

// TestUpgradeCarriesState: a stateful module keeps its state across an upgrade through the
// admin API (the old version's snapshot is restored into the new one during the handover).
func TestUpgradeCarriesState(t *testing.T) {
	h := startHost(t, writePod(t, strings.Replace(podYAML("podkit", "", ""), "concurrency: 4", "concurrency: 1", 1)), "")
	waitFor(t, time.Minute, "ready", func() bool { return h.status("web").Ready })
	for range 3 {
		if code, body := h.call("inc"); code != 200 {
			t.Fatalf("inc: %d %q", code, body)
		}
	}
	w, err := os.ReadFile(guests["podkit"])
	if err != nil {
		t.Fatal(err)
	}
	if code, body := h.adminDo("PUT", "/v1/modules/web/wasm", w); code != 200 {
		t.Fatalf("upgrade: %d %s", code, body)
	}
	if code, body := h.call("state"); code != 200 || body != "3" {
		t.Fatalf("state after upgrade: %d %q", code, body)
	}
}

// TestExtismPluginInAPod: an unchanged Extism plugin (go-pdk) serves as a pod's main module;
// the pod's config reaches the plugin's config.
func TestExtismPluginInAPod(t *testing.T) {
	h := startHost(t, writePod(t, podYAML("extism-go", "      abi: extism\n      config: {greeting: hello from the pod}", "")), "")
	waitFor(t, time.Minute, "ready", func() bool { return h.status("web").Ready })
	if code, body := h.call("config:greeting"); code != 200 || body != "hello from the pod" {
		t.Fatalf("extism plugin through ingress: %d %q", code, body)
	}
	if code, body := h.call("config:nope"); code != 500 {
		t.Fatalf("missing key: %d %q", code, body)
	}
}

func TestSpecErrors(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"bad memory", strings.Replace(podYAML("podkit", "", ""), "memory: 64Mi", "memory: 64MB", 1), "spec.modules[0].resources.memory"},
		{"unknown field", strings.Replace(podYAML("podkit", "", ""), "wasm:", "image: x\n      wasm:", 1), "spec.modules[0].image"},
		{"missing wasm file", strings.Replace(podYAML("podkit", "", ""), guests["podkit"], "/nonexistent.wasm", 1), "spec.modules[0].wasm"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := writePod(t, tc.yaml)
			for _, args := range [][]string{{"validate", spec}, {"run", spec, "--admin", "127.0.0.1:0", "--listen", "127.0.0.1:0", "--state-dir", t.TempDir()}} {
				out, err := exec.Command(binary, args...).CombinedOutput()
				var ee *exec.ExitError
				if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), tc.want) {
					t.Errorf("%s: err %v, output does not name %q:\n%s", args[0], err, tc.want, out)
				}
			}
		})
	}
	if out, err := exec.Command(binary, "validate", writePod(t, podYAML("podkit", "", ""))).CombinedOutput(); err != nil {
		t.Fatalf("valid spec: %v\n%s", err, out)
	}
}

var _ = context.Background
