package runtime_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/internal/wasmbuild"
	"github.com/wasmpod/wasmpod/runtime"
	"github.com/wasmpod/wasmpod/runtime/internal/budget/corpus"
)

// TestLoadRefusesBranchBombs: control flow the compiler's dominator passes walk in quadratic
// time (conditionals one after another, many branches to one label) is refused by the compile
// budget (MaxBranchWork) before the compiler sees it. Before the limit, each of these was a
// small upload within every other limit: 40,000 ifs (200 KB) compiled for 45 s of CPU, 80,000
// br_ifs to one label (320 KB) for 108 s, 2,828 loops in a row (8.5 KB, each given a fuel check
// and a retry loop by the instrumentation) for 5 s, and a 4 MB body of any of them for hours;
// 9,999 locals read after 2,000 ifs (50 KB, within the branch work) for 155 s and 4 GiB
// (MaxLocalWork).
func TestLoadRefusesBranchBombs(t *testing.T) {
	e := newEngine(t, runtime.Config{CacheDir: t.TempDir()})
	cases := []struct {
		name string
		wasm []byte
	}{
		{"40k ifs in a row", corpus.Ifs(40_000)},
		{"800k ifs in a row (4 MB)", corpus.Ifs(800_000)},
		{"80k br_ifs to one label", corpus.BrIfs(80_000)},
		{"1M br_ifs to one label (4 MB)", corpus.BrIfs(1_000_000)},
		{"br_table of 4M entries", corpus.BrTable(4_000_000)},
		{"40k loops in a row (120 KB)", corpus.Loops(40_000)},
		{"9,999 locals read after 2,000 ifs (50 KB)", corpus.LocalsAcrossIfs(9_999, 2_000)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			limit := "MaxBranchWork"
			if strings.Contains(c.name, "locals") {
				limit = "MaxLocalWork"
			}
			done := make(chan error, 1)
			start := time.Now()
			go func() {
				m, err := e.Load(context.Background(), c.wasm, runtime.DefaultModuleConfig("bomb"))
				if m != nil {
					m.Close(context.Background())
				}
				done <- err
			}()
			select {
			case err := <-done:
				if !errors.Is(err, runtime.ErrCompileBudget) || !strings.Contains(err.Error(), limit) {
					t.Fatalf("Load: %v, want ErrCompileBudget naming %s", err, limit)
				}
				t.Logf("%d bytes refused in %v: %v", len(c.wasm), time.Since(start).Round(time.Millisecond), err)
			case <-time.After(30 * time.Second):
				t.Fatalf("Load of %d bytes still compiling after 30 s: the budget let it through", len(c.wasm))
			}
		})
	}
}

// largestWithin is the largest n for which gen(n) is within the default compile budget.
func largestWithin(t *testing.T, gen func(int) []byte) int {
	lo, hi := 1, 1<<22
	for lo < hi {
		mid := (lo + hi + 1) / 2
		if runtime.CheckCompileBudget(gen(mid), runtime.CompileBudget{}) == nil {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	return lo
}

// TestBranchWorkWithinBudgetIsBounded compiles, through Load, the largest modules of each
// shape the branch work budget lets through, and bounds the process CPU it takes loosely (like
// TestCompileWithinBudgetIsBounded): the figures logged are the claim.
func TestBranchWorkWithinBudgetIsBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles modules at the budget's limits")
	}
	cases := []struct {
		name string
		gen  func(int) []byte
	}{
		{"ifs in a row", corpus.Ifs},
		{"br_ifs to one label", corpus.BrIfs},
		{"br_table entries to one label", corpus.BrTable},
		{"loops in a row (instrumented: a check and a retry loop each)", corpus.Loops},
		{"loops with a back edge each", corpus.BackEdges},
		{"1,000 locals read after ifs", func(n int) []byte { return corpus.LocalsAcrossIfs(1_000, n) }},
		{"100 locals read after ifs", func(n int) []byte { return corpus.LocalsAcrossIfs(100, n) }},
		{"locals read after 100 ifs", func(n int) []byte { return corpus.LocalsAcrossIfs(min(n, 9_999), 100) }},
		{"nops (instrumented: a check every MaxStraight)", func(n int) []byte { return corpus.Nops(min(n, 4<<20-16)) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n := largestWithin(t, c.gen)
			wasm := c.gen(n)
			e := newEngine(t, runtime.Config{CacheDir: t.TempDir()})
			cpu0 := cpuTime()
			start := time.Now()
			m, err := e.Load(context.Background(), wasm, runtime.DefaultModuleConfig("bounded"))
			cpu := cpuTime() - cpu0
			if m != nil {
				m.Close(context.Background())
			}
			if errors.Is(err, runtime.ErrCompileBudget) {
				t.Fatalf("n=%d: %v", n, err)
			}
			t.Logf("n=%d, %d bytes: load %v (process CPU %v; err: %v)", n, len(wasm), time.Since(start).Round(time.Millisecond), cpu.Round(time.Millisecond), err)
			if limit := 10 * time.Second * raceSlowdown; cpu > limit {
				t.Fatalf("compile not bounded: %v of CPU (limit %v)", cpu, limit)
			}
		})
	}
}

