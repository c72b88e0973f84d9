package hotload

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/host/internal/podspec"
	"github.com/wasmpod/wasmpod/host/internal/supervisor"
)

const twoPod = `apiVersion: wasmpod.dev/v1
kind: Pod
metadata: {name: hot}
spec:
  modules:
    - name: web
      wasm: web.wasm
      resources: {memory: 1Mi, timeout: 1s}
    - name: side
      wasm: side.wasm
      role: sidecar
      resources: {memory: 1Mi, timeout: 1s}
`

// writePod writes the pod file and returns the number of Applied events before it.
func (r *rig) writePod(spec string) int {
	r.t.Helper()
	n := r.nEvents()
	if err := os.WriteFile(r.podFile, []byte(spec), 0o644); err != nil {
		r.t.Fatal(err)
	}
	return n
}

func (r *rig) timeout(module string) time.Duration {
	return r.sup.ModuleSpec(module).Resources.Timeout.Std()
}

// TestReloadRefusedPutsBack: a reload that fails at its second module puts the first back, and
// says so; nothing is left half-applied.
func TestReloadRefusedPutsBack(t *testing.T) {
	r := start(t, twoPod, map[string][]byte{
		"web.wasm":      version(t, "web-v1", false),
		"side.wasm":     version(t, "side-v1", false),
		"side-bad.wasm": version(t, "side-bad", true),
	})
	webSHA := status(t, r.sup, "web").SHA256

	// web's timeout changes (applied first), side moves to a version that never gets ready.
	spec := strings.Replace(twoPod, "timeout: 1s", "timeout: 2s", 1)
	spec = strings.Replace(spec, "side.wasm", "side-bad.wasm", 1)
	e := r.waitEvent(r.writePod(spec), "pod ")
	if got := r.timeout("web"); got != time.Second {
		t.Fatalf("web runs with timeout %s after a refused reload, want its old 1s (half-applied)", got)
	}
	if got := status(t, r.sup, "web").SHA256; got != webSHA {
		t.Fatalf("web runs %s, want the version it ran (%s)", got, webSHA)
	}
	if r.serves() != "web-v1" || r.servesOf("side") != "side-v1" {
		t.Fatalf("after a refused reload: web serves %q, side %q", r.serves(), r.servesOf("side"))
	}
	if got := r.sup.ModuleSpec("side").Wasm; got != "side.wasm" {
		t.Fatalf("side's spec names %q", got)
	}
	for _, want := range []string{`module "side"`, "never got ready", `put back to the spec and version they ran: module "web"`} {
		if !strings.Contains(e, want) {
			t.Fatalf("the refusal does not say %q: %s", want, e)
		}
	}
	if !strings.Contains(r.logText(), "the pod keeps running as it was") {
		t.Fatalf("the refusal was not logged as fully undone:\n%s", r.logText())
	}

	// The watcher still holds the old file as applied: the same good change on its own applies.
	e = r.waitEvent(r.writePod(strings.Replace(twoPod, "timeout: 1s", "timeout: 2s", 1)), "pod ")
	if !strings.HasSuffix(e, ": <nil>") || r.timeout("web") != 2*time.Second {
		t.Fatalf("the good change alone: %s; web's timeout %s", e, r.timeout("web"))
	}
}

