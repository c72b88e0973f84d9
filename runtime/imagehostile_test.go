package runtime_test

import (
	"context"
	goruntime "runtime"
	"strings"
	"testing"

	"github.com/wasmpod/wasmpod/internal/wasmbuild"
	"github.com/wasmpod/wasmpod/runtime"
)

// TestImageCheckOffHeap: an initialiser may leave its memory as large as the module's limit
// (here 1 GiB), and that is what the image holds, in a memfd, off the Go heap. Building the
// image checks one instance against it; before, the check read the whole image back into a
// Go slice: 1 GiB of Go heap for a module with that limit, per image build, on top of what
// every limit accounts for.
func TestImageCheckOffHeap(t *testing.T) {
	if goruntime.GOOS != "linux" {
		t.Skip("images are memfd-backed on Linux only")
	}
	e := newEngine(t, runtime.DefaultConfig())
	cfg := runtime.DefaultModuleConfig("grow")
	cfg.MaxMemoryPages = 16384
	m, err := e.Load(context.Background(), readFile(t, wasmbuild.WAT(t, "testdata/hostile/init_grow.wat")), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	var before, after goruntime.MemStats
	goruntime.ReadMemStats(&before)
	m.PrepareImage()
	goruntime.ReadMemStats(&after)
	if img := m.Info().Image; !strings.HasPrefix(img, "ready") {
		t.Fatalf("image: %s", img)
	}
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("image of 1 GiB built, %d MiB allocated on the Go heap", alloc>>20)
	if alloc > 64<<20 {
		t.Fatalf("building the image allocated %d MiB on the Go heap", alloc>>20)
	}
	// An instance made from the image sees the initialiser's last byte.
	if ok, err := runtime.UseImageInstance(m); !ok || err != nil {
		t.Fatalf("image instance: %v %v", ok, err)
	}
}