// TestLoadRefusesDeclarationBombs: declarations that cost the decoder or every instance in
// proportion to a count the module states cheaply are refused by the compile budget, without
// the allocations they cost before: one function type of 100,000 parameters (100 KB) took 15 s
// of CPU and allocated 14 GiB (wazero builds a type's key one value at a time), 1M globals
// (5 MB) 0.9 s and 330 MiB, and every instance a global instance for each.
func TestLoadRefusesDeclarationBombs(t *testing.T) {
	e := newEngine(t, runtime.Config{CacheDir: t.TempDir()})
	cases := []struct {
		name  string
		wasm  []byte
		limit string
	}{
		{"one type of 100k parameters", corpus.Types(1, 100_000), "MaxTypeWork"},
		{"1M types", corpus.Types(1_000_000, 1), "MaxTypeWork"},
		{"1M globals", corpus.Globals(1_000_000), "MaxGlobals"},
		{"1M exports", corpus.Exports(1_000_000), "MaxExports"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var before, after goruntime.MemStats
			goruntime.ReadMemStats(&before)
			start := time.Now()
			m, err := e.Load(context.Background(), c.wasm, runtime.DefaultModuleConfig("bomb"))
			el := time.Since(start)
			goruntime.ReadMemStats(&after)
			if m != nil {
				m.Close(context.Background())
			}
			alloc := after.TotalAlloc - before.TotalAlloc
			t.Logf("%d bytes: %v, allocated %d MiB: %v", len(c.wasm), el.Round(time.Millisecond), alloc>>20, err)
			if !errors.Is(err, runtime.ErrCompileBudget) || !strings.Contains(err.Error(), c.limit) {
				t.Fatalf("Load: %v (after %v, %d MiB allocated), want ErrCompileBudget naming %s", err, el.Round(time.Millisecond), alloc>>20, c.limit)
			}
			if alloc > 64<<20 {
				t.Fatalf("refusing it allocated %d MiB", alloc>>20)
			}
		})
	}
}

// TestDeclarationsWithinBudgetAreBounded loads modules at the type, global and export limits
// and bounds the process CPU and the allocation loosely; the figures logged are the claim.
func TestDeclarationsWithinBudgetAreBounded(t *testing.T) {
	d := runtime.DefaultCompileBudget()
	cases := []struct {
		name string
		wasm []byte
	}{
		{"one type as long as the type work allows", corpus.Types(1, largestWithin(t, func(n int) []byte { return corpus.Types(1, n) }))},
		{"as many small types as the type work allows", corpus.Types(largestWithin(t, func(n int) []byte { return corpus.Types(n, 1) }), 1)},
		{"globals at the limit", corpus.Globals(int(d.MaxGlobals))},
		{"exports at the limit", corpus.Exports(int(d.MaxExports))},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEngine(t, runtime.Config{CacheDir: t.TempDir()})
			var before, after goruntime.MemStats
			goruntime.ReadMemStats(&before)
			cpu0 := cpuTime()
			m, err := e.Load(context.Background(), c.wasm, runtime.DefaultModuleConfig("bounded"))
			cpu := cpuTime() - cpu0
			goruntime.ReadMemStats(&after)
			if m != nil {
				m.Close(context.Background())
			}
			if errors.Is(err, runtime.ErrCompileBudget) {
				t.Fatal(err)
			}
			alloc := after.TotalAlloc - before.TotalAlloc
			t.Logf("%d bytes: process CPU %v, allocated %d MiB (err: %v)", len(c.wasm), cpu.Round(time.Millisecond), alloc>>20, err)
			if limit := 10 * time.Second * raceSlowdown; cpu > limit || alloc > 1<<30 {
				t.Fatalf("load not bounded: %v of CPU (limit %v), %d MiB allocated", cpu, limit, alloc>>20)
			}
		})
	}
}

