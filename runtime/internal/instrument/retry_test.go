package instrument_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/wasmpod/wasmpod/runtime/internal/instrument"
)

// A loop in a retry loop (instrument.loopCheck; every loop with FormRetry, the loops without
// loops inside with FormAuto): a branch must skip one more label for every retry loop it
// leaves, and a loop's parameters must come back through the retry. A branch relabelled wrong either fails validation or lands on another loop or block of the same type,
// so each case checks the result against the original module and counts the checks exactly
// (fuel 1: one yield per check, and one iteration per refill of 1). A cut after far more yields
// than expected ends a case that loops where it should not.
func TestRetryLoopBranches(t *testing.T) {
	nest := `(module (func (export "f") (param $n i32) (result i32) (local $c i32)
		(block $done
			(loop $o
				(local.set $c (i32.add (local.get $c) (i32.const 100)))
				(loop $i
					(local.set $c (i32.add (local.get $c) (i32.const 1)))
					(br_if $done (i32.eqz (local.get $n)))
					(local.set $n (i32.sub (local.get $n) (i32.const 1)))
					(br_table $i $o $done $i (i32.and (local.get $n) (i32.const 3))))))
		(local.get $c)))`
	// A loop with a result over a value left below it on the stack, and an if/else in it.
	result := `(module (func (export "f") (param $n i32) (result i32)
		(i32.const 1000)
		(loop $l (result i32)
			(local.set $n (i32.sub (local.get $n) (i32.const 1)))
			(if (i32.and (local.get $n) (i32.const 1))
				(then (br $l))
				(else (br_if $l (i32.gt_s (local.get $n) (i32.const 0)))))
			(i32.const 5))
		(i32.add)))`
	// A loop with a parameter (the sum so far), yielding at every iteration with fuel 1: the
	// retry carries the parameter back. A loop inside it branches out of both with a value.
	params := `(module (func (export "f") (param $n i32) (result i32)
		(block $out (result i32)
			(i32.const 0)
			(loop $p (param i32) (result i32)
				(loop $q
					(if (i32.eq (local.get $n) (i32.const 7)) (then (br $out (i32.const 77))))
					(br_if $q (i32.and (local.tee $n (i32.sub (local.get $n) (i32.const 1))) (i32.const 1))))
				(i32.add (i32.const 1))
				(br_if $out (i32.le_s (local.get $n) (i32.const 0)))
				(br $p)))))`
	// Two results through a type index, left on the stack by the loop's end or taken by a
	// branch to an outer block.
	multi := `(module (type $two (func (result i32 i32)))
		(func (export "f") (param $n i32) (result i32)
			(block $b (type $two)
				(loop $l (type $two)
					(local.set $n (i32.sub (local.get $n) (i32.const 1)))
					(if (i32.eq (local.get $n) (i32.const 2)) (then (br $b (i32.const 3) (i32.const 4))))
					(br_if $l (i32.gt_s (local.get $n) (i32.const 0)))
					(i32.const 10) (i32.const 20)))
			(i32.sub)))`
	cases := []struct {
		name, src string
		arg       uint64
		want      int32
		yields    int // loop heads passed (each function's first loop head stands for its entry check; its return comes within MaxSuffix of a loop head: no exit check)
	}{
		{"nested loops, br_table to each", nest, 10, 204, 6},
		{"nested loops, br_if out of both", nest, 0, 101, 2},
		{"a result over the stack, if/else", result, 6, 1005, 6},
		{"a loop with a parameter around a wrapped one", params, 5, 3, 8},
		{"a wrapped loop leaving the one with a parameter", params, 9, 77, 5},
		{"two results, the loop's end", multi, 1, -10, 1},
		{"two results, a branch out", multi, 5, -1, 3},
	}
	for _, tc := range cases {
		for _, form := range []int{instrument.FormAuto, instrument.FormRetry} {
			t.Run(fmt.Sprintf("%s/form %d", tc.name, form), func(t *testing.T) {
				instrument.SetLoopForm(form)
				defer instrument.SetLoopForm(instrument.FormAuto)
				retryLoopCase(t, tc.src, tc.arg, tc.want, tc.yields)
			})
		}
	}
}

