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

func TestElisionsKeepTheBound(t *testing.T) {
	// A check-free leaf of 58 instructions: a call of it costs its caller 59.
	var leaf strings.Builder
	for k := 0; k < 14; k++ {
		leaf.WriteString("(local.set 0 (i32.add (local.get 0) (i32.const 1)))\n")
	}
	// 20 calls of 62 instructions each with the leaf's (1,240) in a straight line: over
	// MaxStraight once, so one check inside on top of entry and exit. Counting a call as one
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
	cases := []struct {
		name, src, fn string
		arg           uint64
		yields        int
	}{
		{"direct calls of a check-free leaf", fmt.Sprintf(`(module (type $t (func (param i32) (result i32)))
			(func $leaf (type $t) %s (local.get 0))
			(func (export "f") (param i32) (result i32) %s (local.get 0)))`,
			leaf.String(), calls("(call $leaf (local.get 0))")), "f", 0, 3},
		{"call_indirect of a check-free leaf", fmt.Sprintf(`(module (type $t (func (param i32) (result i32)))
			(table 1 funcref) (elem (i32.const 0) $leaf)
			(func $leaf (type $t) %s (local.get 0))
			(func (export "f") (param i32) (result i32) %s (local.get 0)))`,
			leaf.String(), calls("(call_indirect (type $t) (local.get 0) (i32.const 0))")), "f", 0, 3},
		// A branch before the loop may skip it: the entry check stays. 101 activations, each
		// with an entry and an exit check.
		{"a loop a branch may skip", `(module ` + skip + `)`, "down", 100, 202},
		// The loop head every entry reaches first stands for the entry check: 10 iterations
		// and the exit.
		{"a loop reached first", `(module (func (export "f") (param i32) (result i32)
			(local.set 0 (i32.add (local.get 0) (i32.const 0)))
			(loop $l (br_if $l (local.tee 0 (i32.sub (local.get 0) (i32.const 1)))))
			(local.get 0)))`, "f", 10, 11},
	}
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
