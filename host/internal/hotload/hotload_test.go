package hotload

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/host/internal/podspec"
	"github.com/wasmpod/wasmpod/host/internal/supervisor"
	"github.com/wasmpod/wasmpod/internal/wasmbuild"
	"github.com/wasmpod/wasmpod/runtime"
)

// version returns a native module whose handler answers text; notReady makes its health say
// not ready forever (an upgrade to it must roll back).
func version(t *testing.T, text string, notReady bool) []byte {
	t.Helper()
	health := ""
	if notReady {
		health = `(func (export "wasmpod_health") (result i32) (i32.const 1))`
	}
	src := fmt.Sprintf(`(module (memory (export "memory") 2)
  (data (i32.const 1024) %q)
  (func (export "wasmpod_abi_version") (result i32) (i32.const 1))
  (func (export "wasmpod_buffer") (param i32) (result i32) (i32.const 65536))
  (func (export "wasmpod_handle") (param i32) (result i64)
    (i64.or (i64.shl (i64.const %d) (i64.const 32)) (i64.const 1024)))
  %s)`, text, len(text), health)
	b, err := os.ReadFile(wasmbuild.WATString(t, src))
	if err != nil {
		t.Fatal(err)
	}
	// A trailing custom section ("pad", 4 KiB) puts bytes after the last known section.
	pad := append([]byte("\x03pad"), bytes.Repeat([]byte{0xAB}, 4096)...)
	b = append(b, 0)
	b = append(b, uleb(len(pad))...)
	return append(b, pad...)
}

func uleb(n int) []byte {
	var b []byte
	for {
		c := byte(n & 0x7f)
		n >>= 7
		if n != 0 {
			b = append(b, c|0x80)
			continue
		}
		return append(b, c)
	}
}

type rig struct {
	t       *testing.T
	dir     string
	podFile string
	sup     *supervisor.Supervisor
	w       *Watcher
	mu      sync.Mutex
	events  []string
	logs    *bytes.Buffer
	lw      *syncWriter
}

// logText returns what was logged so far (read under the writer's lock: the watcher may be
// logging).
func (r *rig) logText() string {
	r.lw.mu.Lock()
	defer r.lw.mu.Unlock()
	return r.logs.String()
}

func (r *rig) applied(what string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, fmt.Sprintf("%s: %v", what, err))
}

func (r *rig) eventsSince(n int) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.events[n:]...)
}

func (r *rig) nEvents() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.events)
}

// serves reports what the module web answers.
func (r *rig) serves() string { return r.servesOf("web") }

// servesOf reports what the named module answers.
func (r *rig) servesOf(module string) string {
	out, err := r.sup.Call(context.Background(), module, runtime.RoleHandle, nil, nil)
	if err != nil {
		return "error: " + err.Error()
	}
	return string(out)
}

