package instrument_test

import (
	"fmt"
	"testing"

	"github.com/wasmpod/wasmpod/runtime/internal/instrument"
)

// TestRetryHeadSaves: the retry head puts back exactly what it saved, for every numeric type,
// NaN payloads and -0 included, with a yield at every iteration (fuel 1); the same function
// returns the same bits with the saves and without them, and the saves use one spill global per
// local of each type.
func TestRetryHeadSaves(t *testing.T) {
	// Every iteration mixes the four locals and their bits into the i64 it returns; $n counts
	// down. The float locals hold NaNs with payloads and -0.
	src := `(module (func (export "f") (param $n i32) (result i32)
		(local $a i64) (local $x f32) (local $y f64) (local $k i32) (local $dead i64)
		(local.set $x (f32.reinterpret_i32 (i32.const 0x7fa00001)))
		(local.set $y (f64.reinterpret_i64 (i64.const 0x7ff4000000000abc)))
		(local.set $a (i64.const -0x123456789))
		(loop $l
			(local.set $dead (i64.const 7))
			(local.set $k (i32.add (local.get $k) (i32.reinterpret_f32 (local.get $x))))
			(local.set $a (i64.xor (i64.rotl (local.get $a) (i64.const 5))
				(i64.add (i64.reinterpret_f64 (local.get $y)) (i64.extend_i32_u (local.get $k)))))
			(local.set $x (f32.reinterpret_i32 (i32.xor (i32.reinterpret_f32 (local.get $x)) (local.get $n))))
			(local.set $y (f64.reinterpret_i64 (i64.add (i64.reinterpret_f64 (local.get $y)) (i64.extend_i32_u (local.get $n)))))
			(if (i32.eq (local.get $n) (i32.const 3)) (then (local.set $y (f64.const -0))))
			(br_if $l (local.tee $n (i32.sub (local.get $n) (i32.const 1))))
			(drop (local.get $dead)))
		(i32.wrap_i64 (i64.xor (local.get $a) (i64.shr_u (local.get $a) (i64.const 32))))))`
	orig := instantiate(t, watBytes(t, "", src), &yieldState{fuel: 1})
	want, err := call(t, orig, "f", 40)
	if err != nil {
		t.Fatal(err)
	}
	spills, err := instrument.SpillGlobals(watBytes(t, "", src), instrument.Options{Fuel: 1})
	if err != nil {
		t.Fatal(err)
	}
	// $n and $k (i32), $a and $dead (i64), $x (f32), $y (f64).
	if spills != [4]uint32{2, 2, 1, 1} {
		t.Errorf("spill globals %v, want [2 2 1 1]", spills)
	}
	for _, on := range []bool{true, false} {
		instrument.SetSaveLocals(on)
		ys := &yieldState{fuel: 1, stopAfter: 1000}
		m := instantiate(t, mustInstrument(t, src, instrument.Options{Fuel: 1}), ys)
		got, err := call(t, m, "f", 40)
		if err != nil || got != want {
			t.Errorf("saves %v: %#x, %v; want %#x", on, got, err, want)
		}
		if ys.yields < 40 {
			t.Errorf("saves %v: %d yields, want one per iteration", on, ys.yields)
		}
	}
	instrument.SetSaveLocals(true)
}

// TestSpillGlobalsBounded: a function with more locals of a type than maxSaves saves the
// first maxSaves of them (64 spill globals of that type) and still computes its result.
func TestSpillGlobalsBounded(t *testing.T) {
	const n = 100
	decl, sum := "", "(i64.const 0)"
	for i := range n {
		decl += fmt.Sprintf("(local $v%d i64)", i)
		sum = fmt.Sprintf("(i64.add %s (local.get $v%d))", sum, i)
	}
	body := ""
	for i := range n {
		body += fmt.Sprintf("(local.set $v%d (i64.add (local.get $v%d) (i64.const %d)))", i, i, i+1)
	}
	src := `(module (func (export "f") (param $n i32) (result i32) ` + decl + `
		(loop $l ` + body + ` (br_if $l (local.tee $n (i32.sub (local.get $n) (i32.const 1)))))
		(i32.wrap_i64 ` + sum + `)))`
	spills, err := instrument.SpillGlobals(watBytes(t, "", src), instrument.Options{Fuel: 1})
	if err != nil {
		t.Fatal(err)
	}
	if spills != [4]uint32{1, 64, 0, 0} {
		t.Errorf("spill globals %v, want [1 64 0 0]", spills)
	}
	// 3 iterations: sum over i of 3*(i+1) = 3 * n(n+1)/2; 3 loop heads and the exit check.
	retryLoopCase(t, src, 3, 3*n*(n+1)/2, 4)
}
