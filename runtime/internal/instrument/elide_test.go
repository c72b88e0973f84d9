package instrument_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/wasmpod/wasmpod/runtime/internal/instrument"
)

// The elisions (instrument.bodyInfo) each drop checks the guarantee would otherwise rest on; one
// attack each, counted exactly: with one unit of fuel per refill every check the guest passes is
// one yield, so a check that should be there and is not shows as a missing yield.

// checkCount is a module, an export to call with arg, and the checks the call must pass.
type checkCount struct {
	name, src, fn string
	arg           uint64
	yields        int
}

// countChecks instruments each case's module with one unit of fuel per refill, calls it and
// compares the yields (one per check passed) with the expected count.
func countChecks(t *testing.T, cases []checkCount) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ys := &yieldState{fuel: 1}
			m := instantiate(t, mustInstrument(t, tc.src, instrument.Options{Fuel: 1}), ys)
			if _, err := call(t, m, tc.fn, tc.arg); err != nil {
				t.Fatal(err)
			}
			if ys.yields != tc.yields {
				t.Fatalf("%d checks, want %d", ys.yields, tc.yields)
			}
		})
	}
}

func TestElisionsKeepTheBound(t *testing.T) {
	// A check-free leaf of 58 instructions: a call of it costs its caller 59.
	var leaf strings.Builder
	for k := 0; k < 14; k++ {
		leaf.WriteString("(local.set 0 (i32.add (local.get 0) (i32.const 1)))\n")
	}
	// 20 calls of 62 instructions each with the leaf's (1,240) in a straight line: over
	// MaxStraight once, so one check inside on top of entry (and of the exit, 216 instructions
	// after that check when a call_indirect counts as MaxSuffix). Counting a call as one
	// instruction would leave 80 and no check inside.
	calls := func(call string) string {
		return strings.Repeat("(local.set 0 "+call+")\n", 20)
	}
	skip := `(func $down (export "down") (param $n i32) (result i32)
		(block $skip
			(br_if $skip (i32.ne (local.get $n) (i32.const -1)))
			(loop $l (br_if $l (i32.const 0))))
		(if (result i32) (i32.eqz (local.get $n)) (then (i32.const 0))
			(else (call $down (i32.sub (local.get $n) (i32.const 1))))))`
	cases := []checkCount{
		{"direct calls of a check-free leaf", fmt.Sprintf(`(module (type $t (func (param i32) (result i32)))
			(func $leaf (type $t) %s (local.get 0))
			(func (export "f") (param i32) (result i32) %s (local.get 0)))`,
			leaf.String(), calls("(call $leaf (local.get 0))")), "f", 0, 2},
		{"call_indirect of a check-free leaf", fmt.Sprintf(`(module (type $t (func (param i32) (result i32)))
			(table 1 funcref) (elem (i32.const 0) $leaf)
			(func $leaf (type $t) %s (local.get 0))
			(func (export "f") (param i32) (result i32) %s (local.get 0)))`,
			leaf.String(), calls("(call_indirect (type $t) (local.get 0) (i32.const 0))")), "f", 0, 3},
		// A branch before the loop may skip it: the entry check stays. 101 activations, each
		// with an entry and an exit check.
		{"a loop a branch may skip", `(module ` + skip + `)`, "down", 100, 202},
		// The loop head every entry reaches first stands for the entry check: 10 iterations;
		// the return comes 2 instructions after the last, without exit check.
		{"a loop reached first", `(module (func (export "f") (param i32) (result i32)
			(local.set 0 (i32.add (local.get 0) (i32.const 0)))
			(loop $l (br_if $l (local.tee 0 (i32.sub (local.get 0) (i32.const 1)))))
			(local.get 0)))`, "f", 10, 10},
	}
	countChecks(t, cases)
}

// TestStackBudgetThroughCallIndirect: a function whose only calls are call_indirect is no leaf;
// recursion through it takes from the stack budget like any other.
func TestStackBudgetThroughCallIndirect(t *testing.T) {
	src := `(module (type $t (func (param i32) (result i32))) (table 1 funcref) (elem (i32.const 0) $deep)
		(func $deep (type $t)
			(if (result i32) (i32.eqz (local.get 0)) (then (i32.const 0))
				(else (i32.add (call_indirect (type $t) (i32.sub (local.get 0) (i32.const 1)) (i32.const 0)) (i32.const 1)))))
		(func (export "deep") (param i32) (result i32) (call $deep (local.get 0))))`
	ys := &yieldState{fuel: 1 << 30}
	m := instantiate(t, mustInstrument(t, src, instrument.Options{Fuel: 1 << 30, StackBudget: 10000}), ys)
	if got, err := call(t, m, "deep", 100); err != nil || got != 100 {
		t.Fatalf("100 frames: %d, %v", got, err)
	}
	// A frame weighs at least 5 units: 5,000 frames are over the budget of 10,000.
	if _, err := call(t, m, "deep", 5000); err == nil || ys.overflows != 1 {
		t.Fatalf("5,000 frames: %v (%d overflows)", err, ys.overflows)
	}
}

