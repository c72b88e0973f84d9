package instrument

import "github.com/wasmpod/wasmpod/runtime/internal/wasmbin"

// Limits of the elisions (see bodyInfo): they bound what a call of a function without an entry
// check, or without any check, adds to its caller's straight-line run.
const (
	// MaxCheckFree is the most instructions a function may have to run without any check.
	MaxCheckFree = 64
	// MaxPrefix is the most instructions a function may run before the loop head that stands
	// for its entry check.
	MaxPrefix = 16
	// MaxSuffix is the most instructions a function may run after its last check on any path
	// to its return to go without its exit check.
	MaxSuffix = 256
)

// bodyInfo is what the rewriter learns of every function body before rewriting any, so that a
// caller knows what a call costs it:
//
//   - A leaf (no call, call_indirect, return_call or return_call_indirect) takes nothing from
//     the stack budget: it adds one frame, bounded by the module, on top of budgeted ones.
//   - A check-free function is a leaf without loops and bulk instructions, of at most
//     MaxCheckFree instructions: it gets no check at all. Every path through it runs each of its
//     instructions at most once, so a call of it adds at most its instruction count to the
//     caller's run.
//   - A function whose every entry reaches a loop head within MaxPrefix instructions, through
//     none that branches, calls or charges (its prefix), has no entry check: the loop head's
//     check comes first. A call of it adds its prefix to the caller's run. It still checks at
//     its exit, so the caller's run after the call restarts there.
//
// A function with an entry check and an exit check costs its caller one instruction: the
// callee checks before its first instruction and after its last. One without exit check
// (exitFree, decided as it is rewritten, rewriter.code) costs the same before its first
// check, and leaves the caller a run of 1+suffix after it returns.
//
// A check-free function must also return to the caller that counted it: a tail call
// (return_call) from a function that has checked its exit would run it uncounted before
// returning to that function's caller. So no function is check-free in a module that has a
// return_call_indirect, nor is one that a return_call names (the rewriter clears checkFree).
type bodyInfo struct {
	leaf      bool
	checkFree bool
	prefix    int // instructions before the loop head that stands for the entry check; -1: none
	n         int // instructions in the body, its final end included
	// exitFree: the function has no exit check; suffix bounds the instructions it runs after
	// its last check on every path to its return (see rewriter.code).
	exitFree bool
	suffix   int
	tail     bool // it has a return_call or return_call_indirect
}

// cost is what a call of the function adds to the caller's straight-line run, the call
// instruction included.
func (bi bodyInfo) cost() int {
	switch {
	case bi.checkFree:
		return 1 + bi.n
	case bi.prefix >= 0:
		return 1 + bi.prefix
	}
	return 1
}

// scanBody classifies one body (code: its locals and instructions) and appends the functions
// its return_calls name to tails; indirect tells whether it has a return_call_indirect. A body
// it cannot read is classified as needing every check; the rewriter then reports what is wrong
// with it.
func scanBody(code []byte, tails []uint32) (bi bodyInfo, _ []uint32, indirect bool) {
	n := 0
	r := instructions(code)
	bi = bodyInfo{leaf: true, prefix: -1}
	inPrefix, loops, bulk := true, false, false
	for !r.Done() {
		op := r.Byte()
		n++
		sub := uint32(0)
		if op == 0xFC {
			save := r.Pos
			sub = r.U32()
			r.Pos = save
		}
		switch {
		case op == 0x12: // return_call
			save := r.Pos
			tails = append(tails, r.U32())
			r.Pos = save
			bi.leaf = false
			bi.tail = true
		case op == 0x13: // return_call_indirect
			indirect = true
			bi.leaf = false
			bi.tail = true
		case op >= 0x10 && op <= 0x15: // call, call_indirect, call_ref, return_call_ref
			bi.leaf = false
		case op == 0x03:
			loops = true
			if inPrefix && n-1 <= MaxPrefix {
				bi.prefix = n - 1
			}
			inPrefix = false
		case op == 0xFC && isBulk(sub):
			bulk = true
		}
		if inPrefix && !straight(op, sub) {
			inPrefix = false
		}
		r.Immediates(op)
	}
	if r.Err != nil {
		return bodyInfo{prefix: -1, n: n}, tails, indirect
	}
	bi.n = n
	bi.checkFree = bi.leaf && !loops && !bulk && n <= MaxCheckFree
	if bi.checkFree {
		bi.prefix = -1
	}
	return bi, tails, indirect
}

