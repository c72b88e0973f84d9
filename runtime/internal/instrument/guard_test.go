package instrument_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wasmpod/wasmpod/internal/wasmbuild"

	"github.com/wasmpod/wasmpod/runtime/internal/instrument"
)

// The checks the deadline guarantee rests on, one attack each: a guest that never reaches a
// loop head still yields, and nothing it declares gives it the host's globals.

func mustInstrument(t *testing.T, src string, opts instrument.Options) []byte {
	t.Helper()
	out, err := instrument.InstrumentWith(watBytes(t, "", src), opts)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestYieldsWithoutLoops(t *testing.T) {
	// 2,000 straight-line instructions in one body, no loop and no call: with checks only at
	// loop heads and function entry it would never yield.
	var body strings.Builder
	for k := 0; k < 1000; k++ {
		body.WriteString("(local.set 0 (i32.add (local.get 0) (i32.const 1)))\n")
	}
	cases := []struct {
		name, src, fn string
		arg           uint64
		fuel          int32
		minYields     int
	}{
		{"fib", `(module
			(func $fib (export "fib") (param i32) (result i32)
				(if (result i32) (i32.lt_u (local.get 0) (i32.const 2)) (then (local.get 0))
					(else (i32.add (call $fib (i32.sub (local.get 0) (i32.const 1)))
					               (call $fib (i32.sub (local.get 0) (i32.const 2))))))))`,
			// fib(20) makes 21,891 calls: entries and exits are 43,782 checks.
			"fib", 20, 100, 43782 / 100},
		{"straight line", `(module (func (export "long") (param i32) (result i32) ` + body.String() + ` (local.get 0)))`,
			// 4,000 instructions: 3 checks inside, plus entry and exit, each a yield with 1 fuel.
			"long", 0, 1, 5},
		{"memory.fill", `(module (memory 16)
			(func (export "fill") (param i32) (result i32)
				(memory.fill (i32.const 0) (i32.const 7) (i32.const 1048576)) (i32.const 0)))`,
			// 1 MiB at one unit per 16 bytes: 65,536 units, far over the 100 of a refill: the guest
			// yields before the fill (entry and exit alone never reach 100).
			"fill", 0, 100, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ys := &yieldState{fuel: tc.fuel}
			m := instantiate(t, mustInstrument(t, tc.src, instrument.Options{Fuel: tc.fuel}), ys)
			if _, err := call(t, m, tc.fn, tc.arg); err != nil {
				t.Fatal(err)
			}
			if ys.yields < tc.minYields {
				t.Fatalf("%d yields, want at least %d", ys.yields, tc.minYields)
			}
			// And the host can cut it: the next yield traps.
			ys.stop = true
			if _, err := call(t, m, tc.fn, tc.arg); err == nil || !strings.Contains(err.Error(), "cut") {
				t.Fatalf("not cut: %v", err)
			}
		})
	}
}

func TestStackBudget(t *testing.T) {
	src := `(module (func $deep (export "deep") (param i32) (result i32)
		(if (result i32) (i32.eqz (local.get 0)) (then (i32.const 0))
			(else (i32.add (call $deep (i32.sub (local.get 0) (i32.const 1))) (i32.const 1))))))`
	ys := &yieldState{fuel: 1 << 30}
	m := instantiate(t, mustInstrument(t, src, instrument.Options{Fuel: 1 << 30, StackBudget: 10000}), ys)
	// Each frame weighs FrameWeight(1, 0, ~30 bytes) = 5: 1,999 frames fit, 2,001 do not.
	for round := 0; round < 3; round++ { // returning gives the budget back
		if got, err := call(t, m, "deep", 1999); err != nil || got != 1999 {
			t.Fatalf("1,999 frames: %d, %v", got, err)
		}
	}
	if _, err := call(t, m, "deep", 2001); err == nil || ys.overflows != 1 {
		t.Fatalf("2,001 frames: %v (%d overflows)", err, ys.overflows)
	}
}

