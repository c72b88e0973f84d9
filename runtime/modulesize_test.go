package runtime_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/internal/hugefile"
	"github.com/wasmpod/wasmpod/runtime"
)

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
			hugefile.Sparse(t, path, 20<<30)
		}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEngine(t, runtime.Config{CacheDir: t.TempDir(), CompileBudget: c.budget})
			path := filepath.Join(t.TempDir(), "x.wasm")
			c.make(t, path)
			var m *runtime.Module
			took, alloc, err := hugefile.Bounded(t, path, func() (err error) {
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
