package instrument

import (
	"math/bits"

	"github.com/wasmpod/wasmpod/runtime/internal/wasmbin"
)

// maxTracked bounds the locals a retry head saves (retryHead) to the first maxTracked of its
// function, parameters included; the others are never saved, which costs speed, not
// correctness.
const maxTracked = 256

// maxSaves bounds the locals of one type a retry head saves, and so the spill globals of a type.
const maxSaves = 64

// saveLocals selects the saves around the retry head's call (retryHead): true in production,
// false for tests and measurements that compare.
var saveLocals = true

// save is one local a retry head saves around its call, and the global that holds it.
type save struct{ local, global uint32 }

// numIdx is the index of a numeric value type (its first byte) among i32, i64, f32 and f64, or
// -1 for any other type.
func numIdx(t byte) int {
	switch t {
	case 0x7F:
		return 0
	case 0x7E:
		return 1
	case 0x7D:
		return 2
	case 0x7C:
		return 3
	}
	return -1
}

// localTypes appends to dst the first byte of the type of every local of the body code (its
// locals and instructions), parameters (ptypes) first, up to maxTracked in all.
func localTypes(code, ptypes, dst []byte) []byte {
	dst = append(dst, ptypes[:min(len(ptypes), maxTracked)]...)
	r := &wasmbin.Reader{B: code}
	groups := r.U32()
	for g := uint32(0); g < groups && r.Err == nil && len(dst) < maxTracked; g++ {
		n := r.U32()
		if r.Pos >= len(r.B) {
			break
		}
		t := r.B[r.Pos]
		r.Valtype()
		for k := uint32(0); k < n && len(dst) < maxTracked; k++ {
			dst = append(dst, t)
		}
	}
	return dst
}

// loopLocals appends to dst, in increasing order, the locals among types (the first byte of the
// type of the function's first locals, see localTypes) of a numeric type that the loop whose
// body starts at pos of the body code reads or writes. It stops at the loop's end, or at the
// first instruction it cannot read: the retry head then saves fewer locals, which costs speed,
// not correctness.
//
// Only these: a local the loop does not touch keeps one value through the loop, which crosses
// the call at the cost of one spill where it is defined, outside the loop; and a loop must name
// a local to have it saved, so a retry head's saves cost at most 16 bytes for each local
// instruction of its loop (2 bytes or more). In production (formAuto) only loops with no loop
// inside get a retry head, and those never overlap, so the saves add at most 8 bytes per input
// byte, plus the declarations of at most 4*maxSaves spill globals (TestSavesSizeBounded);
// formRetry, for tests only, nests retry heads and has no such bound.
func loopLocals(code []byte, pos int, types []byte, dst []uint32) []uint32 {
	var seen [maxTracked / 64]uint64
	r := &wasmbin.Reader{B: code, Pos: pos}
	for depth := 1; depth > 0 && !r.Done() && r.Err == nil; {
		op := r.Byte()
		switch op {
		case 0x20, 0x21, 0x22: // local.get, local.set, local.tee
			x := r.U32()
			if r.Err == nil && uint64(x) < uint64(len(types)) && numIdx(types[x]) >= 0 {
				seen[x/64] |= 1 << (x % 64)
			}
			continue
		case 0x02, 0x03, 0x04, 0x06, 0x1F: // block, loop, if, try, try_table
			depth++
		case 0x0B, 0x18: // end, delegate (which ends a try)
			depth--
		}
		r.Immediates(op)
	}
	for k, v := range seen {
		for ; v != 0; v &= v - 1 {
			dst = append(dst, uint32(k*64+bits.TrailingZeros64(v)))
		}
	}
	return dst
}

// retryLoop reports whether loop l of a body gets a retry head, given the body's loopFacts
// (outer); function and planSaves both ask it, so they agree.
func retryLoop(outer []bool, l int) bool {
	o := l < len(outer) && outer[l]
	return loopForm == formRetry || (loopForm == formAuto && !o)
}

// planSaves decides the spill globals of the retry heads' saves from the n bodies of the code
// section (body: past its count): of each numeric type, as many as the most locals of that type
// (maxSaves at most) one retry head saves (loopLocals); it places them after the fuel and the
// stack budget.
func (w *rewriter) planSaves(body []byte, n uint32) {
	var need [4]uint32
	if saveLocals {
		br := &wasmbin.Reader{B: body}
		var types []byte
		var outer []bool
		var used []uint32
		for i := uint32(0); i < n && br.Err == nil; i++ {
			code := br.Bytes(int(br.U32()))
			if br.Err != nil || int(i) >= len(w.funcTypes) {
				break
			}
			outer, _ = loopFacts(code, outer[:0], nil)
			types = localTypes(code, w.types[w.funcTypes[i]].ptypes, types[:0])
			r := instructions(code)
			for l := 0; !r.Done() && r.Err == nil; {
				op := r.Byte()
				r.Immediates(op)
				if op != 0x03 {
					continue
				}
				if retryLoop(outer, l) {
					used = loopLocals(code, r.Pos, types, used[:0])
					var cnt [4]uint32
					for _, x := range used {
						cnt[numIdx(types[x])]++
					}
					for k := range need {
						need[k] = min(max(need[k], cnt[k]), maxSaves)
					}
				}
				l++
			}
		}
	}
	next := w.globals + 2
	for k := range need {
		w.spillBase[k], w.spillN[k] = next, need[k]
		next += need[k]
	}
}

// loopSaves returns the saves of the retry head of the loop whose body starts at pos of the
// body code, in a function whose local types are fb.types: every local the loop touches
// (loopLocals) gets the next spill global of its type, as long as there is one.
func (w *rewriter) loopSaves(fb *funcBuf, code []byte, pos int) []save {
	fb.used = loopLocals(code, pos, fb.types, fb.used[:0])
	fb.saves = fb.saves[:0]
	var cnt [4]uint32
	for _, x := range fb.used {
		k := numIdx(fb.types[x])
		if cnt[k] < w.spillN[k] {
			fb.saves = append(fb.saves, save{x, w.spillBase[k] + cnt[k]})
			cnt[k]++
		}
	}
	return fb.saves
}
