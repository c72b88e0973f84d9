package supervisor

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/internal/hugefile"
	"github.com/wasmpod/wasmpod/runtime"
)

// TestNewRefusesHugeModuleFile: a pod naming a module file over the compile budget's
// MaxModuleBytes (a sparse 20 GiB file here: a core dump put in its place) fails to start with
// an error naming the file, its size and the limit, without reading it. Before, the file was
// read whole into memory until the kernel killed the host.
func TestNewRefusesHugeModuleFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "web.wasm")
	hugefile.Sparse(t, path, 20<<30)
	cfg := DefaultConfig()
	cfg.Pod = testPod(t, "", module("web", "main", path, ""))
	cfg.StateDir = t.TempDir()
	took, alloc, err := hugefile.Bounded(t, path, func() error {
		s, err := New(context.Background(), cfg)
		if s != nil {
			s.Shutdown(context.Background())
		}
		return err
	})
	if !errors.Is(err, runtime.ErrCompileBudget) || !strings.Contains(err.Error(), path) ||
		!strings.Contains(err.Error(), "module of 21474836480 bytes (limit MaxModuleBytes=") {
		t.Fatalf("New: %v, want ErrCompileBudget naming %s, its size and MaxModuleBytes", err, path)
	}
	if alloc > 32<<20 {
		t.Fatalf("refused after allocating %d MiB: the file was read", alloc>>20)
	}
	t.Logf("refused in %v, %d KiB allocated: %v", took.Round(time.Microsecond), alloc>>10, err)
}
