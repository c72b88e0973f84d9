//go:build unix

package hotload

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestReloadRefusesAFIFO: a module file that a FIFO has replaced (anyone who can write the pod's
// directory can make one) is refused as not a regular file, nothing is applied, and the watcher
// goes on: a read of it would block the watcher's goroutine for good (no later change applied,
// Close hung). The pod file's validation refuses it; the reads themselves (internal/regfile)
// refuse it too, should it appear between the check and the read.
func TestReloadRefusesAFIFO(t *testing.T) {
	r := start(t, twoPod, map[string][]byte{
		"web.wasm":  version(t, "web-v1", false),
		"side.wasm": version(t, "side-v1", false),
	})
	side := filepath.Join(r.dir, "side.wasm")
	if err := os.Remove(side); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(side, 0o644); err != nil {
		t.Fatal(err)
	}
	// Were the watcher blocked in its open, this unblocks it when the test ends.
	t.Cleanup(func() {
		if f, err := os.OpenFile(side, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
	})
	e := r.waitEvent(r.writePod(strings.Replace(twoPod, "timeout: 1s", "timeout: 2s", 1)), "pod ")
	if !strings.Contains(e, "not a regular file") || !strings.Contains(e, "side.wasm") {
		t.Fatalf("the reload with a FIFO for side.wasm: %s", e)
	}
	if got := r.timeout("web"); got != time.Second {
		t.Fatalf("web runs with timeout %s after a refused reload", got)
	}
	// The watcher goes on: with the file back, the same change applies.
	if err := os.Remove(side); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(side, version(t, "side-v1", false), 0o644); err != nil {
		t.Fatal(err)
	}
	e = r.waitEvent(r.writePod(strings.Replace(twoPod, "timeout: 1s", "timeout: 3s", 1)), "pod ")
	if !strings.HasSuffix(e, ": <nil>") || r.timeout("web") != 3*time.Second {
		t.Fatalf("after the FIFO: %s, web's timeout %s", e, r.timeout("web"))
	}
}