// retryLoopCase runs src's f(arg) as original and instrumented, with fuel 1 per refill (want
// yields) and 2^20 (none).
func retryLoopCase(t *testing.T, src string, arg uint64, want int32, yields int) {
	t.Helper()
	orig := instantiate(t, watBytes(t, "", src), &yieldState{fuel: 1})
	if got, err := call(t, orig, "f", arg); err != nil || got != want {
		t.Fatalf("original: %d, %v; want %d", got, err, want)
	}
	ys := &yieldState{fuel: 1, stopAfter: yields + 100}
	m := instantiate(t, mustInstrument(t, src, instrument.Options{Fuel: 1}), ys)
	if got, err := call(t, m, "f", arg); err != nil || got != want {
		t.Fatalf("instrumented: %d, %v; want %d", got, err, want)
	}
	if ys.yields != yields {
		t.Fatalf("%d checks, want %d", ys.yields, yields)
	}
	// A large refill: no yield at all, same result.
	ys = &yieldState{fuel: 1 << 20}
	m = instantiate(t, mustInstrument(t, src, instrument.Options{Fuel: 1 << 20}), ys)
	if got, err := call(t, m, "f", arg); err != nil || got != want || ys.yields != 0 {
		t.Fatalf("fuel 2^20: %d, %v, %d yields; want %d, 0 yields", got, err, ys.yields, want)
	}
}

// TestRetryLoopCut: a guest spinning in a wrapped loop yields once per refill and is cut at the
// yield after the host empties its fuel, whether the fuel ran out at the loop head (inside the
// loop) or was already empty when the loop was entered.
func TestRetryLoopCut(t *testing.T) {
	src := `(module (func (export "f") (param i32) (result i32) (loop $l (br $l)) (i32.const 0)))`
	ys := &yieldState{fuel: 3, stopAfter: 50}
	m := instantiate(t, mustInstrument(t, src, instrument.Options{Fuel: 3}), ys)
	if _, err := call(t, m, "f", 0); err == nil || !strings.Contains(err.Error(), "cut") || ys.yields != 50 {
		t.Fatalf("spinning: %v after %d yields, want cut at 50", err, ys.yields)
	}
	ys.yields, ys.stopAfter, ys.stop = 0, 0, true
	fuel := m.ExportedGlobal(instrument.FuelName).(interface{ Set(uint64) })
	fuel.Set(0)
	if _, err := call(t, m, "f", 0); err == nil || !strings.Contains(err.Error(), "cut") || ys.yields != 1 {
		t.Fatalf("entered with no fuel: %v after %d yields, want cut at the first", err, ys.yields)
	}
}