func (r *rig) waitServes(want string, limit time.Duration) time.Duration {
	r.t.Helper()
	start := time.Now()
	for r.serves() != want {
		if time.Since(start) > limit {
			r.t.Fatalf("after %s the module serves %q, want %q; events %v\nlog:\n%s", limit, r.serves(), want, r.eventsSince(0), r.logText())
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

// waitEvent waits for an Applied event after n whose text contains want.
func (r *rig) waitEvent(n int, want string) string {
	r.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		for _, e := range r.eventsSince(n) {
			if strings.Contains(e, want) {
				return e
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	r.t.Fatalf("no event with %q after %d: %v\nlog:\n%s", want, n, r.eventsSince(0), r.logText())
	return ""
}

type syncWriter struct {
	mu sync.Mutex
	b  *bytes.Buffer
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// start writes the pod file and the first version, starts the pod and the watcher.
func start(t *testing.T, spec string, files map[string][]byte) *rig {
	t.Helper()
	dir := t.TempDir()
	for name, b := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	podFile := filepath.Join(dir, "pod.yaml")
	if err := os.WriteFile(podFile, []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	return startPod(t, dir, podFile)
}

// startPod starts the pod of podFile (already written) and a watcher on it.
func startPod(t *testing.T, dir, podFile string) *rig {
	t.Helper()
	r := &rig{t: t, dir: dir, podFile: podFile, logs: &bytes.Buffer{}}
	pod, err := podspec.Load(r.podFile)
	if err != nil {
		t.Fatal(err)
	}
	r.lw = &syncWriter{b: r.logs}
	log := slog.New(slog.NewTextHandler(r.lw, nil))
	cfg := supervisor.DefaultConfig()
	cfg.Pod, cfg.StateDir, cfg.Logger = pod, t.TempDir(), log
	cfg.UpgradeReadyTimeout = 500 * time.Millisecond
	cfg.ProbePoll = 10 * time.Millisecond
	ctx := context.Background()
	r.sup, err = supervisor.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.sup.Shutdown(ctx) })
	if err := r.sup.Start(ctx); err != nil {
		t.Fatal(err)
	}
	hc := DefaultConfig()
	hc.PodFile, hc.Pod, hc.Supervisor, hc.Logger, hc.Applied = r.podFile, pod, r.sup, log, r.applied
	r.w, err = New(hc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.w.Close() })
	return r
}

const dirPod = `apiVersion: wasmpod.dev/v1
kind: Pod
metadata: {name: hot}
spec:
  modules:
    - name: web
      wasm: plugins
      watch: true
      resources: {memory: 1Mi, timeout: 1s}
`

// writeAtomic writes b to a hidden temporary name in dir and renames it to name.
func writeAtomic(t *testing.T, dir, name string, b []byte) {
	t.Helper()
	tmp := filepath.Join(dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
}

// TestPluginDirectory drives a watched plugin directory with real file writes, renames and
// partial writes.
func TestPluginDirectory(t *testing.T) {
	r := start(t, dirPod, map[string][]byte{"plugins/v1.wasm": version(t, "v1", false)})
	plugins := filepath.Join(r.dir, "plugins")
	if got := r.serves(); got != "v1" {
		t.Fatalf("at start: %q", got)
	}

	// A plugin dropped in (written elsewhere, renamed into place) serves within a second.
	v2 := version(t, "v2", false)
	dropped := time.Now()
	writeAtomic(t, plugins, "v2.wasm", v2)
	r.waitServes("v2", 30*time.Second)
	// Logged, not asserted (about 0.2 s here): a loaded machine may take longer.
	t.Logf("dropped-in plugin serving after %s", time.Since(dropped))

	// A half-written file (cut inside a section, then the writer stalls past the settle
	// time) is never loaded; once complete it is.
	v3 := version(t, "v3", false)
	n := r.nEvents()
	f, err := os.Create(filepath.Join(plugins, "v3.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(v3[:len(v3)/2]); err != nil {
		t.Fatal(err)
	}
	e := r.waitEvent(n, "v3.wasm")
	if !strings.Contains(e, "not a WebAssembly module") {
		t.Fatalf("the half-written file: %s", e)
	}
	if got := r.serves(); got != "v2" {
		t.Fatalf("after a half-written file: %q", got)
	}
	// Refused, it is set aside; its writer going on brings it back (the next check below).
	if _, err := os.Stat(filepath.Join(plugins, "v3.wasm.refused")); err != nil {
		t.Fatalf("the refused half-written file: %v", err)
	}
	if _, err := f.Write(v3[len(v3)/2:]); err != nil {
		t.Fatal(err)
	}
	f.Close()
	r.waitServes("v3", 30*time.Second)

	// With a checksum file, a file cut where it still decodes (before its trailing section)
	// waits for its last bytes.
	v4 := version(t, "v4", false)
	sum := sha256.Sum256(v4)
	if err := os.WriteFile(filepath.Join(plugins, "v4.wasm.sha256"), []byte(hex.EncodeToString(sum[:])+"  v4.wasm\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cut := len(v4) - 4096 - len("\x03pad") - 3 // the module without its custom section
	if err := os.WriteFile(filepath.Join(plugins, "v4.wasm"), v4[:cut], 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := runtime.Describe(v4[:cut]); err != nil {
		t.Fatalf("the cut must still decode for this case to mean anything: %v", err)
	}
	time.Sleep(600 * time.Millisecond) // four settle periods
	if got := r.serves(); got != "v3" {
		t.Fatalf("a file that does not match its checksum was loaded: serves %q", got)
	}
	if err := os.WriteFile(filepath.Join(plugins, "v4.wasm"), v4, 0o644); err != nil {
		t.Fatal(err)
	}
	r.waitServes("v4", 30*time.Second)

	// A version that never gets ready is rolled back: the old one keeps serving.
	n = r.nEvents()
	writeAtomic(t, plugins, "v5.wasm", version(t, "v5", true))
	if e := r.waitEvent(n, "v5.wasm"); !strings.Contains(e, "never got ready") {
		t.Fatalf("never-ready version: %s", e)
	}
	if got := r.serves(); got != "v4" {
		t.Fatalf("after a failed version: %q", got)
	}
	// An invalid module is refused with validate's words.
	n = r.nEvents()
	writeAtomic(t, plugins, "v6.wasm", []byte("\x00asm\x01\x00\x00\x00"))
	if e := r.waitEvent(n, "v6.wasm"); !strings.Contains(e, "exports no wasmpod_abi_version") {
		t.Fatalf("invalid module: %s", e)
	}

	// Both refused files were set aside (and the half-written v3 was not: its writer went on).
	for _, name := range []string{"v6.wasm", "v5.wasm"} {
		if _, err := os.Stat(filepath.Join(plugins, name+".refused")); err != nil {
			t.Fatalf("refused %s: %v", name, err)
		}
	}

	// Deleting files keeps the running version.
	n = r.nEvents()
	for _, name := range []string{"v6.wasm.refused", "v5.wasm.refused", "v4.wasm"} {
		if err := os.Remove(filepath.Join(plugins, name)); err != nil {
			t.Fatal(err)
		}
	}
	r.waitEvent(n, "delete "+filepath.Join(plugins, "v4.wasm"))
	time.Sleep(300 * time.Millisecond)
	if got := r.serves(); got != "v4" {
		t.Fatalf("after deleting the running file: %q", got)
	}
	if !strings.Contains(r.logText(), "plugin file deleted: the module keeps running its current version") {
		t.Fatalf("the deletion was not logged:\n%s", r.logText())
	}
	st, err := r.sup.Status("web")
	if err != nil || st.Version != 4 {
		t.Fatalf("status %+v %v: want version 4 (v1 + three switches)", st, err)
	}
}

const filePod = `apiVersion: wasmpod.dev/v1
kind: Pod
metadata: {name: hot}
spec:
  modules:
    - name: web
      wasm: web.wasm
      resources: {memory: 1Mi, timeout: 1s}
`

// TestPodFileReload: a changed pod file is applied module by module; a bad one is refused with
// validate's errors and the pod keeps serving; a change a running pod cannot take is refused.
func TestPodFileReload(t *testing.T) {
	r := start(t, filePod, map[string][]byte{"web.wasm": version(t, "v1", false)})
	write := func(spec string) int {
		n := r.nEvents()
		if err := os.WriteFile(r.podFile, []byte(spec), 0o644); err != nil {
			t.Fatal(err)
		}
		return n
	}

	// Resources change: applied, and only that module's spec.
	n := write(strings.Replace(filePod, "timeout: 1s", "timeout: 2s", 1))
	if e := r.waitEvent(n, "pod "); !strings.HasSuffix(e, ": <nil>") {
		t.Fatalf("reload: %s", e)
	}
	if got := r.sup.ModuleSpec("web").Resources.Timeout.Std(); got != 2*time.Second {
		t.Fatalf("timeout after reload: %s", got)
	}

	// A bad file: validate's errors, the pod keeps serving what it ran.
	n = write(strings.Replace(filePod, "timeout: 1s", "timeout: 5", 1))
	e := r.waitEvent(n, "pod ")
	if !strings.Contains(e, ":8: spec.modules[0].resources.timeout: invalid duration 5") {
		t.Fatalf("bad file: %s", e)
	}
	if got := r.sup.ModuleSpec("web").Resources.Timeout.Std(); got != 2*time.Second || r.serves() != "v1" {
		t.Fatalf("after a bad file: timeout %s, serves %q", got, r.serves())
	}

	// A new wasm file named by the spec: switched in. The unchanged spec is not reapplied.
	if err := os.WriteFile(filepath.Join(r.dir, "web2.wasm"), version(t, "v2", false), 0o644); err != nil {
		t.Fatal(err)
	}
	n = write(strings.Replace(strings.Replace(filePod, "timeout: 1s", "timeout: 2s", 1), "web.wasm", "web2.wasm", 1))
	if e := r.waitEvent(n, "pod "); !strings.HasSuffix(e, ": <nil>") {
		t.Fatalf("reload to web2.wasm: %s", e)
	}
	if got := r.serves(); got != "v2" {
		t.Fatalf("after reload to web2.wasm: %q", got)
	}

	// What a running pod cannot take is refused and nothing is applied.
	n = write(strings.Replace(filePod, "name: hot", "name: cold", 1))
	if e := r.waitEvent(n, "pod "); !strings.Contains(e, "needs a restart of the pod") {
		t.Fatalf("pod-level change: %s", e)
	}
	n = write(strings.Replace(filePod, "      resources:", "      role: leaf\n      resources:", 1))
	if e := r.waitEvent(n, "pod "); !strings.Contains(e, "needs") {
		t.Fatalf("role change: %s", e)
	}

	// Reload (SIGHUP) re-reads the file without a file event.
	if err := os.WriteFile(r.podFile, []byte(strings.Replace(filePod, "web.wasm", "web2.wasm", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	n = r.nEvents()
	r.w.Reload()
	if e := r.waitEvent(n, "pod "); !strings.HasSuffix(e, ": <nil>") {
		t.Fatalf("Reload: %s", e)
	}
	if errors.Is(nil, ErrNeedsRestart) {
		t.Fatal("unreachable")
	}
}
