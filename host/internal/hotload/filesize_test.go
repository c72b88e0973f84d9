package hotload

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/host/internal/podspec"
	"github.com/wasmpod/wasmpod/internal/hugefile"
)

// waitEventBounded waits for an Applied event after n whose text contains want, failing the test
// if the heap grows by more than 256 MiB meanwhile (the file at path being read whole: it is then
// truncated, which ends the read and lets the watcher close) or a minute passes. It returns the
// event and what the process allocated meanwhile.
func (r *rig) waitEventBounded(n int, want, path string) (string, uint64) {
	r.t.Helper()
	w := hugefile.Start(r.t, path)
	for {
		for _, e := range r.eventsSince(n) {
			if strings.Contains(e, want) {
				_, alloc := w.Done()
				return e, alloc
			}
		}
		w.Check(fmt.Sprintf(", no event with %q\nlog:\n%s", want, r.logText()))
		time.Sleep(20 * time.Millisecond)
	}
}

// TestHugePluginFileSetAside: a 20 GiB file named x.wasm dropped into a plugin directory (a core
// dump, by mistake; sparse here) is refused from its size without being read, set aside as
// x.wasm.refused like any refused plugin file, and the watcher goes on. Before, the watcher read
// it whole: the heap grew until the kernel killed the host.
func TestHugePluginFileSetAside(t *testing.T) {
	r := start(t, dirPod, map[string][]byte{"plugins/v1.wasm": version(t, "v1", false)})
	plugins := filepath.Join(r.dir, "plugins")
	n := r.nEvents()
	huge := filepath.Join(plugins, ".core.tmp")
	hugefile.Sparse(t, huge, 20<<30)
	if err := os.Rename(huge, filepath.Join(plugins, "v2.wasm")); err != nil {
		t.Fatal(err)
	}
	e, alloc := r.waitEventBounded(n, "v2.wasm", filepath.Join(plugins, "v2.wasm"))
	if !strings.Contains(e, "module of 21474836480 bytes (limit MaxModuleBytes=") {
		t.Fatalf("the huge file: %s", e)
	}
	if alloc > 32<<20 {
		t.Fatalf("refused after allocating %d MiB: the file was read", alloc>>20)
	}
	t.Logf("%d KiB allocated: %s", alloc>>10, e)
	if _, err := os.Stat(filepath.Join(plugins, "v2.wasm.refused")); err != nil {
		t.Fatalf("the huge file was not set aside: %v", err)
	}
	if !strings.Contains(r.logText(), "v2.wasm.refused") {
		t.Fatalf("setting the file aside was not logged:\n%s", r.logText())
	}
	if got := r.serves(); got != "v1" {
		t.Fatalf("serves %q after the huge file", got)
	}
	// The watcher goes on.
	writeAtomic(t, plugins, "v3.wasm", version(t, "v3", false))
	r.waitServes("v3", 30*time.Second)
}

// TestHugePodFileRefused: a pod file over podspec.MaxPodFileBytes (a sparse 1 GiB one here) is
// refused from its size on reload, naming the file, its size and the limit; the pod keeps
// running, and the file once fixed is applied. Before, it was read whole (1 GiB of heap and more).
func TestHugePodFileRefused(t *testing.T) {
	r := start(t, filePod, map[string][]byte{"web.wasm": version(t, "v1", false)})
	n := r.nEvents()
	if err := os.Truncate(r.podFile, 1<<30); err != nil {
		t.Fatal(err)
	}
	r.w.Reload()
	e, alloc := r.waitEventBounded(n, "pod ", r.podFile)
	want := fmt.Sprintf("pod file is %d bytes; the limit is MaxPodFileBytes=%d", 1<<30, podspec.MaxPodFileBytes)
	if !strings.Contains(e, want) || !strings.Contains(e, r.podFile) {
		t.Fatalf("reload of the huge pod file: %s\nwant %q", e, want)
	}
	if alloc > 32<<20 {
		t.Fatalf("refused after allocating %d MiB: the file was read", alloc>>20)
	}
	t.Logf("%d KiB allocated: %s", alloc>>10, e)
	if got := r.serves(); got != "v1" {
		t.Fatalf("serves %q after the huge pod file", got)
	}
	e = r.waitEvent(r.writePod(strings.Replace(filePod, "timeout: 1s", "timeout: 2s", 1)), "pod ")
	if !strings.HasSuffix(e, ": <nil>") || r.timeout("web") != 2*time.Second {
		t.Fatalf("after the huge pod file: %s, web's timeout %s", e, r.timeout("web"))
	}
}
