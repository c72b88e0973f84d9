package instrument_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"

	"github.com/wasmpod/wasmpod/runtime/internal/instrument"
)

// TestBackEdgeChecksHostile: loops shaped to slip past the loop checks (the back edge checks,
// backEdgeCheck, and the head checks the loops they do not fit keep) are cut all the same. Each
// guest f spins forever: it branches back to a loop from nested blocks, with br, br_if or
// br_table, to a loop with parameters or results, in an if or an else, three loops deep to the
// outer one, with dead code after the branch, or loops through recursion (call, call_indirect)
// instead of a back edge. Instrumented with a refill of 3, each must be cut at the 50th yield.
// Each call runs under a 30 s watchdog (wazero's WithCloseOnContextDone): a shape that escapes
// the checks fails the test when its watchdog ends it, instead of hanging it.
func TestBackEdgeChecksHostile(t *testing.T) {
	// fn wraps a body in the exported function f(n), which has a local $i.
	fn := func(body string) string {
		return `(module (func (export "f") (param $n i32) (result i32) (local $i i32)
			` + body + `))`
	}
	cases := []struct {
		name, src string
		arg       uint64
	}{
		{"a loop whose body is only br 0", fn(`(loop (br 0)) (i32.const 0)`), 0},
		{"br from three nested blocks", fn(`(loop $l (block (block (block (br $l))))) (i32.const 0)`), 0},
		{"br_if from nested blocks", fn(`(loop $l (block (block (br_if $l (i32.const 1))))) (i32.const 0)`), 0},
		{"br_table to the loop", fn(`(loop $l (br_table $l $l (local.get $n))) (i32.const 0)`), 0},
		{"br_table from a block, the loop its default", fn(`(loop $l (block $b (br_table $b $l (i32.const 7)))) (i32.const 0)`), 0},
		{"a loop with a parameter, br", fn(`(i32.const 0)
			(loop $l (param i32) (result i32) (i32.add (i32.const 1)) (br $l))`), 0},
		{"a loop with a parameter, br_if", fn(`(i32.const 0)
			(loop $l (param i32) (result i32) (i32.add (i32.const 1)) (br_if $l (i32.const 1)))`), 0},
		{"a loop with a parameter, br_table", fn(`(i32.const 0)
			(loop $l (param i32) (result i32) (i32.add (i32.const 1)) (br_table $l $l (local.get $n)))`), 0},
		{"a loop with a result, br_if over it", fn(`(loop $l (result i32) (i32.const 5) (br_if $l (i32.const 1)))`), 0},
		{"a loop in then", fn(`(if (local.get $n) (then (loop $a (br $a))) (else (loop $b (br_if $b (i32.const 1)))))
			(i32.const 0)`), 1},
		{"a loop in else", fn(`(if (local.get $n) (then (loop $a (br $a))) (else (loop $b (br_if $b (i32.const 1)))))
			(i32.const 0)`), 0},
		{"if and else in a loop, both back", fn(`(loop $l (if (local.get $n) (then (br $l)) (else (br_if $l (i32.const 1)))))
			(i32.const 0)`), 0},
		{"three loops, br to the outer", fn(`(loop $a (loop $b (loop $c (br $a)))) (i32.const 0)`), 0},
		{"three loops, br_if to the outer from blocks", fn(`(loop $a (loop $b (block (loop $c (block (br_if $a (i32.const 1))) (br $c)))))
			(i32.const 0)`), 0},
		{"three loops, br_table to each", fn(`(loop $a (loop $b (loop $c
				(local.set $i (i32.add (local.get $i) (i32.const 1)))
				(br_table $c $b $a (i32.rem_u (local.get $i) (i32.const 3))))))
			(i32.const 0)`), 0},
		{"unreachable after br", fn(`(loop $l (br $l) (unreachable) (br $l)) (i32.const 0)`), 0},
		{"recursion through call", `(module
			(func $g (param $n i32) (result i32)
				(loop $l (br_if $l (i32.const 0)))
				(call $g (local.get $n)))
			(func (export "f") (param $n i32) (result i32) (call $g (local.get $n))))`, 0},
		{"recursion through call_indirect", `(module (type $t (func (param i32) (result i32)))
			(table 1 funcref) (elem (i32.const 0) $g)
			(func $g (type $t)
				(loop $l (br_if $l (i32.const 0)))
				(call_indirect (type $t) (local.get 0) (i32.const 0)))
			(func (export "f") (param $n i32) (result i32) (call $g (local.get $n))))`, 0},
		{"mutual recursion, a loop on the way", `(module
			(func $a (param $n i32) (result i32) (call $b (local.get $n)))
			(func $b (param $n i32) (result i32)
				(block $out (loop $l (br_if $out (i32.const 1)) (br $l)))
				(call $a (local.get $n)))
			(func (export "f") (param $n i32) (result i32) (call $a (local.get $n))))`, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// Each case's own watchdog, so that a shape that spins is the one that fails.
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			wasm := mustInstrument(t, tc.src, instrument.Options{Fuel: 3})
			ys := &yieldState{fuel: 3, stopAfter: 50}
			rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithCloseOnContextDone(true))
			m := instantiateIn(t, rt, wasm, ys)
			if _, err := callCtx(ctx, m, "f", tc.arg); err == nil || !strings.Contains(err.Error(), "cut") || ys.yields != 50 {
				t.Fatalf("spinning: %v after %d yields, want cut at 50", err, ys.yields)
			}
		})
	}
}
