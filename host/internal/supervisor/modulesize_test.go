package supervisor

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/runtime"
)

// TestNewRefusesHugeModuleFile: a pod naming a module file over the compile budget's
// MaxModuleBytes (a sparse 20 GiB file here: a core dump put in its place) fails to start with
// an error naming the file, its size and the limit, without reading it. Before, the file was
// read whole into memory until the kernel killed the host.
func TestNewRefusesHugeModuleFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "web.wasm")
	if err := os.WriteFile(path, []byte("\x00asm\x01\x00\x00\x00"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, 20<<30); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Pod = testPod(t, "", module("web", "main", path, ""))
	cfg.StateDir = t.TempDir()

	goruntime.GC()
	var ms goruntime.MemStats
	goruntime.ReadMemStats(&ms)
	heap0, total0 := ms.HeapAlloc, ms.TotalAlloc
	start := time.Now()
	done := make(chan error, 1)
	go func() {
		s, err := New(context.Background(), cfg)
		if s != nil {
			s.Shutdown(context.Background())
		}
		done <- err
	}()
	var err error
	for waiting := true; waiting; {
		select {
		case err = <-done:
			waiting = false
		case <-time.After(20 * time.Millisecond):
			goruntime.ReadMemStats(&ms)
			if ms.HeapAlloc > heap0+256<<20 || time.Since(start) > time.Minute {
				os.Truncate(path, 0) // ends the read
				t.Fatalf("still reading after %v: heap grew by %d MiB", time.Since(start).Round(time.Millisecond), (ms.HeapAlloc-heap0)>>20)
			}
		}
	}
	goruntime.ReadMemStats(&ms)
	alloc := ms.TotalAlloc - total0
	if !errors.Is(err, runtime.ErrCompileBudget) || !strings.Contains(err.Error(), path) ||
		!strings.Contains(err.Error(), "module of 21474836480 bytes (limit MaxModuleBytes=") {
		t.Fatalf("New: %v, want ErrCompileBudget naming %s, its size and MaxModuleBytes", err, path)
	}
	if alloc > 32<<20 {
		t.Fatalf("refused after allocating %d MiB: the file was read", alloc>>20)
	}
	t.Logf("refused in %v, %d KiB allocated: %v", time.Since(start).Round(time.Microsecond), alloc>>10, err)
}