// TestRetryLoopMatchesInline: the retry form (instrument.loopCheck) passes exactly the checks of
// the inline check it replaces, for every refill: each case runs with the inline check at every
// loop head, with the production choice (the retry form for loops without loops inside, the
// inline check around them) and with the retry form at every loop, with fuel 1, 2, 3 and 7 per
// refill, each retry form with the checks at the back edges where they fit (backEdgeCheck) and
// with every check at the head, and must return the original's result with as many yields as
// the inline form. The cases branch from inside nested loops to every enclosing label (block,
// loop, the function's, return), from if blocks and block-typed loops, and back to loops from
// nested blocks, ifs and elses with br and br_if, to a loop with a parameter and with a br_table.
func TestRetryLoopMatchesInline(t *testing.T) {
	// br_table from a block inside two loops to every enclosing label, br to a block around
	// both loops with a value, return from inside both.
	deep := `(module (func (export "f") (param $n i32) (result i32) (local $s i32)
		(block $f (result i32)
			(block $a
				(loop $o
					(local.set $s (i32.add (local.get $s) (i32.const 100)))
					(block $b
						(loop $i
							(br_if $a (i32.le_s (local.get $n) (i32.const 0)))
							(local.set $s (i32.add (local.get $s) (i32.const 1)))
							(local.set $n (i32.sub (local.get $n) (i32.const 1)))
							(if (i32.eq (local.get $n) (i32.const 21)) (then (br $f (i32.const -1))))
							(if (i32.eq (local.get $n) (i32.const 13)) (then (return (i32.add (local.get $s) (i32.const 50000)))))
							(block $c
								(br_table $c $i $b $o $c $i $o $c $a (i32.and (local.get $n) (i32.const 7))))
							(br $i)))
					(local.set $s (i32.add (local.get $s) (i32.const 1000)))
					(br $o)))
			(local.get $s))))`
	// A loop with a result inside an if inside a loop, branching out of both.
	inIf := `(module (func (export "f") (param $n i32) (result i32) (local $s i32)
		(loop $o
			(if (i32.and (local.get $n) (i32.const 1))
				(then
					(local.set $s (i32.add (local.get $s)
						(loop $i (result i32)
							(local.set $n (i32.sub (local.get $n) (i32.const 1)))
							(br_if $o (i32.eq (local.get $n) (i32.const 6)))
							(br_if $i (i32.and (local.get $n) (i32.const 2)))
							(local.get $n)))))
				(else (local.set $n (i32.sub (local.get $n) (i32.const 1)))))
			(br_if $o (i32.gt_s (local.get $n) (i32.const 0))))
		(local.get $s)))`
	// A loop with a parameter after a prefix (its head stands for the entry check) and a call of
	// a function whose only check is a loop head.
	param := `(module
		(func $spin (param $k i32) (loop $l (br_if $l (local.tee $k (i32.sub (local.get $k) (i32.const 1))))))
		(func (export "f") (param $n i32) (result i32)
			(i32.const 7)
			(loop $p (param i32) (result i32)
				(call $spin (i32.const 3))
				(i32.add (local.get $n))
				(local.tee $n (i32.sub (local.get $n) (i32.const 1)))
				(br_if $p (i32.gt_s (i32.const 0)) (local.get $n))
				(drop))))`
	// Back edges from nested blocks, ifs and elses of loops without parameters, one with a
	// result, a br_table out of one (not naming it: its back edges keep their checks) and one
	// named by a br_table (the head check).
	edges := `(module (func (export "f") (param $n i32) (result i32) (local $s i32) (local $k i32)
		(local.set $k (local.get $n))
		(loop $a
			(local.set $s (i32.add (local.get $s) (i32.const 1)))
			(block (block
				(br_if $a (i32.gt_s (local.tee $k (i32.sub (local.get $k) (i32.const 1))) (i32.const 0))))))
		(local.set $k (local.get $n))
		(local.set $s (i32.add (local.get $s)
			(loop $b (result i32)
				(local.set $k (i32.sub (local.get $k) (i32.const 1)))
				(if (i32.and (local.get $k) (i32.const 1))
					(then (block (br $b)))
					(else (br_if $b (i32.gt_s (local.get $k) (i32.const 0)))))
				(i32.const 1000))))
		(local.set $k (local.get $n))
		(block $out
			(loop $c
				(local.set $k (i32.sub (local.get $k) (i32.const 1)))
				(block $skip
					(br_table $skip $out (i32.lt_s (local.get $k) (i32.const 0))))
				(local.set $s (i32.add (local.get $s) (i32.const 10)))
				(br $c)))
		(local.set $k (local.get $n))
		(block $done
			(loop $d
				(local.set $k (i32.sub (local.get $k) (i32.const 1)))
				(local.set $s (i32.add (local.get $s) (i32.const 100)))
				(br_table $d $done (i32.le_s (local.get $k) (i32.const 0)))))
		(local.get $s)))`
	type run struct {
		got    int32
		yields int
	}
	exec := func(t *testing.T, src string, arg uint64, fuel int32, form int, backEdges bool) run {
		t.Helper()
		instrument.SetLoopForm(form)
		instrument.SetBackEdges(backEdges)
		defer instrument.SetLoopForm(instrument.FormAuto)
		defer instrument.SetBackEdges(true)
		ys := &yieldState{fuel: fuel, stopAfter: 100000}
		m := instantiate(t, mustInstrument(t, src, instrument.Options{Fuel: fuel}), ys)
		got, err := call(t, m, "f", arg)
		if err != nil {
			t.Fatal(err)
		}
		return run{int32(got), ys.yields}
	}
	for _, tc := range []struct {
		name, src string
		args      []uint64
	}{
		{"deep", deep, []uint64{0, 5, 12, 14, 20, 22, 30, 100}},
		{"loop in if", inIf, []uint64{0, 3, 9, 15, 40}},
		{"parameter", param, []uint64{1, 4, 9}},
		{"back edges", edges, []uint64{0, 1, 2, 5, 16}},
	} {
		for _, arg := range tc.args {
			orig := instantiate(t, watBytes(t, "", tc.src), &yieldState{fuel: 1})
			want, err := call(t, orig, "f", arg)
			if err != nil {
				t.Fatalf("%s(%d) original: %v", tc.name, arg, err)
			}
			for _, fuel := range []int32{1, 2, 3, 7} {
				inline := exec(t, tc.src, arg, fuel, instrument.FormInline, true)
				auto := exec(t, tc.src, arg, fuel, instrument.FormAuto, true)
				autoHead := exec(t, tc.src, arg, fuel, instrument.FormAuto, false)
				retry := exec(t, tc.src, arg, fuel, instrument.FormRetry, true)
				retryHead := exec(t, tc.src, arg, fuel, instrument.FormRetry, false)
				if inline.got != int32(want) || auto != inline || autoHead != inline || retry != inline || retryHead != inline {
					t.Errorf("%s(%d), fuel %d: inline %+v, auto %+v (head checks %+v), retry every loop %+v (head checks %+v), original %d",
						tc.name, arg, fuel, inline, auto, autoHead, retry, retryHead, int32(want))
				}
			}
		}
	}
}