// TestExitElision attacks the exit checks a function goes without (rewriter.code): its callers
// must count what it runs after its last check, and no function on a cycle of calls (nor one
// called by a function rewritten before it) may go without. Each count is
// exact (fuel 1: one yield per check passed).
func TestExitElision(t *testing.T) {
	// straight is n instructions that neither branch nor call.
	straight := func(n int) string {
		var b strings.Builder
		for ; n >= 4; n -= 4 {
			b.WriteString("(local.set 0 (i32.add (local.get 0) (i32.const 1)))\n")
		}
		b.WriteString(strings.Repeat("(nop)", n))
		return b.String()
	}
	// $g: 200 instructions and no loop, too many to be check-free: an entry check and no exit
	// check (a suffix of 202, its end included).
	g := `(func $g (param i32) (result i32) ` + straight(200) + ` (local.get 0))`
	cases := []checkCount{
		// After $g returns the run is 203 (its suffix and the call): 203+900 is over
		// MaxStraight once, so f checks inside, and its 80 last ones go without exit check.
		// Counting the call as one instruction (as if $g checked at its exit) would leave
		// 902: no check inside, and one at f's exit. f, $g, inside: 3; wrong: 3 as well, so
		// the tail is longer: 203+1,100 leaves 280 after the check inside, over MaxSuffix:
		// f keeps its exit check (4); counting 1 for the call, 1,102 checks inside once and
		// leaves 78 (3).
		{"the suffix of a direct callee", `(module ` + g + ` (func (export "f") (param i32) (result i32)
			(local.set 0 (call $g (local.get 0))) ` + straight(1100) + ` (local.get 0)))`, "f", 0, 4},
		// The same through call_indirect: after it the run is at least 1+MaxSuffix (257):
		// 257+800 is over MaxStraight, one check inside before the loop head. Counting the
		// call as the largest entry cost (1) would leave 803 and no check. The 300 after the
		// loop head keep f's exit check either way: entry, $g, inside, loop head, exit.
		{"the suffix of a call_indirect callee", `(module (type $t (func (param i32) (result i32)))
			(table 1 funcref) (elem (i32.const 0) $g) ` + g + ` (func (export "f") (param i32) (result i32)
			(local.set 0 (call_indirect (type $t) (local.get 0) (i32.const 0)))
			` + straight(800) + ` (loop $l) ` + straight(300) + ` (local.get 0)))`, "f", 0, 5},
		// A chain: $c3 has a suffix of 202, $c2 of 1+202+100 (over MaxSuffix: it keeps its
		// exit check), $c1 of 1+100. f: entry; $c1: entry; $c2: entry and exit; $c3: entry.
		// Without the suffixes every function would go without exit check: 4.
		{"a chain of callees", `(module ` + strings.ReplaceAll(g, "$g", "$c3") + `
			(func $c2 (param i32) (result i32) (local.set 0 (call $c3 (local.get 0))) ` + straight(100) + ` (local.get 0))
			(func $c1 (param i32) (result i32) (local.set 0 (call $c2 (local.get 0))) ` + straight(100) + ` (local.get 0))
			(func (export "f") (param i32) (result i32) (call $c1 (local.get 0))))`, "f", 0, 5},
		// Mutual recursion: $a and $b call each other 100 deep; the one rewritten first counted
		// the other with its exit check, so that one keeps it: 101 activations, each with an
		// entry check, 50 or 51 of them ($a's, the one the other counted) with an exit check.
		// Without, the unwinding would run 100 suffixes in a row unchecked.
		{"mutual recursion", `(module
			(func $a (export "a") (param i32) (result i32)
				(if (result i32) (i32.eqz (local.get 0)) (then (i32.const 0))
					(else (i32.add (call $b (i32.sub (local.get 0) (i32.const 1))) (i32.const 1)))))
			(func $b (param i32) (result i32)
				(if (result i32) (i32.eqz (local.get 0)) (then (i32.const 0))
					(else (i32.add (call $a (i32.sub (local.get 0) (i32.const 1))) (i32.const 1))))))`, "a", 100, 152},
		// Recursion through a chain: $r calls $s calls $t calls $r. 99 activations ($r, $s,
		// $t 33 times each): the one the cycle reaches last keeps its exit check.
		{"recursion through a chain", `(module
			(func $r (export "r") (param i32) (result i32)
				(if (result i32) (i32.eqz (local.get 0)) (then (i32.const 0))
					(else (call $s (i32.sub (local.get 0) (i32.const 1))))))
			(func $s (param i32) (result i32) (call $t (local.get 0)))
			(func $t (param i32) (result i32) (call $r (local.get 0))))`, "r", 33, 134},
	}
	countChecks(t, cases)
}