func TestTablesCapped(t *testing.T) {
	src := `(module (table $t 1 funcref)
		(func (export "grow") (param i32) (result i32) (table.grow $t (ref.null func) (local.get 0))))`
	m := instantiate(t, mustInstrument(t, src, instrument.Options{Fuel: 100, MaxTableElems: 1000}), &yieldState{fuel: 100})
	if got, _ := call(t, m, "grow", 999); got != 1 {
		t.Fatalf("grow to 1,000: %d", got)
	}
	if got, _ := call(t, m, "grow", 0xFFFFFFF0); got != -1 {
		t.Fatalf("grow by ~4 G: %d, want -1", got)
	}
	if _, err := instrument.InstrumentWith(watBytes(t, "", `(module (table 2000 funcref))`), instrument.Options{Fuel: 1, MaxTableElems: 1000}); err == nil || !strings.Contains(err.Error(), "over the limit") {
		t.Fatalf("a declared table over the limit: %v", err)
	}
}

// TestRefusesUndeclaredIndices: the instrumented module has more globals, locals, types and one
// more block around every body than the original; a reference the original cannot resolve must
// not resolve to them.
func TestRefusesUndeclaredIndices(t *testing.T) {
	cases := []struct{ name, src, want string }{
		{"global.set of the fuel", `(module (global (mut i32) (i32.const 0))
			(func (loop (global.set 1 (i32.const 1000000)) (br 0))))`, "global 1 out of range"},
		{"global.get past the end", `(module (func (result i32) (global.get 0)))`, "global 0 out of range"},
		{"local past the end", `(module (func (param i32) (result i32) (local.get 1)))`, "local 1 out of range"},
		{"call_indirect with the yield type", `(module (type (func)) (table 1 funcref)
			(func (call_indirect (type 1) (i32.const 0) (i32.const 0))))`, "type 1 out of range"},
		// Assembled with type 0, then patched to type 1 (wat2wasm cannot write it).
		{"block with the yield type", `(module (type (func (param i32) (result i32)))
			(func (type 0) (local.get 0) (block (type 0) (param i32) (result i32))))`, "block type 1 out of range"},
		{"branch past the body", `(module (func (br 1)))`, "branch depth 1 out of range"},
		{"export of the fuel global", `(module (export "g" (global 0)))`, "global 0 out of range"},
		{"function with the yield type", `(module (type (func)) (func (type 1) (i32.const 0)))`, "type index 1 out of range"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			wasm := watNoCheck(t, tc.src)
			if strings.HasPrefix(tc.name, "block") {
				wasm = []byte(strings.Replace(string(wasm), "\x20\x00\x02\x00\x0b", "\x20\x00\x02\x01\x0b", 1))
			}
			_, err := instrument.Instrument(wasm, 10)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want an error containing %q, got %v", tc.want, err)
			}
		})
	}
}

func TestStartExported(t *testing.T) {
	src := `(module (memory (export "memory") 1)
		(func $s (i32.store (i32.const 0) (i32.const 7))) (start $s)
		(func (export "get") (result i32) (i32.load (i32.const 0))))`
	out := mustInstrument(t, src, instrument.Options{Fuel: 10})
	if !strings.Contains(string(out), instrument.StartName) {
		t.Fatal("start function not exported")
	}
	m := instantiate(t, out, &yieldState{fuel: 10}) // runs the exported start function
	if got, err := call(t, m, "get"); err != nil || got != 7 {
		t.Fatalf("get = %d, %v", got, err)
	}
	if _, err := instrument.Instrument(watBytes(t, "", fmt.Sprintf(`(module (func (export %q)))`, instrument.StartName)), 10); err == nil {
		t.Fatal("an export named like the start export was accepted")
	}
}

// watNoCheck assembles src without validating it, for modules that are invalid on purpose.
func watNoCheck(t *testing.T, src string) []byte {
	t.Helper()
	tool := wasmbuild.RequireTool(t, "wat2wasm")
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in.wat"), filepath.Join(dir, "m.wasm")
	if err := os.WriteFile(in, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := exec.Command(tool, "--no-check", in, "-o", out).CombinedOutput(); err != nil {
		t.Fatalf("wat2wasm: %v\n%s", err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
