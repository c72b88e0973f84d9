package podspec

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wasmpod/wasmpod/internal/hugefile"
)

// TestLoadRefusesHugeFiles: Load refuses a pod file over MaxPodFileBytes, and a module file over
// the default compile budget's MaxModuleBytes, from their sizes (sparse files here), without
// reading them. Before, both were read whole: a 1 GiB pod file took 1 GiB of heap and more
// before Parse refused it, a 20 GiB module file everything.
func TestLoadRefusesHugeFiles(t *testing.T) {
	cases := []struct {
		name string
		pod  int64 // size of a sparse pod file; 0: a valid one
		wasm int64 // size of a sparse web.wasm; 0: a valid module
		want []string
	}{
		{"pod file a byte over the limit", MaxPodFileBytes + 1, 0, []string{fmt.Sprintf("pod file is %d bytes; the limit is MaxPodFileBytes=%d", MaxPodFileBytes+1, MaxPodFileBytes)}},
		{"sparse 1 GiB pod file", 1 << 30, 0, []string{fmt.Sprintf("pod file is %d bytes; the limit is MaxPodFileBytes=%d", 1<<30, MaxPodFileBytes)}},
		{"sparse 20 GiB module file", 0, 20 << 30, []string{"spec.modules[0].wasm: cannot read wasm file", "web.wasm", "module of 21474836480 bytes (limit MaxModuleBytes="}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			pod, wasm := filepath.Join(dir, "pod.yaml"), filepath.Join(dir, "web.wasm")
			writeFiles(t, dir, map[string]string{"pod.yaml": withModule, "web.wasm": nativeWasm})
			huge := pod
			for path, size := range map[string]int64{pod: c.pod, wasm: c.wasm} {
				if size > 0 {
					huge = path
					if err := os.Truncate(path, size); err != nil {
						t.Fatal(err)
					}
				}
			}
			_, alloc, err := hugefile.Bounded(t, huge, func() error { _, err := Load(pod); return err })
			if !errors.Is(err, ErrInvalidSpec) {
				t.Fatalf("Load: %v, want ErrInvalidSpec", err)
			}
			for _, w := range append(c.want, pod) {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("Load: %v\nwant %q in it", err, w)
				}
			}
			if alloc > 32<<20 {
				t.Fatalf("refused after allocating %d MiB: the file was read", alloc>>20)
			}
			t.Logf("%d KiB allocated: %v", alloc>>10, err)
		})
	}
}