// TestLoadHonoursContext: a load runs the module's initialisation (its start section,
// _initialize) on the first instance; when the load's context ends first (a deadline shorter
// than the module's CallTimeout, a caller that went away), the initialisation is cut then and
// Load returns. Before, the first instance was initialised under context.Background(): Load of a
// module whose initialisation loops ran for the whole CallTimeout whatever its context.
func TestLoadHonoursContext(t *testing.T) {
	for _, mod := range []string{"start_loop", "init_loop", "extism_start_fib"} {
		for _, how := range []string{"deadline", "cancel"} {
			t.Run(mod+"/"+how, func(t *testing.T) {
				e := newEngine(t, runtime.DefaultConfig())
				cfg := runtime.DefaultModuleConfig(mod)
				if strings.HasPrefix(mod, "extism_") {
					cfg = extismConfig(mod)
					cfg.ExtismFunctions = map[runtime.Role]string{runtime.RoleHandle: "run"}
				}
				cfg.CallTimeout = 60 * time.Second
				wasm := readFile(t, wasmbuild.WAT(t, "testdata/hostile/"+mod+".wat"))
				var ctx context.Context
				var cancel context.CancelFunc
				if how == "deadline" {
					ctx, cancel = context.WithTimeout(context.Background(), time.Second)
				} else {
					ctx, cancel = context.WithCancel(context.Background())
					time.AfterFunc(time.Second, cancel)
				}
				defer cancel()
				t0 := time.Now()
				done := make(chan error, 1)
				go func() {
					m, err := e.Load(ctx, wasm, cfg)
					if m != nil {
						m.Close(context.Background())
					}
					done <- err
				}()
				select {
				case err := <-done:
					took := time.Since(t0)
					t.Logf("load ended after %s: %v", took.Round(time.Millisecond), err)
					want := context.Canceled
					if how == "deadline" {
						want = runtime.ErrDeadline
					}
					if !errors.Is(err, want) {
						t.Fatalf("Load: %v, want an error wrapping %v", err, want)
					}
					// The error names the deadline that cut it: the caller's, not the module's 60 s.
					if how == "deadline" && !strings.Contains(err.Error(), "the caller's deadline, before the module's limit of 1m0s") {
						t.Fatalf("Load: %v, want it to name the caller's deadline", err)
					}
					if took > time.Second+cutBound {
						t.Fatalf("load took %s after a context of 1 s", took)
					}
				case <-time.After(20 * time.Second):
					t.Fatalf("Load still running 20 s after its context ended at 1 s (CallTimeout %s)", cfg.CallTimeout)
				}
			})
		}
	}
}

// TestLoadFileRefusesNonRegularFiles: LoadFile reads a module from a path a pod file names.
// A FIFO there blocked it (and the host's start) forever, and a device such as /dev/zero was read
// until memory ran out; both are refused without reading, as is a directory.
func TestLoadFileRefusesNonRegularFiles(t *testing.T) {
	e := newEngine(t, runtime.DefaultConfig())
	cases := []struct {
		name string
		make func(t *testing.T, path string)
	}{
		{"fifo", func(t *testing.T, path string) {
			if err := syscall.Mkfifo(path, 0o600); err != nil {
				t.Skipf("mkfifo: %v", err)
			}
		}},
		{"symlink to /dev/zero", func(t *testing.T, path string) {
			if err := os.Symlink("/dev/zero", path); err != nil {
				t.Skipf("symlink: %v", err)
			}
		}},
		{"directory", func(t *testing.T, path string) {
			if err := os.Mkdir(path, 0o700); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "plugin.wasm")
			c.make(t, path)
			done := make(chan error, 1)
			go func() {
				m, err := e.LoadFile(context.Background(), path, runtime.DefaultModuleConfig("file"))
				if m != nil {
					m.Close(context.Background())
				}
				done <- err
			}()
			select {
			case err := <-done:
				if err == nil || !strings.Contains(err.Error(), "not a regular file") || !strings.Contains(err.Error(), path) {
					t.Fatalf("LoadFile: %v, want a refusal naming %s as not a regular file", err, path)
				}
				t.Log(err)
			case <-time.After(10 * time.Second):
				t.Fatal("LoadFile still blocked after 10 s")
			}
		})
	}
	// A symlink to a regular file still loads.
	path := filepath.Join(t.TempDir(), "plugin.wasm")
	if err := os.Symlink(wasmbuild.WAT(t, "testdata/trapkit.wat"), path); err != nil {
		t.Fatal(err)
	}
	m, err := e.LoadFile(context.Background(), path, runtime.DefaultModuleConfig("file"))
	if err != nil {
		t.Fatalf("LoadFile through a symlink: %v", err)
	}
	m.Close(context.Background())
}