func status(t *testing.T, sup *supervisor.Supervisor, name string) supervisor.ModuleStatus {
	t.Helper()
	st, err := sup.Status(name)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestReloadKeepsUploadedVersion: a version uploaded through the admin API (Upgrade) survives
// a pod file reload that does not change its module's entry, and a SIGHUP.
func TestReloadKeepsUploadedVersion(t *testing.T) {
	r := start(t, twoPod, map[string][]byte{
		"web.wasm":  version(t, "v1", false),
		"side.wasm": version(t, "side-v1", false),
	})
	if err := r.sup.Upgrade(context.Background(), "web", version(t, "v2-uploaded", false)); err != nil {
		t.Fatal(err)
	}
	if got := r.serves(); got != "v2-uploaded" {
		t.Fatalf("after the upload: %q", got)
	}

	// Only side's timeout changes.
	spec := twoPod[:strings.LastIndex(twoPod, "timeout: 1s")] + "timeout: 2s}\n"
	e := r.waitEvent(r.writePod(spec), "pod ")
	if !strings.HasSuffix(e, ": <nil>") {
		t.Fatalf("reload: %s", e)
	}
	if got := r.timeout("side"); got != 2*time.Second {
		t.Fatalf("side's timeout after the reload: %s", got)
	}
	if got := r.serves(); got != "v2-uploaded" {
		t.Fatalf("a reload that did not touch web's entry rolled its upload back: serves %q", got)
	}
	if log := r.logText(); !strings.Contains(log, "module=side") || !strings.Contains(log, "resources") {
		t.Fatalf("the reload does not log which module it applied and why:\n%s", log)
	}

	n := r.nEvents()
	r.w.Reload()
	if e := r.waitEvent(n, "pod "); !strings.HasSuffix(e, ": <nil>") {
		t.Fatalf("SIGHUP: %s", e)
	}
	if got := r.serves(); got != "v2-uploaded" {
		t.Fatalf("SIGHUP rolled the upload back: serves %q", got)
	}
}

// TestRefusedPluginSetAside: a plugin file that is refused (never ready, or not a module) is
// renamed NAME.wasm.refused, so neither this watcher nor the next start picks it again.
func TestRefusedPluginSetAside(t *testing.T) {
	r := start(t, dirPod, map[string][]byte{"plugins/v1.wasm": version(t, "v1", false)})
	plugins := filepath.Join(r.dir, "plugins")

	n := r.nEvents()
	writeAtomic(t, plugins, "v2.wasm", version(t, "v2", true))
	if e := r.waitEvent(n, "v2.wasm"); !strings.Contains(e, "never got ready") {
		t.Fatalf("never-ready version: %s", e)
	}
	v3 := version(t, "v3", false)
	n = r.nEvents()
	writeAtomic(t, plugins, "v3.wasm", v3[:len(v3)/2])
	if e := r.waitEvent(n, "v3.wasm"); !strings.Contains(e, "not a WebAssembly module") {
		t.Fatalf("truncated version: %s", e)
	}
	for _, name := range []string{"v2.wasm", "v3.wasm"} {
		if _, err := os.Stat(filepath.Join(plugins, name+".refused")); err != nil {
			t.Errorf("the refused %s was not set aside: %v", name, err)
		}
	}
	if f, err := podspec.NewestWasm(plugins); err != nil || filepath.Base(f) != "v1.wasm" {
		t.Fatalf("newest plugin after two refusals: %s %v, want v1.wasm", f, err)
	}
	if !strings.Contains(r.logText(), "v3.wasm.refused") {
		t.Fatalf("setting the file aside was not logged:\n%s", r.logText())
	}

	// A reload still works (it reads the newest file), and so does the next start.
	n = r.nEvents()
	r.w.Reload()
	if e := r.waitEvent(n, "pod "); !strings.HasSuffix(e, ": <nil>") {
		t.Fatalf("reload after a refused plugin: %s", e)
	}
	if got := r.serves(); got != "v1" {
		t.Fatalf("serves %q", got)
	}
	next := startPod(t, r.dir, r.podFile)
	if got := next.serves(); got != "v1" {
		t.Fatalf("the next start serves %q, want v1", got)
	}
}

// TestConfigMapPodFile: a pod file mounted from a ConfigMap is changed the way kubelet does it
// (a new timestamped directory, a ..data symlink swapped by rename); no event names the pod
// file, and the change is still applied.
func TestConfigMapPodFile(t *testing.T) {
	wasmDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(wasmDir, "web.wasm"), version(t, "v1", false), 0o644); err != nil {
		t.Fatal(err)
	}
	spec := strings.Replace(filePod, "wasm: web.wasm", "wasm: "+filepath.Join(wasmDir, "web.wasm"), 1)
	mount := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Mkdir(filepath.Join(mount, "..v1"), 0o755))
	must(os.WriteFile(filepath.Join(mount, "..v1", "pod.yaml"), []byte(spec), 0o644))
	must(os.Symlink("..v1", filepath.Join(mount, "..data")))
	must(os.Symlink("..data/pod.yaml", filepath.Join(mount, "pod.yaml")))
	r := startPod(t, mount, filepath.Join(mount, "pod.yaml"))

	// An unrelated event in the directory, the pod file's content unchanged: no reload.
	n := r.nEvents()
	must(os.WriteFile(filepath.Join(mount, "unrelated"), nil, 0o644))
	time.Sleep(600 * time.Millisecond)
	if ev := r.eventsSince(n); len(ev) != 0 {
		t.Fatalf("a reload with the pod file unchanged: %v", ev)
	}

	// kubelet's update: ..v2 written, ..data_tmp -> ..v2 renamed over ..data, ..v1 removed.
	must(os.Mkdir(filepath.Join(mount, "..v2"), 0o755))
	must(os.WriteFile(filepath.Join(mount, "..v2", "pod.yaml"), []byte(strings.Replace(spec, "timeout: 1s", "timeout: 2s", 1)), 0o644))
	must(os.Symlink("..v2", filepath.Join(mount, "..data_tmp")))
	must(os.Rename(filepath.Join(mount, "..data_tmp"), filepath.Join(mount, "..data")))
	must(os.RemoveAll(filepath.Join(mount, "..v1")))
	if e := r.waitEvent(n, "pod "); !strings.HasSuffix(e, ": <nil>") {
		t.Fatalf("ConfigMap update: %s", e)
	}
	if got := r.timeout("web"); got != 2*time.Second {
		t.Fatalf("web's timeout after the ConfigMap update: %s", got)
	}
	time.Sleep(300 * time.Millisecond)
	if ev := r.eventsSince(n); len(ev) != 1 {
		t.Fatalf("one update, reloads: %v", ev)
	}
}

