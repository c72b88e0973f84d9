package instrument

import "github.com/wasmpod/wasmpod/runtime/internal/wasmbin"

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

// planSaves decides the spill globals of the retry heads' saves from the n bodies of the code
// section (body: past its count): of each numeric type, as many as the most locals of that type
// (maxSaves at most) of a function with a retry head; it places them after the fuel and the
// stack budget.
func (w *rewriter) planSaves(body []byte, n uint32) {
	var need [4]uint32
	if saveLocals {
		r := &wasmbin.Reader{B: body}
		var types []byte
		var outer, tables []bool
		for i := uint32(0); i < n && r.Err == nil; i++ {
			code := r.Bytes(int(r.U32()))
			if r.Err != nil || int(i) >= len(w.funcTypes) {
				break
			}
			outer, tables = loopFacts(code, outer[:0], tables[:0])
			retry := false
			for _, o := range outer {
				retry = retry || loopForm == formRetry || (loopForm == formAuto && !o)
			}
			if !retry {
				continue
			}
			types = localTypes(code, w.types[w.funcTypes[i]].ptypes, types[:0])
			var cnt [4]uint32
			for _, t := range types {
				if k := numIdx(t); k >= 0 {
					cnt[k]++
				}
			}
			for k := range need {
				need[k] = min(max(need[k], cnt[k]), maxSaves)
			}
		}
	}
	next := w.globals + 2
	for k := range need {
		w.spillBase[k], w.spillN[k] = next, need[k]
		next += need[k]
	}
}

// loopSaves returns the saves of a retry head of a function whose local types are fb.types:
// every numeric local gets the next spill global of its type, as long as there is one.
func (w *rewriter) loopSaves(fb *funcBuf) []save {
	fb.saves = fb.saves[:0]
	var cnt [4]uint32
	for x, t := range fb.types {
		if k := numIdx(t); k >= 0 && cnt[k] < w.spillN[k] {
			fb.saves = append(fb.saves, save{uint32(x), w.spillBase[k] + cnt[k]})
			cnt[k]++
		}
	}
	return fb.saves
}
