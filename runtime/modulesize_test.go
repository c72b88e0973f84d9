package runtime_test

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

// sparse makes path a sparse file of size bytes: no disk, however large.
func sparse(t *testing.T, path string, size int64) {
	t.Helper()
	if err := os.WriteFile(path, []byte("\x00asm\x01\x00\x00\x00"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, size); err != nil {
		t.Fatal(err)
	}
}

// bounded runs f, failing the test if the heap grows by more than 256 MiB meanwhile (the file at
// path being read whole: it is then truncated, which ends the read) or f takes a minute, and
// returns how long f took, what the process allocated meanwhile and f's error.
func bounded(t *testing.T, path string, f func() error) (time.Duration, uint64, error) {
	t.Helper()
	goruntime.GC()
	var ms goruntime.MemStats
	goruntime.ReadMemStats(&ms)
	heap0, total0 := ms.HeapAlloc, ms.TotalAlloc
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- f() }()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			goruntime.ReadMemStats(&ms)
			return time.Since(start), ms.TotalAlloc - total0, err
		case <-tick.C:
			goruntime.ReadMemStats(&ms)
			if ms.HeapAlloc > heap0+256<<20 || time.Since(start) > time.Minute {
				os.Truncate(path, 0) // ends the read
				t.Fatalf("still reading after %v: heap grew by %d MiB", time.Since(start).Round(time.Millisecond), (ms.HeapAlloc-heap0)>>20)
			}
		}
	}
}

// TestLoadFileModuleSize: LoadFile refuses a file over the budget's MaxModuleBytes from its
// size, without reading it, with the error Load gives a module over a limit, naming the file.
// Before the limit a file of any size was read whole: a 20 GiB core dump named x.wasm in a
// plugin directory took the host's memory until the kernel killed it.
func TestLoadFileModuleSize(t *testing.T) {
	wasm := trapkit(t)
	small := runtime.DefaultCompileBudget()
	small.MaxModuleBytes = uint64(len(wasm)) - 1
	cases := []struct {
		name   string
		budget runtime.CompileBudget
		make   func(t *testing.T, path string)
		refuse bool
	}{
		{"a byte over a small limit", small, func(t *testing.T, path string) {
			if err := os.WriteFile(path, wasm, 0o644); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"at the limit", runtime.CompileBudget{MaxModuleBytes: uint64(len(wasm))}, func(t *testing.T, path string) {
			if err := os.WriteFile(path, wasm, 0o644); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"sparse 20 GiB under the default budget", runtime.CompileBudget{}, func(t *testing.T, path string) {
			sparse(t, path, 20<<30)
		}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEngine(t, runtime.Config{CacheDir: t.TempDir(), CompileBudget: c.budget})
			path := filepath.Join(t.TempDir(), "x.wasm")
			c.make(t, path)
			var m *runtime.Module
			took, alloc, err := bounded(t, path, func() (err error) {
				m, err = e.LoadFile(context.Background(), path, runtime.DefaultModuleConfig("file"))
				return err
			})
			if m != nil {
				m.Close(context.Background())
			}
			if !c.refuse {
				if err != nil {
					t.Fatalf("LoadFile: %v", err)
				}
				return
			}
			if !errors.Is(err, runtime.ErrCompileBudget) || !errors.Is(err, runtime.ErrInvalidModule) ||
				!strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "(limit MaxModuleBytes=") {
				t.Fatalf("LoadFile: %v, want ErrCompileBudget naming %s and MaxModuleBytes", err, path)
			}
			if alloc > 32<<20 {
				t.Fatalf("refused after allocating %d MiB: the file was read", alloc>>20)
			}
			t.Logf("refused in %v, %d KiB allocated: %v", took.Round(time.Microsecond), alloc>>10, err)
		})
	}
}

// TestLoadModuleSize: Load and CheckCompileBudget refuse bytes over MaxModuleBytes, trusted
// modules too (the budget applies to them: an upgrade's bytes come from whoever uploads them).
func TestLoadModuleSize(t *testing.T) {
	wasm := trapkit(t)
	b := runtime.DefaultCompileBudget()
	b.MaxModuleBytes = uint64(len(wasm)) - 1
	err := runtime.CheckCompileBudget(wasm, b)
	if !errors.Is(err, runtime.ErrCompileBudget) || !strings.Contains(err.Error(), "(limit MaxModuleBytes=") {
		t.Fatalf("CheckCompileBudget: %v, want ErrCompileBudget naming MaxModuleBytes", err)
	}
	if def := runtime.DefaultCompileBudget().MaxModuleBytes; def == 0 {
		t.Fatal("the default budget has no MaxModuleBytes")
	}
	e := newEngine(t, runtime.Config{CacheDir: t.TempDir(), CompileBudget: b})
	for _, trusted := range []bool{false, true} {
		cfg := runtime.DefaultModuleConfig("big")
		cfg.Trusted = trusted
		m, err := e.Load(context.Background(), wasm, cfg)
		if m != nil {
			m.Close(context.Background())
		}
		if !errors.Is(err, runtime.ErrCompileBudget) || !strings.Contains(err.Error(), "MaxModuleBytes") {
			t.Fatalf("Load (trusted %v): %v, want ErrCompileBudget naming MaxModuleBytes", trusted, err)
		}
	}
}
