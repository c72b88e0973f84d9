package instrument_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/wasmpod/wasmpod/runtime/internal/instrument"
)

// TestLoopLocals: a retry head saves the numeric locals its loop reads or writes, nested blocks
// included, and no other: not one read only after the loop, not one of a reference type, not
// one past the first 256.
func TestLoopLocals(t *testing.T) {
	many := ""
	for i := range 300 {
		many += fmt.Sprintf("(local $m%d i32)", i)
	}
	cases := []struct {
		name, body string // locals and instructions of f (param i32)
		want       string
	}{
		{"read and written", `(local $s i32) (local $u i64)
			(loop $l (local.set $s (i32.add (local.get $s) (local.get 0))) (br_if $l (local.get 0)))
			(drop (local.get $u))`, "[[0 1]]"},
		{"in nested blocks and ifs", `(local $a f32) (local $b f64) (local $c i64)
			(loop $l
				(block $x (if (local.get 0) (then (local.set $a (f32.const 1))) (else (local.set $b (f64.const 2)))))
				(br_if $l (local.get 0)))`, "[[0 1 2]]"},
		{"read only after the loop", `(local $a i32) (local $b i32)
			(loop $l (br_if $l (local.get 0)))
			(drop (i32.add (local.get $a) (local.get $b)))`, "[[0]]"},
		{"an empty loop", `(local $a i64) (loop $l) (drop (local.get $a))`, "[[]]"},
		{"a reference local", `(local $r externref) (local $f f32)
			(loop $l (drop (local.get $r)) (drop (local.get $f)) (br_if $l (local.get 0)))`, "[[0 2]]"},
		{"two loops", `(local $a i32) (local $b i32)
			(loop $l (local.set $a (i32.const 1)) (br_if $l (local.get 0)))
			(loop $m (local.set $b (local.get $a)) (br_if $m (local.get $b)))`, "[[0 1] [1 2]]"},
		{"past the first 256", many + `(loop $l (local.set $m254 (local.get $m299)) (br_if $l (local.get 0)))`, "[[0 255]]"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			wasm := watBytes(t, "", `(module (func (export "f") (param i32) `+tc.body+`))`)
			if got := fmt.Sprint(instrument.LoopLocals(wasm, "\x7f")); got != tc.want {
				t.Errorf("saved %s, want %s", got, tc.want)
			}
		})
	}
}

// TestSavesSizeBounded: the saves cannot blow a module up. A retry head saves only the locals
// its loop names, each for at most 16 bytes against the 2 of the shortest local instruction, and
// retry heads (formAuto) never nest, so the saves add at most 8 bytes per input byte plus the
// declarations of the spill globals (at most 64 of each type: 64*(5+5+8+12) = 1,920 bytes).
// Checked on a function with 256 numeric locals, all read after 2,000 loops, empty or each
// naming eight of them (saving every local at every retry head made the empty loops' module
// 850 times its input).
func TestSavesSizeBounded(t *testing.T) {
	decl, use := "", ""
	for _, ty := range []string{"i32", "i64", "f32", "f64"} {
		for j := range 64 {
			decl += fmt.Sprintf("(local $%s%d %s)", ty, j, ty)
			use += fmt.Sprintf("(drop (local.get $%s%d))", ty, j)
		}
	}
	for _, tc := range []struct{ name, loop string }{
		{"empty loops", "(loop)"},
		{"loops naming eight locals", `(loop (local.set $i320 (local.get $i3263)) (local.set $i640 (local.get $i6463))
			(local.set $f320 (local.get $f3263)) (local.set $f640 (local.get $f6463)))`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := `(module (func (export "f") (param i32) ` + decl + strings.Repeat(tc.loop, 2000) + use + `))`
			with := mustInstrument(t, src, instrument.Options{Fuel: 100})
			instrument.SetSaveLocals(false)
			defer instrument.SetSaveLocals(true)
			without := mustInstrument(t, src, instrument.Options{Fuel: 100})
			in := len(watBytes(t, "", src))
			if added := len(with) - len(without); added > 8*in+1920 {
				t.Errorf("the saves add %d bytes to a %d-byte input (%d -> %d): more than 8 per byte and 1,920", added, in, len(without), len(with))
			}
			t.Logf("%d-byte input: %d bytes instrumented, %d with the saves", in, len(without), len(with))
		})
	}
}

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
	defer instrument.SetSaveLocals(true)
	size := map[bool]int{}
	for _, on := range []bool{true, false} {
		instrument.SetSaveLocals(on)
		ys := &yieldState{fuel: 1, stopAfter: 1000}
		out := mustInstrument(t, src, instrument.Options{Fuel: 1})
		size[on] = len(out)
		m := instantiate(t, out, ys)
		got, err := call(t, m, "f", 40)
		if err != nil || got != want {
			t.Errorf("saves %v: %#x, %v; want %#x", on, got, err, want)
		}
		if ys.yields < 40 {
			t.Errorf("saves %v: %d yields, want one per iteration", on, ys.yields)
		}
	}
	// Six saves and six restores, two 2-byte instructions each, and the declarations of the six
	// spill globals (5 bytes each for i32, i64; 8 for f32; 12 for f64).
	if d, want := size[true]-size[false], 6*2*4+4*5+8+12; d != want {
		t.Errorf("the saves add %d bytes, want %d", d, want)
	}
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
