package runtime_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/internal/wasmbuild"
	"github.com/wasmpod/wasmpod/runtime"
)

// cacheEntries lists the compiled-code files of a compilation cache directory.
func cacheEntries(t *testing.T, dir string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() && !strings.HasSuffix(p, ".tmp") {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// TestCacheDamagedEntryRecompiled: a compilation cache entry damaged on disk (a flipped bit in
// its code, cut short, emptied) makes wazero fail the compile with a "compilationcache:" error,
// at every load of that module, for good: before, Load reported it as an invalid module (a host
// sets such uploads aside). Now the damaged entry is removed, the module compiled again, and the
// entry rewritten.
func TestCacheDamagedEntryRecompiled(t *testing.T) {
	cases := []struct {
		name   string
		damage func(b []byte) []byte
	}{
		{"bit flipped in the code", func(b []byte) []byte { b[len(b)/2] ^= 0x10; return b }},
		{"cut short", func(b []byte) []byte { return b[:len(b)/2] }},
		{"cut in the header", func(b []byte) []byte { return b[:9] }},
		{"emptied", func(b []byte) []byte { return nil }},
		{"garbage magic", func(b []byte) []byte { copy(b, "XXXXXX"); return b }},
	}
	wasm := trapkit(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			load := func() error {
				e, err := runtime.NewEngine(context.Background(), runtime.Config{CacheDir: dir})
				if err != nil {
					t.Fatal(err)
				}
				defer e.Close(context.Background())
				m, err := e.Load(context.Background(), wasm, runtime.DefaultModuleConfig("kit"))
				if err != nil {
					return err
				}
				return m.Close(context.Background())
			}
			if err := load(); err != nil {
				t.Fatal(err)
			}
			files := cacheEntries(t, dir)
			if len(files) == 0 {
				t.Fatal("nothing cached")
			}
			for _, f := range files {
				b, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(f, c.damage(b), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			err := load()
			if err != nil {
				t.Fatalf("Load with a damaged cache entry: %v (invalid module: %v)", err, errors.Is(err, runtime.ErrInvalidModule))
			}
			// The entry was rewritten: a third engine loads from it.
			if err := load(); err != nil {
				t.Fatalf("Load after the repair: %v", err)
			}
		})
	}
}

// TestCacheUnusableFailsClearly: a cache directory the engine cannot use (here its versioned
// directory replaced by a file after the engine opened it) fails a load as the cache's failure,
// naming the directory, not as an invalid module: the module is not to blame.
func TestCacheUnusableFailsClearly(t *testing.T) {
	dir := t.TempDir()
	e := newEngine(t, runtime.Config{CacheDir: dir})
	subs, _ := filepath.Glob(filepath.Join(dir, "wazero-*"))
	if len(subs) != 1 {
		t.Fatalf("cache subdirectories: %v", subs)
	}
	if err := os.RemoveAll(subs[0]); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(subs[0], []byte("not a directory"), 0o600); err != nil {
		t.Fatal(err)
	}
	command := readFile(t, wasmbuild.WATString(t, `(module (memory (export "memory") 1) (func (export "_start")))`))
	for _, c := range []struct {
		name string
		load func() error
	}{
		{"Load", func() error {
			_, err := e.Load(context.Background(), trapkit(t), runtime.DefaultModuleConfig("kit"))
			return err
		}},
		{"LoadCommand", func() error {
			_, err := e.LoadCommand(context.Background(), command, runtime.DefaultCommandConfig("cmd"))
			return err
		}},
	} {
		err := c.load()
		if err == nil || errors.Is(err, runtime.ErrInvalidModule) || !strings.Contains(err.Error(), "compilation cache") || !strings.Contains(err.Error(), dir) {
			t.Fatalf("%s: %v, want a compilation cache failure naming %s (not an invalid module)", c.name, err, dir)
		}
		t.Log(err)
	}
}

// TestCacheSharedByEngines: engines sharing one cache directory load the same modules at once;
// every load succeeds and the entries are whole (a further engine loads from them).
func TestCacheSharedByEngines(t *testing.T) {
	dir := t.TempDir()
	mods := [][]byte{trapkit(t), readFile(t, wasmbuild.WAT(t, "testdata/hostile/init_loop.wat"))}
	var engines []*runtime.Engine
	for range 4 {
		engines = append(engines, newEngine(t, runtime.Config{CacheDir: dir}))
	}
	atOnce(t, 8, func(i int) error {
		e := engines[i/2]
		// init_loop's _initialize never returns: it is cut at its CallTimeout, after its
		// compile, which is what is shared.
		cfg := runtime.DefaultModuleConfig("loop")
		cfg.CallTimeout = 100 * time.Millisecond
		if _, err := e.Load(context.Background(), mods[1], cfg); !errors.Is(err, runtime.ErrDeadline) {
			return fmt.Errorf("init_loop: %v, want its _initialize cut", err)
		}
		m, err := e.Load(context.Background(), mods[0], runtime.DefaultModuleConfig("kit"))
		if err != nil {
			return err
		}
		m.Close(context.Background())
		return nil
	})
	for _, f := range cacheEntries(t, dir) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !runtime.CacheEntryValid(b) {
			t.Errorf("cache entry %s damaged", f)
		}
	}
}

// manyTypes builds the WAT module src with 1,024 more function types, which widen the window
// of wazero#2547 (wazero compiles an entry preamble per type after it publishes the module).
// The load looks up _initialize, where the panic was.
func manyTypes(t *testing.T, src string) []byte {
	var types strings.Builder
	vts := []string{"i32", "i64", "f32", "f64"}
	for i := range 1024 {
		types.WriteString("(type (func (param")
		for j := i; ; j /= 4 {
			types.WriteString(" " + vts[j%4])
			if j < 4 {
				break
			}
		}
		types.WriteString(")))\n")
	}
	i := strings.Index(src, "(module")
	if i < 0 {
		t.Fatal("no (module in the WAT source")
	}
	i += len("(module")
	return readFile(t, wasmbuild.WATString(t, src[:i]+"\n"+types.String()+src[i:]))
}

// withInitialize adds an empty _initialize export to the WAT module src.
func withInitialize(src string) string {
	i := strings.LastIndex(src, ")")
	return src[:i] + `(func (export "_initialize")))` + src[i+1:]
}

// TestCacheHitLoadedAtOnce: goroutines of one engine load the same module at once from a warm
// compilation cache. wazero v1.12.0 publishes a module read from the cache before its entry
// preambles exist (wazero/wazero#2547), and a load that found it there panicked in
// ExportedFunction; compiles of the same bytes now take turns (compileLocks). Each round uses a
// fresh engine, so its first compile reads the cache. Extism plugins share the engine's cache
// and compile extism's kernel each time.
func TestCacheHitLoadedAtOnce(t *testing.T) {
	for _, c := range []struct {
		name string
		wasm []byte
		abi  runtime.ABI
	}{
		{"native", manyTypes(t, string(readFile(t, "testdata/trapkit.wat"))), runtime.ABINative},
		{"extism", manyTypes(t, withInitialize(string(readFile(t, "testdata/extism_hostile.wat")))), runtime.ABIExtism},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := runtime.DefaultModuleConfig("m")
			cfg.ABI = c.abi
			if c.abi == runtime.ABIExtism {
				cfg.ExtismFunctions = map[runtime.Role]string{runtime.RoleHandle: "ok"}
			}
			dir := t.TempDir()
			warm := newEngine(t, runtime.Config{CacheDir: dir})
			if m, err := warm.Load(context.Background(), c.wasm, cfg); err != nil {
				t.Fatal(err)
			} else {
				m.Close(context.Background())
			}
			for round := range 10 {
				e, err := runtime.NewEngine(context.Background(), runtime.Config{CacheDir: dir})
				if err != nil {
					t.Fatal(err)
				}
				atOnce(t, 8, func(int) error {
					m, err := e.Load(context.Background(), c.wasm, cfg)
					if err != nil {
						return fmt.Errorf("round %d: %w", round, err)
					}
					m.Close(context.Background())
					return nil
				})
				e.Close(context.Background())
			}
		})
	}
}

// atOnce runs f(0) to f(n-1) in goroutines of their own and reports what they return.
func atOnce(t *testing.T, n int, f func(i int) error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = f(i)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}