// TestOuterLoops: which loops contain a loop, and so keep the inline check (FormAuto).
func TestOuterLoops(t *testing.T) {
	const loop, block, if_, end = "\x03\x40", "\x02\x40", "\x41\x00\x04\x40", "\x0b"
	cases := []struct {
		name, body string
		want       []bool
	}{
		{"none", end, nil},
		{"one", loop + end + end, []bool{false}},
		{"nested", loop + loop + end + end + end, []bool{true, false}},
		{"through a block and an if", loop + block + if_ + loop + end + end + end + end + end, []bool{true, false}},
		{"siblings in one", loop + loop + end + loop + loop + end + end + end + end, []bool{true, false, true, false}},
		{"after a nest", loop + loop + end + end + block + loop + end + end + loop + end + end, []bool{true, false, false, false}},
		{"unreadable", loop + "\xfc\xff\xff\xff\xff\xff" + loop + end + end + end, []bool{false}},
	}
	for _, tc := range cases {
		got := instrument.OuterLoops([]byte("\x00"+tc.body), nil)
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestBackEdgeChecks: a loop checked at its back edges (backEdgeCheck) is cut wherever its back
// edge stands. Each loop spins forever, its only back edge inside blocks, an if or an else; a
// missed check would let it run to its trap (unreachable after 2^20 iterations) instead of
// being cut at the 50th yield (fuel 3 per refill). Each case must get the back edge form: its
// instrumented bytes differ from those with every check at the head.
func TestBackEdgeChecks(t *testing.T) {
	// spin wraps a back edge: the loop counts its iterations in $i and traps at 2^20.
	spin := func(edge string) string {
		return `(module (func (export "f") (param $n i32) (result i32) (local $i i32)
			(loop $l
				(local.set $i (i32.add (local.get $i) (i32.const 1)))
				(if (i32.gt_u (local.get $i) (i32.const 0x100000)) (then unreachable))
				` + edge + `)
			(local.get $i)))`
	}
	for _, tc := range []struct{ name, edge string }{
		{"br_if in two blocks", `(block (block (br_if $l (i32.const 1))))`},
		{"br in a block in an if", `(if (local.get $i) (then (block (br $l))))`},
		{"br_if in an else", `(if (i32.eqz (local.get $i)) (then) (else (br_if $l (local.get $i))))`},
		{"br_if after a value", `(block (result i32) (i32.const 5) (br_if $l (i32.const 1)))
				(drop)`},
		{"br after a br_if out", `(block $b (br_if $b (i32.eqz (local.get $i))) (br $l))`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := spin(tc.edge)
			instrument.SetBackEdges(false)
			head := mustInstrument(t, src, instrument.Options{Fuel: 3})
			instrument.SetBackEdges(true)
			edge := mustInstrument(t, src, instrument.Options{Fuel: 3})
			if string(head) == string(edge) {
				t.Fatal("the loop did not get the back edge form")
			}
			ys := &yieldState{fuel: 3, stopAfter: 50}
			m := instantiate(t, edge, ys)
			if _, err := call(t, m, "f", 0); err == nil || !strings.Contains(err.Error(), "cut") || ys.yields != 50 {
				t.Fatalf("spinning: %v after %d yields, want cut at 50", err, ys.yields)
			}
		})
	}
}

// TestTableLoops: which loops a br_table names, and so keep the head check.
func TestTableLoops(t *testing.T) {
	const loop, block, end = "\x03\x40", "\x02\x40", "\x0b"
	const zero = "\x41\x00"
	cases := []struct {
		name, body string
		want       []bool
	}{
		{"none", end, nil},
		{"br to a loop", loop + "\x0c\x00" + end + end, []bool{false}},
		{"br_table to a loop", loop + zero + "\x0e\x01\x00\x00" + end + end, []bool{true}},
		{"br_table to the outer loop only", loop + block + loop + zero + "\x0e\x01\x03\x03" + end + end + end + end, []bool{false, false}},
		{"br_table past a block to the outer loop", loop + block + loop + zero + "\x0e\x01\x00\x02" + end + end + end + end, []bool{true, true}},
		{"br_table to blocks", block + loop + block + zero + "\x0e\x01\x00\x02" + end + end + end + end, []bool{false}},
	}
	for _, tc := range cases {
		got := instrument.TableLoops([]byte("\x00"+tc.body), nil)
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