// isBulk tells the 0xFC instructions charged by length: memory.init, memory.copy, memory.fill,
// table.init, table.copy, table.fill.
func isBulk(sub uint32) bool {
	switch sub {
	case 8, 10, 11, 12, 14, 17:
		return true
	}
	return false
}

// straight tells the instructions that may precede the loop head standing for an entry check:
// the ones that neither branch, call, trap on purpose, charge fuel nor end a block. (A trap
// would end the call, harmless, but the list is kept to the obvious.)
func straight(op byte, sub uint32) bool {
	switch {
	case op == 0x01 || op == 0x02: // nop, block
	case op >= 0x1A && op <= 0x1C: // drop, select
	case op >= 0x20 && op <= 0x26: // local, global and table get/set
	case op >= 0x28 && op <= 0x3F: // loads, stores, memory.size
	case op >= 0x41 && op <= 0xC4: // constants and numeric instructions
	case op >= 0xD0 && op <= 0xD2: // ref.null, ref.is_null, ref.func
	case op == 0xFC && sub < 8: // saturating truncations
	default:
		return false
	}
	return true
}

// instructions returns a reader of the body code (its locals and instructions) past the
// locals; a body whose locals it cannot read leaves the error in the reader.
func instructions(code []byte) *wasmbin.Reader {
	r := &wasmbin.Reader{B: code}
	groups := r.U32()
	for g := uint32(0); g < groups && r.Err == nil; g++ {
		r.U32()
		r.Valtype()
	}
	return r
}

// loopFacts appends to outer and tables, for every loop of the body code (its locals and
// instructions) in order, whether it contains another loop (it then keeps the inline check) and
// whether a br_table names it (it then keeps the head check of its retry loop: see
// backEdgeCheck). It stops at the first instruction it cannot read (the rewriter then reports
// what is wrong): loops past it are left out.
func loopFacts(code []byte, outer, tables []bool) ([]bool, []bool) {
	r := instructions(code)
	// open holds, for every open block, loop and if, the index of the innermost loop around it
	// or itself (inner) and its own if it is a loop (self); -1 if none.
	type frame struct{ inner, self int }
	open := []frame{{-1, -1}}
	for !r.Done() && r.Err == nil {
		op := r.Byte()
		switch op {
		case 0x02, 0x04: // block, if
			open = append(open, frame{open[len(open)-1].inner, -1})
		case 0x03: // loop
			if l := open[len(open)-1].inner; l >= 0 {
				outer[l] = true
			}
			open = append(open, frame{len(outer), len(outer)})
			outer, tables = append(outer, false), append(tables, false)
		case 0x0B: // end
			if len(open) == 1 {
				return outer, tables // the function's end
			}
			open = open[:len(open)-1]
		case 0x0E: // br_table
			n := r.U32()
			for k := uint32(0); k <= n && r.Err == nil; k++ {
				if l := r.U32(); r.Err == nil && uint64(l) < uint64(len(open)) {
					if i := open[len(open)-1-int(l)].self; i >= 0 {
						tables[i] = true
					}
				}
			}
			continue
		}
		r.Immediates(op)
	}
	return outer, tables
}

// directCalls appends to dst the function indices the call instructions of the body code (its
// locals and instructions) name. It stops at the first instruction it cannot read.
func directCalls(code []byte, dst []uint32) []uint32 {
	r := instructions(code)
	for !r.Done() && r.Err == nil {
		op := r.Byte()
		if op == 0x10 {
			save := r.Pos
			if idx := r.U32(); r.Err == nil {
				dst = append(dst, idx)
			}
			r.Pos = save
		}
		r.Immediates(op)
	}
	return dst
}
