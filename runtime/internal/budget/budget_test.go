package budget_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wasmpod/wasmpod/internal/wasmbuild"
	"github.com/wasmpod/wasmpod/runtime/internal/budget"
	"github.com/wasmpod/wasmpod/runtime/internal/budget/corpus"
)

// TestHostileRefused: every compile bomb of the corpus is refused by the default budget with an
// error naming the limit, and a module just inside each limit passes.
func TestHostileRefused(t *testing.T) {
	d := budget.Default()
	cases := []struct {
		name  string
		wasm  []byte
		limit string // "" = must pass
		where string
	}{
		{"nested 1M (3 MB)", corpus.Nested(1_000_000), "MaxNesting", "function 0"},
		{"nested 60k", corpus.Nested(60_000), "MaxNesting", "function 0"},
		{"nested at the limit", corpus.Nested(int(d.MaxNesting)), "", ""},
		{"nesting work: 20 functions at the limit", corpus.NestedFuncs(20, int(d.MaxNesting)), "MaxNestingWork", ""},
		{"50k locals", corpus.Locals(1, 50_000), "MaxLocals", "function 0"},
		{"locals at the limit", corpus.Locals(1, int(d.MaxLocals)), "", ""},
		{"10k functions x 10k locals (78 KB)", corpus.Locals(10_000, 10_000), "MaxTotalLocals", ""},
		{"table of 134M entries (144 bytes)", corpus.Table(134_000_000, -1), "MaxTableEntries", "table 0"},
		{"table min small, max 134M, no table.grow", corpus.Table(16, 134_000_000), "", ""},
		{"table at the limit", corpus.Table(int64(d.MaxTableEntries), int64(d.MaxTableEntries)), "", ""},
		{"table.grow, no maximum", corpus.TableGrow(1), "MaxTableEntries", "table 0 (grown to its maximum by table.grow)"},
		{"200k functions", corpus.Functions(200_000), "MaxFunctions", ""},
		{"data segment of 65 MiB (a module over MaxModuleBytes first)", corpus.Data(1100, 65<<20), "MaxModuleBytes", ""},
		{"element segment of 2M entries", corpus.Elements(2 << 20), "MaxElementEntries", ""},
		{"40k ifs in a row (200 KB)", corpus.Ifs(40_000), "MaxBranchWork", ""},
		{"80k br_ifs to one label (320 KB)", corpus.BrIfs(80_000), "MaxBranchWork", ""},
		{"br_table of 1M entries to one label", corpus.BrTable(1_000_000), "MaxBranchWork", ""},
		{"3,000 ifs in a row", corpus.Ifs(3_000), "", ""},
		{"9,999 locals read after 2,000 ifs (50 KB)", corpus.LocalsAcrossIfs(9_999, 2_000), "MaxLocalWork", ""},
		{"43 locals read after 2,000 ifs", corpus.LocalsAcrossIfs(43, 2_000), "", ""},
		{"one type of 100k parameters (100 KB)", corpus.Types(1, 100_000), "MaxTypeWork", ""},
		{"1M types (4 MB)", corpus.Types(1_000_000, 1), "MaxTypeWork", ""},
		{"800 types of 100 parameters", corpus.Types(800, 100), "", ""},
		{"1M globals (5 MB)", corpus.Globals(1_000_000), "MaxGlobals", ""},
		{"globals at the limit", corpus.Globals(int(d.MaxGlobals)), "", ""},
		{"1M exports", corpus.Exports(1_000_000), "MaxExports", ""},
		{"exports at the limit", corpus.Exports(int(d.MaxExports)), "", ""},
		{"br_table of 4,000 entries", corpus.BrTable(4_000), "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := budget.Check(c.wasm, d)
			if c.limit == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var be *budget.Error
			if !errors.As(err, &be) || !errors.Is(err, budget.ErrExceeded) {
				t.Fatalf("got %v, want a budget error", err)
			}
			if be.Limit != c.limit || be.Where != c.where {
				t.Fatalf("limit %q where %q, want %q %q (%v)", be.Limit, be.Where, c.limit, c.where, err)
			}
			if !strings.Contains(err.Error(), c.limit) {
				t.Fatalf("message does not name the limit: %v", err)
			}
			t.Log(err)
		})
	}
}

