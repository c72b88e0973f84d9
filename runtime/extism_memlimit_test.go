package runtime_test

import (
	"context"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/wasmpod/wasmpod/internal/wasmbuild"
	"github.com/wasmpod/wasmpod/runtime"
)

// memhogRecord is what a call of testdata/extism_memhog.wat reports, and the instance's pages
// after it (the plugin's memory and the kernel's: Stats counts the one instance alone).
type memhogRecord struct{ own, kernel, blocks uint64 }

func memhogCall(t *testing.T, m *runtime.Module, role runtime.Role) memhogRecord {
	t.Helper()
	out, err := m.Call(context.Background(), role, nil, nil)
	if err != nil || len(out) != 16 {
		t.Fatalf("%s: %x %v", role, out, err)
	}
	r := memhogRecord{own: binary.LittleEndian.Uint64(out), blocks: binary.LittleEndian.Uint64(out[8:])}
	total := m.Stats().MemoryPages
	if total < r.own {
		t.Fatalf("%s: Stats().MemoryPages %d, less than the plugin's own %d pages", role, total, r.own)
	}
	r.kernel = total - r.own
	return r
}

// TestExtismMemoryLimitShared: the memory limit holds for an Extism instance as a whole, its
// plugin's memory, Extism's kernel's memory and its tables together (guest-sdk/ABI.md section
// 8), whichever memory grows first; a grow past what is left fails (memory.grow -1, the
// kernel's alloc 0) and the instance keeps working. Its reported pages are the sum.
func TestExtismMemoryLimitShared(t *testing.T) {
	const (
		limit      = 64 // pages, 4 MiB
		tablePages = 8  // the plugin's table: 65536 entries of 8 bytes
		kernelMin  = 16 // Extism's kernel declares 16 pages
	)
	e := newEngine(t, runtime.DefaultConfig())
	wasm := readFile(t, wasmbuild.WAT(t, "testdata/extism_memhog.wat"))
	config := func(name, handle string) runtime.ModuleConfig {
		cfg := extismConfig(name)
		cfg.MaxMemoryPages = limit
		cfg.MaxConcurrency, cfg.MinInstances = 1, 1 // one instance, so Stats counts it alone
		cfg.ExtismFunctions = map[runtime.Role]string{runtime.RoleHandle: handle, runtime.RoleLeaf: "fit"}
		return cfg
	}
	for _, fn := range []string{"hog", "hog_kernel"} {
		t.Run(fn, func(t *testing.T) {
			m := started(t, e, wasm, config("memhog-"+fn, fn))

			// Within the budget, as before. (The kernel grows its memory past its declared 16
			// pages for its blocks: its allocator claims the pages after its first by growing.)
			fit := memhogCall(t, m, runtime.RoleLeaf)
			if fit.own != 1 || fit.kernel < kernelMin || fit.blocks != 8 {
				t.Fatalf("fit: %+v", fit)
			}

			r := memhogCall(t, m, runtime.RoleHandle)
			t.Logf("%s: %+v", fn, r)
			if r.own+r.kernel+tablePages > limit {
				t.Fatalf("%s: the instance holds %d pages (plugin %d, kernel %d) and %d of tables, over its limit of %d",
					fn, r.own+r.kernel, r.own, r.kernel, tablePages, limit)
			}
			// The grows stopped at the budget, not before: the memories and tables fill it, and
			// the memory that grew second did not grow at all.
			if r.own+r.kernel+tablePages != limit || r.blocks*32768 > r.kernel*65536 {
				t.Fatalf("%s: %+v, want the memories to fill the %d pages the tables leave", fn, r, limit-tablePages)
			}
			if fn == "hog" && r.kernel != fit.kernel || fn == "hog_kernel" && (r.own != 1 || r.blocks == 0) {
				t.Fatalf("%s: %+v after %+v: the memory that grew second grew anyway", fn, r, fit)
			}

			// The instance was kept and still works: the kernel frees its blocks at every call.
			if r2 := memhogCall(t, m, runtime.RoleLeaf); r2.blocks != 8 || r2.own != r.own || r2.kernel != r.kernel {
				t.Fatalf("fit after %s: %+v, then %+v", fn, r, r2)
			}
			if st := m.Stats(); st.Discards != 0 || st.Errors != 0 || st.Instances != 1 {
				t.Fatalf("stats %+v", st)
			}
		})
	}

	// A limit the memories' declared minimums do not fit next to the tables (the plugin's 1 page
	// and the kernel's 16 need 17 of the 16 that 24 pages leave) is refused at load, not at a
	// grow.
	cfg := config("memhog-small", "hog")
	cfg.MaxMemoryPages = kernelMin + tablePages
	m, err := e.Load(context.Background(), wasm, cfg)
	if !errors.Is(err, runtime.ErrMemoryLimit) {
		if err == nil {
			m.Close(context.Background())
		}
		t.Fatalf("load with a limit of %d pages: %v, want ErrMemoryLimit", cfg.MaxMemoryPages, err)
	}
	t.Log(err)
}
