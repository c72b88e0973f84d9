package runtime_test

import (
	"context"
	"errors"
	goruntime "runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/runtime"
	"github.com/wasmpod/wasmpod/runtime/internal/budget/corpus"
)

// TestLoadRefusesCompileBombs: the compile bombs of issue 14 are refused by Load (and
// LoadCommand) with ErrCompileBudget, before the compiler sees them, in a few milliseconds.
// Before the budget, the 3 MB module compiled for more than 180 s and the table took 1 GiB per
// instance.
func TestLoadRefusesCompileBombs(t *testing.T) {
	e := newEngine(t, runtime.Config{CacheDir: t.TempDir()})
	cases := []struct {
		name string
		wasm []byte
	}{
		{"1M nested blocks (3 MB)", corpus.Nested(1_000_000)},
		{"50k locals x 1000 functions", corpus.Locals(1000, 50_000)},
		{"table of 134M entries", corpus.Table(134_000_000, -1)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := runtime.DefaultModuleConfig(c.name)
			start := time.Now()
			_, err := e.Load(context.Background(), c.wasm, cfg)
			el := time.Since(start)
			if !errors.Is(err, runtime.ErrCompileBudget) || !errors.Is(err, runtime.ErrInvalidModule) {
				t.Fatalf("Load: %v, want ErrCompileBudget", err)
			}
			_, cerr := e.LoadCommand(context.Background(), c.wasm, runtime.CommandConfig{Name: "cmd", MaxMemoryPages: 16, Timeout: time.Second})
			if !errors.Is(cerr, runtime.ErrCompileBudget) {
				t.Fatalf("LoadCommand: %v, want ErrCompileBudget", cerr)
			}
			t.Logf("%d bytes refused in %v: %v", len(c.wasm), el, err)
		})
	}
}

// TestTrustedTableGrowRefused: a guarded module's tables are capped by its instrumentation
// (TestTablesCapped), so table.grow without a declared maximum costs at most that cap and is
// accepted; a trusted module is not instrumented, so the same module would let one table.grow
// allocate ~4 G entries, and the budget refuses it.
func TestTrustedTableGrowRefused(t *testing.T) {
	e := newEngine(t, runtime.Config{CacheDir: t.TempDir()})
	cfg := runtime.DefaultModuleConfig("grow")
	cfg.Trusted = true
	_, err := e.Load(context.Background(), corpus.TableGrow(1), cfg)
	if !errors.Is(err, runtime.ErrCompileBudget) || !strings.Contains(err.Error(), "table.grow") {
		t.Fatalf("trusted Load: %v, want ErrCompileBudget naming table.grow", err)
	}
	cfg.Trusted = false
	_, err = e.Load(context.Background(), corpus.TableGrow(1), cfg)
	if errors.Is(err, runtime.ErrCompileBudget) {
		t.Fatalf("guarded Load: %v; its tables are capped, so the budget must not refuse it", err)
	}
}

// deepestWith is the deepest single function a module of fns functions may have within the
// nesting work budget (the function first, so every other one pays its depth).
func deepestWith(d runtime.CompileBudget, fns int) int {
	k := 1
	for uint64(k+1)*uint64(k+2)/2+uint64(fns)*uint64(k+1) <= d.MaxNestingWork && uint64(k+1) <= d.MaxNesting {
		k++
	}
	return k
}

// cpuTime is the process's user + system CPU time: unlike wall time, it does not grow when other
// processes load the machine.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestCompileWithinBudgetIsBounded compiles, through Load (instrumenting included), modules
// that sit at the default budget's limits, and reports the time and the memory the compiled
// module keeps. The bound asserted (60 s, 1 GiB) is deliberately loose: a loaded 2-core machine
// must not make it flaky; the figures logged are the claim (RATIONALE.md).
func TestCompileWithinBudgetIsBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles modules at the budget's limits")
	}
	d := runtime.DefaultCompileBudget()
	cases := []struct {
		name string
		wasm []byte
	}{
		{"nesting work at the limit (at the depth limit)", corpus.NestedFuncs(int(d.MaxNestingWork/(d.MaxNesting*(d.MaxNesting+1)/2)), int(d.MaxNesting))},
		{"total locals at the limit (100 x 10000)", corpus.Locals(int(d.MaxTotalLocals/d.MaxLocals), int(d.MaxLocals))},
		{"functions at the limit (100000)", corpus.Functions(int(d.MaxFunctions))},
		{"every limit at once", corpus.AtLimits(int(d.MaxFunctions), deepestWith(d, int(d.MaxFunctions)), int(d.MaxTotalLocals/d.MaxLocals)-1, int(d.MaxLocals))},
		{"100k functions after one 10k deep (refused)", corpus.AtLimits(int(d.MaxFunctions), int(d.MaxNesting), 0, 0)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := runtime.CheckCompileBudget(c.wasm, runtime.CompileBudget{})
			if strings.HasSuffix(c.name, "(refused)") {
				if !errors.Is(err, runtime.ErrCompileBudget) || !strings.Contains(err.Error(), "MaxNestingWork") {
					t.Fatalf("want MaxNestingWork, got %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("not within the budget: %v", err)
			}
			e := newEngine(t, runtime.Config{CacheDir: t.TempDir()})
			var before, after goruntime.MemStats
			goruntime.GC()
			goruntime.ReadMemStats(&before)
			cpu0 := cpuTime()
			start := time.Now()
			m, err := e.Load(context.Background(), c.wasm, runtime.DefaultModuleConfig("bounded"))
			el := time.Since(start)
			cpu := cpuTime() - cpu0
			goruntime.GC()
			goruntime.ReadMemStats(&after)
			// The module exports nothing of the ABI: Load compiles it, then refuses it for its
			// missing exports. The compile is what is measured.
			if m != nil {
				m.Close(context.Background())
			}
			retained := int64(after.HeapAlloc) - int64(before.HeapAlloc)
			allocated := after.TotalAlloc - before.TotalAlloc
			t.Logf("%d bytes: load %v (process CPU %v), allocated %d MiB, retained %d MiB (err: %v)", len(c.wasm), el.Round(time.Millisecond), cpu.Round(time.Millisecond), allocated>>20, retained>>20, err)
			// Process CPU, not wall time: other processes on the machine do not add to it. 10 s
			// of CPU (x raceSlowdown under the race detector) is ~4x what a module at every limit
			// takes; the 3 MB hostile module took more than 180 s before the budget.
			if limit := 10 * time.Second * raceSlowdown; cpu > limit || allocated > 1<<30 {
				t.Fatalf("compile not bounded: %v of CPU (limit %v), %d MiB allocated", cpu, limit, allocated>>20)
			}
		})
	}
}