// TestLimitsOneByOne: each limit, set just below what a module has, refuses it.
func TestLimitsOneByOne(t *testing.T) {
	cases := []struct {
		wasm  []byte
		limit string
		set   func(*budget.Limits)
	}{
		{corpus.Functions(10), "MaxFunctions", func(l *budget.Limits) { l.MaxFunctions = 9 }},
		{corpus.Locals(1, 100), "MaxBodyBytes", func(l *budget.Limits) { l.MaxBodyBytes = 3 }},
		{corpus.Elements(10), "MaxElementEntries", func(l *budget.Limits) { l.MaxElementEntries = 9 }},
		{corpus.Data(1, 10), "MaxDataBytes", func(l *budget.Limits) { l.MaxDataBytes = 9 }},
		{corpus.Ifs(10), "MaxBranchWork", func(l *budget.Limits) { l.MaxBranchWork = 50 }},
		{corpus.LocalsAcrossIfs(10, 10), "MaxLocalWork", func(l *budget.Limits) { l.MaxLocalWork = 1000 }},
		{corpus.Data(1, 10), "MaxSegments", func(l *budget.Limits) { l.MaxSegments = 0; l.MaxDataBytes = 0 }},
	}
	for _, c := range cases {
		t.Run(c.limit, func(t *testing.T) {
			var l budget.Limits // no limits
			if _, err := budget.Check(c.wasm, l); err != nil {
				t.Fatalf("unlimited: %v", err)
			}
			c.set(&l)
			_, err := budget.Check(c.wasm, l)
			var be *budget.Error
			if c.limit == "MaxSegments" {
				if err != nil {
					t.Fatalf("zero means no limit, got %v", err)
				}
				l.MaxSegments = 1
				if _, err := budget.Check(corpus.Data(1, 10), l); err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.As(err, &be) || be.Limit != c.limit {
				t.Fatalf("got %v, want %s", err, c.limit)
			}
		})
	}
}

// TestWorkLimitsScaleWithCode: the work limits hold for every 4 MiB of code, so a large module
// whose code costs the compiler no more per byte than a small one's is not refused, and one that
// costs more still is.
func TestWorkLimitsScaleWithCode(t *testing.T) {
	ifs := func(n int) []byte { // one function of n ifs in a row
		body := []byte{0}
		for range n {
			body = append(body, 0x41, 0, 0x04, 0x40, 0x0B)
		}
		return append(body, 0x0B)
	}
	pad := append(append([]byte{0}, bytes.Repeat([]byte{0x01}, 4<<20)...), 0x0B) // 4 MiB of nops
	work := func(wasm []byte) uint64 {
		st, err := budget.Check(wasm, budget.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		return st.BranchWork
	}
	limit := work(corpus.Bodies(ifs(100))) - 1
	cases := []struct {
		name   string
		wasm   []byte
		refuse bool
	}{
		{"small module over the limit", corpus.Bodies(ifs(100)), true},
		{"the same code beside 8 MiB more", corpus.Bodies(ifs(100), pad, pad), false},
		{"more work than twice the limit beside 8 MiB", corpus.Bodies(ifs(200), pad, pad), true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := budget.Check(c.wasm, budget.Limits{MaxBranchWork: limit})
			var be *budget.Error
			if refused := errors.As(err, &be) && be.Limit == "MaxBranchWork"; refused != c.refuse || (!refused && err != nil) {
				t.Fatalf("%d bytes, branch work %d, limit %d per 4 MiB of code: %v (want refused: %v)", len(c.wasm), work(c.wasm), limit, err, c.refuse)
			}
		})
	}
}

// guestDirs are the repository's real guests, by language.
func guestDirs(t *testing.T) []string {
	root, err := wasmbuild.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, pat := range []string{"plugins/*", "examples/*/guest", "examples/leader/store", "runtime/testdata/*", "bench/guests/*"} {
		m, _ := filepath.Glob(filepath.Join(root, pat))
		for _, d := range m {
			if fi, err := os.Stat(d); err == nil && fi.IsDir() {
				dirs = append(dirs, d)
			}
		}
	}
	return dirs
}

// TestRealGuestsFitTheBudget builds every guest of the repository (Go, Rust, C, AssemblyScript,
// Extism) and checks it against the default budget, logging its figures and, per limit, the
// largest figure over all guests, so the margin is visible.
func TestRealGuestsFitTheBudget(t *testing.T) {
	if testing.Short() {
		t.Skip("builds every guest")
	}
	var worst budget.Stats
	for _, dir := range guestDirs(t) {
		lang, build, err := wasmbuild.Detect(dir)
		if err != nil {
			continue
		}
		name := filepath.Base(dir)
		if name == "extism-as" {
			build = wasmbuild.BuildExtismAssemblyScript
		}
		key, err := wasmbuild.HashFiles(lang, dir)
		if err != nil {
			t.Fatal(err)
		}
		out, err := wasmbuild.CachedPath(key, name+".wasm", func(out string) error { return build(dir, out) })
		if err != nil {
			t.Logf("%s (%s): cannot build here: %v", name, lang, err)
			continue
		}
		wasm, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		st, err := budget.Check(wasm, budget.Default())
		if err != nil {
			t.Errorf("%s (%s): %v", name, lang, err)
		}
		t.Logf("%-22s %-15s %8d B  %s", name, lang, len(wasm), fmtStats(st))
		worst.Functions = max(worst.Functions, st.Functions)
		worst.MaxBodyBytes = max(worst.MaxBodyBytes, st.MaxBodyBytes)
		worst.MaxLocals = max(worst.MaxLocals, st.MaxLocals)
		worst.TotalLocals = max(worst.TotalLocals, st.TotalLocals)
		worst.MaxNesting = max(worst.MaxNesting, st.MaxNesting)
		worst.NestingWork = max(worst.NestingWork, st.NestingWork)
		worst.BranchWork = max(worst.BranchWork, st.BranchWork)
		worst.LocalWork = max(worst.LocalWork, st.LocalWork)
		worst.Types = max(worst.Types, st.Types)
		worst.MaxTypeArity = max(worst.MaxTypeArity, st.MaxTypeArity)
		worst.TypeWork = max(worst.TypeWork, st.TypeWork)
		worst.Globals = max(worst.Globals, st.Globals)
		worst.Exports = max(worst.Exports, st.Exports)
		worst.MaxTable = max(worst.MaxTable, st.MaxTable)
		worst.DataBytes = max(worst.DataBytes, st.DataBytes)
		worst.ElementEntries = max(worst.ElementEntries, st.ElementEntries)
		worst.DataSegments = max(worst.DataSegments, st.DataSegments)
		worst.TableGrow = worst.TableGrow || st.TableGrow
	}
	t.Logf("largest over all guests: %s", fmtStats(worst))
}

func fmtStats(s budget.Stats) string {
	return fmt.Sprintf("funcs=%d body=%d locals=%d totalLocals=%d nesting=%d work=%d branchWork=%d localWork=%d types=%d arity=%d typeWork=%d globals=%d exports=%d table=%d grow=%v data=%d elems=%d dataSegs=%d",
		s.Functions, s.MaxBodyBytes, s.MaxLocals, s.TotalLocals, s.MaxNesting, s.NestingWork, s.BranchWork, s.LocalWork, s.Types, s.MaxTypeArity, s.TypeWork, s.Globals, s.Exports, s.MaxTable, s.TableGrow, s.DataBytes, s.ElementEntries, s.DataSegments)
}

// FuzzCheck: Check never panics, never loops on counts the input does not back, and is
// deterministic.
func FuzzCheck(f *testing.F) {
	for _, seed := range [][]byte{corpus.Nested(10), corpus.Locals(2, 5), corpus.Table(3, 4), corpus.TableGrow(1), corpus.Data(1, 4), corpus.Elements(3), corpus.Functions(3)} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, wasm []byte) {
		s1, err1 := budget.Check(wasm, budget.Default())
		s2, err2 := budget.Check(wasm, budget.Default())
		if s1 != s2 || fmt.Sprint(err1) != fmt.Sprint(err2) {
			t.Fatalf("not deterministic: %v / %v", err1, err2)
		}
		if err1 != nil && !errors.Is(err1, budget.ErrExceeded) && !errors.Is(err1, budget.ErrMalformed) {
			t.Fatalf("unclassified error: %v", err1)
		}
	})
}