// TestReloadPutsBackUploadedVersion: versions uploaded through the admin API (Upgrade) are put
// back too when a reload fails: the bytes come from the supervisor. Before, the watcher kept
// only the files it had read, so web was left with the reload's entry ("could not be put back").
func TestReloadPutsBackUploadedVersion(t *testing.T) {
	r := start(t, twoPod, map[string][]byte{
		"web.wasm":      version(t, "web-v1", false),
		"side.wasm":     version(t, "side-v1", false),
		"side-bad.wasm": version(t, "side-bad", true),
	})
	for _, m := range []string{"web", "side"} {
		if err := r.sup.Upgrade(context.Background(), m, version(t, m+"-uploaded", false)); err != nil {
			t.Fatal(err)
		}
	}
	spec := strings.Replace(twoPod, "timeout: 1s", "timeout: 2s", 1)
	spec = strings.Replace(spec, "side.wasm", "side-bad.wasm", 1)
	e := r.waitEvent(r.writePod(spec), "pod ")
	for _, want := range []string{`module "side"`, "never got ready", `put back to the spec and version they ran: module "web"`} {
		if !strings.Contains(e, want) {
			t.Fatalf("the error does not say %q: %s", want, e)
		}
	}
	if got := r.timeout("web"); got != time.Second {
		t.Fatalf("web runs with timeout %s, want its old 1s", got)
	}
	if r.serves() != "web-uploaded" || r.servesOf("side") != "side-uploaded" {
		t.Fatalf("after a refused reload: web serves %q, side %q; want the uploaded versions", r.serves(), r.servesOf("side"))
	}
	if !strings.Contains(r.logText(), "the pod keeps running as it was") {
		t.Fatalf("the refusal was not logged as fully undone:\n%s", r.logText())
	}
}

// TestReloadCutByShutdownSaysSo: a shutdown that begins while a reload waits for its second
// module cuts it, and the first module, already changed, cannot be put back by a supervisor
// that is stopping: the reload says it was partly applied (ErrPartlyApplied), never that the
// pod runs as it was.
func TestReloadCutByShutdownSaysSo(t *testing.T) {
	r := start(t, twoPod, map[string][]byte{
		"web.wasm":      version(t, "web-v1", false),
		"side.wasm":     version(t, "side-v1", false),
		"side-bad.wasm": version(t, "side-bad", true),
	})
	spec := strings.Replace(twoPod, "timeout: 1s", "timeout: 2s", 1)
	// side-bad is given 30 s to get ready: the shutdown, not the readiness wait, ends its upgrade.
	spec = strings.Replace(spec, "wasm: side.wasm", "wasm: side-bad.wasm\n      readinessProbe: {periodSeconds: 1, failureThreshold: 30}", 1)
	n := r.writePod(spec)
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(r.logText(), `msg="pod reload: applying module" module=side`) {
		if time.Now().After(deadline) {
			t.Fatalf("the reload never reached side:\n%s", r.logText())
		}
		time.Sleep(2 * time.Millisecond)
	}
	if err := r.sup.Shutdown(context.Background()); err != nil {
		t.Logf("shutdown: %v", err)
	}
	e := r.waitEvent(n, "pod ")
	for _, want := range []string{`module "side"`, "reload partly applied", `module "web" could not be put back and runs the new entry`} {
		if !strings.Contains(e, want) {
			t.Fatalf("the error does not say %q: %s", want, e)
		}
	}
	log := r.logText()
	if strings.Contains(log, "keeps running as it was") || !strings.Contains(log, "could not be fully undone") {
		t.Fatalf("the log does not say the reload was left part applied:\n%s", log)
	}
}
