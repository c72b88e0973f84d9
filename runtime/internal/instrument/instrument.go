// Package instrument rewrites an untrusted WebAssembly module so that the host can stop it at any
// time, bound its wasm stack and its tables, and so the Go runtime always reaches a safe point
// while it runs.
//
// It adds an imported host function (wasmpod.__yield: (reason i32) -> i32), two mutable i32
// globals (the fuel, exported as __wasmpod_fuel, and the stack budget), after them the spill
// globals that hold a loop's locals while its retry head yields (see retryHead), and these
// checks:
//
//   - A fuel countdown at every function entry, every function exit, every loop head and every
//     MaxStraight instructions of straight-line code. When the fuel reaches zero the guest calls
//     __yield(ReasonFuel), which either refills it (the call goes on) or traps (the call is
//     cut). The host cuts a call by setting the fuel to zero from another goroutine. The check
//     of a loop that contains no loop only counts down and branches: the loop runs inside a
//     retry loop whose head makes the call, so no check's call sits inside the loop itself
//     (loopCheck), and if the loop has no parameters and no br_table names it, the check stands
//     at its back edges (before every branch back to it) and at its entry instead of its head
//     (backEdgeCheck).
//   - Bulk memory and table instructions (memory.fill/copy/init, table.fill/copy/init) are
//     charged fuel in proportion to their length before they run, so a yield comes before a
//     long one, however few instructions surround it.
//   - A stack budget: every function entry subtracts the function's frame weight (FrameWeight)
//     and every exit adds it back; below zero the guest calls __yield(ReasonStack), which traps
//     with a stack overflow. This bounds the wasm stack of one instance whatever the recursion.
//   - Every table the module defines gets a maximum of at most Options.MaxTableElems, so
//     table.grow returns -1 beyond it instead of the host allocating gigabytes.
//   - The start section is removed and its function exported as __wasmpod_start, so the host
//     runs it like any call, under a deadline, after instantiation.
//
// Three kinds of function go without some of these checks (bodyInfo, classified before any
// body is rewritten): a leaf (no call of any kind) takes nothing from the stack budget; a
// check-free function (a leaf without loops or bulk instructions, at most MaxCheckFree
// instructions) has no check at all; a function whose every entry reaches a loop head within
// MaxPrefix instructions that neither branch, call nor charge has no entry check (the loop
// head's check comes first). A call instruction counts, in its caller's straight-line run, what
// the callee runs before its first check: all of a check-free callee, the prefix of one
// without entry check; a call_indirect counts the most any function of the module would.
// A function whose every path reaches its return within MaxSuffix instructions of a check has
// no exit check (rewriter.code): after a call of it the caller's run restarts at 1+its suffix
// (1+MaxSuffix after a call_indirect).
//
// The guarantee (RATIONALE.md, "Deadlines"): between two checks a guest runs at most
// MaxStraight of its own instructions plus the check code, plus at most one bulk instruction
// (charged before it runs, bounded by the memory or table limit) or one host function. Proof
// sketch: the rewriter keeps, at every point of a body, a bound on the instructions run since
// the last check along any path into that point (function, through blocks, branches and
// if/else), and places a check wherever the next instruction would take it over MaxStraight.
// Within one activation execution only moves forward between loop heads, and a backward branch
// lands on a loop head, which checks (or on the retry loop around one, which only the loop
// head's check branches to, and which re-enters that loop head), or, for a loop checked at its
// back edges, lands there right after a check (the branch's own, or the retry head it branched
// to), and its entry passes the check before the retry loop: either way no original
// instruction runs between the check and the loop head, where the run restarts at 0. A call runs the callee: if the
// callee checks at entry, the caller's run ends there; if its entry check stands at its first loop head, the run goes on
// for the callee's prefix, which the call counted; if it is check-free, the run goes on through
// all its instructions, each at most once (no loops, no calls), which the call counted, and
// comes back to the caller, which goes on counting. Every other callee checks on every path,
// at its exit or at most MaxSuffix instructions before it (its suffix, measured as it is
// rewritten), so the caller's run after the call is at most 1+suffix: a direct call counts
// that, a call_indirect at least 1+MaxSuffix whatever the callee. The callees are rewritten
// first (calleesFirst), so a call counts the suffix its callee's rewriting measured; a callee
// not yet rewritten (on a cycle of calls, recursion included) was counted with its exit check
// and keeps it, as does every function a return_call names (it returns to a caller that
// counted the function tail-calling it) and every function in a module with a
// return_call_indirect. A tail call (return_call) leaves through the caller's exit check
// into the callee, so a check-free callee would run uncounted and return to a caller that
// counted nothing for it: no function that a return_call names, and none in a module with a
// return_call_indirect, is check-free. Recursion needs a call, so every activation that recurses
// passes a check (an entry check, or the loop head standing for it) before it calls, and its
// depth is bounded by the stack budget, which every function that calls pays; a leaf adds one
// frame, bounded by the module, on top.
//
// The added globals and types must be unreachable to the guest: the rewriter refuses any
// reference of the original module to a global, local, type or label index beyond what the
// original declares (the instrumented module would otherwise give it meaning), and leaves
// every other validation to the engine compiling the result, which is invalid exactly when the
// original is.
//
// Why not wazero's WithCloseOnContextDone: it starts a goroutine per call, makes every loop
// iteration call out to Go, and checks only loop heads, so recursion escapes it (RATIONALE.md).
// Why yield at all instead of only checking a flag: compiled wasm cannot be preempted by the
// Go scheduler, so a guest that never called into Go would block every stop-the-world pause of
// the garbage collector, and with it the timer that should cut the guest.
package instrument

import (
	"errors"
	"fmt"
	"github.com/wasmpod/wasmpod/runtime/internal/wasmbin"
)

// Names the instrumented module imports and exports.
const (
	ImportModule = "wasmpod"
	YieldName    = "__yield"
	FuelName     = "__wasmpod_fuel"
	// StartName exports the function of the original module's start section.
	StartName = "__wasmpod_start"
)

// Reasons the instrumented guest passes to __yield.
const (
	ReasonFuel  = 0 // the fuel ran out: refill it (return the new fuel) or trap to cut the call
	ReasonStack = 1 // the stack budget ran out: trap (the result is ignored)
)

const (
	// MaxStraight is the longest run of original instructions between two checks.
	MaxStraight = 1024
	// DefaultStackBudget is the stack budget of an instance, in frame-weight units (about
	// 8-20 bytes of wasm stack each): about 200,000 frames of a small recursive function (about
	// 20 MiB of stack, measured), far more than real guests use.
	DefaultStackBudget = 1 << 20
	// DefaultMaxTableElems is the most elements a table may have (8 bytes each): 8 MiB per
	// table. A large Go guest has some 40,000 functions in its table.
	DefaultMaxTableElems = 1 << 20
)

// Shifts that turn a bulk instruction's length into fuel: one unit per 16 bytes of memory, one
// per 2 table elements (16 bytes too), about the time a loop iteration takes.
const (
	memChargeShift   = 4
	tableChargeShift = 1
)

// Options tune Instrument.
type Options struct {
	Fuel          int32  // fuel per refill: checks between two yields; must be positive
	StackBudget   int32  // 0 means DefaultStackBudget
	MaxTableElems uint32 // 0 means DefaultMaxTableElems
	// KeepStart leaves the start section in place (not exported as StartName), for engines that
	// instantiate the module themselves (Extism); the host then bounds the instantiation by a
	// context deadline that __yield checks.
	KeepStart bool
}

// ErrUnsupported is wrapped by errors about features the host does not run.
var ErrUnsupported = errors.New("unsupported wasm feature")

// ErrMalformed is wrapped by every error about the input's encoding.
var ErrMalformed = errors.New("malformed wasm")

const (
	secCustom   = 0
	secType     = 1
	secImport   = 2
	secFunction = 3
	secTable    = 4
	secGlobal   = 6
	secExport   = 7
	secStart    = 8
	secElement  = 9
	secCode     = 10
)

// sectionOrder gives each known section's position in the canonical order, so a missing section
// can be added where it belongs.
var sectionOrder = map[byte]int{1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 13: 6, 6: 7, 7: 8, 8: 9, 9: 10, 12: 11, 10: 12, 11: 13}

type section struct {
	id   byte
	body []byte
}

// rewriter carries what the passes need: the original module's index spaces, where the new
// import sits in the function index space, and the indices of the added globals and types.
type rewriter struct {
	opts Options

	types     []sigInfo // the original's types
	funcTypes []uint32  // type index of every defined function
	// importTypes is the type index of every imported function.
	importTypes []uint32
	numFuncs    uint32 // imported + defined functions of the original
	globals     uint32 // imported + defined globals of the original

	yield      uint32            // function index of __yield == number of imported functions
	yieldType  uint32            // type index of __yield
	fuel, stk  uint32            // global indices of the fuel and the stack budget
	blockTypes map[string]uint32 // results -> added type [] -> results, for multi-value bodies
	extraTypes [][]byte          // encoded types added after the yield type

	hasStart bool
	start    uint32 // the original's start function

	info    []bodyInfo // of every defined function, from scanBody
	maxCost int        // the most a call_indirect may add to its caller's run: the largest cost()
	// keepExit marks the functions that must keep their exit check: the ones a return_call
	// names, and the ones a function rewritten before them calls (its call counted them with
	// their exit check).
	keepExit []bool
	done     []bool // the functions rewritten so far
	exitMax  int    // the longest run since the last check at any return of the function being rewritten

	// The spill globals of the retry heads' saves (retryHead): spillN[t] of type t (i32, i64,
	// f32, f64, see numIdx) from spillBase[t] on, after the fuel and the stack budget.
	spillBase [4]uint32
	spillN    [4]uint32
	// codeOut is the rewritten code section, made before the sections that precede it are
	// written (the global section needs the spill globals it uses).
	codeOut []byte
}

type sigInfo struct {
	params  uint32
	ptypes  []byte // first byte of every parameter's type
	nres    uint32
	results []byte // encoded result types
}

// cutExitChecks removes from fn the fuel checks of n bytes that start at the offsets exitAt
// (ascending), in place.
func cutExitChecks(fn []byte, exitAt []int, n int) []byte {
	out, from := fn[:0], 0
	for _, at := range exitAt {
		out = append(out, fn[from:at]...)
		from = at + n
	}
	return append(out, fn[from:]...)
}

// calleesFirst orders the defined functions (codes: their bodies) so that every function
// comes after the functions it calls directly, except along a cycle of calls: a depth-first
// post-order of the direct calls.
func (w *rewriter) calleesFirst(codes [][]byte) []uint32 {
	n := uint32(len(codes))
	order := make([]uint32, 0, n)
	const (
		unseen = iota
		open
		closed
	)
	state := make([]byte, n)
	type frame struct {
		fn    uint32
		calls []uint32
	}
	var stack []frame
	for root := uint32(0); root < n; root++ {
		if state[root] != unseen {
			continue
		}
		state[root] = open
		stack = append(stack, frame{root, directCalls(codes[root], nil)})
		for len(stack) > 0 {
			top := &stack[len(stack)-1]
			if len(top.calls) == 0 {
				state[top.fn] = closed
				order = append(order, top.fn)
				stack = stack[:len(stack)-1]
				continue
			}
			c := top.calls[0]
			top.calls = top.calls[1:]
			if c < w.yield || c >= w.numFuncs || state[c-w.yield] != unseen {
				continue
			}
			c -= w.yield
			state[c] = open
			stack = append(stack, frame{c, directCalls(codes[c], nil)})
		}
	}
	return order
}

// fn maps an original function index to its index in the instrumented module.
func (w *rewriter) fn(i uint32) uint32 {
	if i >= w.yield {
		return i + 1
	}
	return i
}

// CheckShape rejects inputs whose declared vector lengths exceed what their sections can hold.
// A module compiler may size allocations from those counts before it notices the section is
// too short; an upload of a few bytes must not make the host allocate gigabytes.
func CheckShape(wasm []byte) error {
	if len(wasm) < 8 || string(wasm[:4]) != "\x00asm" {
		return fmt.Errorf("%w: no wasm magic number", ErrMalformed)
	}
	r := &wasmbin.Reader{B: wasm, Pos: 8}
	for !r.Done() {
		id := r.Byte()
		body := r.Bytes(int(r.U32()))
		if r.Err != nil {
			return fmt.Errorf("%w: section %d: %v", ErrMalformed, id, r.Err)
		}
		switch id {
		case secCustom, secStart, 12: // custom, start, data count: no vector
			continue
		}
		sr := &wasmbin.Reader{B: body}
		n := sr.U32()
		if sr.Err != nil {
			return fmt.Errorf("%w: section %d: %v", ErrMalformed, id, sr.Err)
		}
		if int64(n) > int64(len(body)-sr.Pos) {
			return fmt.Errorf("%w: section %d declares %d entries in %d bytes", ErrMalformed, id, n, len(body))
		}
		if id == secCode {
			// Each body declares local groups; a count of locals can also be huge.
			for i := uint32(0); i < n && sr.Err == nil; i++ {
				fb := sr.Bytes(int(sr.U32()))
				fr := &wasmbin.Reader{B: fb}
				groups := fr.U32()
				if fr.Err == nil && int64(groups)*2 > int64(len(fb)) {
					return fmt.Errorf("%w: function %d declares %d local groups in %d bytes", ErrMalformed, i, groups, len(fb))
				}
				var total uint64
				for g := uint32(0); g < groups && fr.Err == nil; g++ {
					total += uint64(fr.U32())
					fr.Valtype()
				}
				if total > 50000 {
					return fmt.Errorf("%w: function %d declares %d locals (limit 50000)", ErrMalformed, i, total)
				}
			}
			if sr.Err != nil {
				return fmt.Errorf("%w: code section: %v", ErrMalformed, sr.Err)
			}
		}
	}
	return nil
}

// Instrument rewrites wasm (which is not modified) with the given fuel per refill and default
// limits; see InstrumentWith.
func Instrument(wasm []byte, fuel int32) ([]byte, error) {
	return InstrumentWith(wasm, Options{Fuel: fuel})
}

// InstrumentWith rewrites wasm (which is not modified) and returns the new module. Debug-info
// custom sections (.debug_*) are dropped because the code offsets they describe change. An
// input that references an index the original does not declare is refused (ErrMalformed), as
// are features the host does not run (ErrUnsupported).
func InstrumentWith(wasm []byte, opts Options) ([]byte, error) {
	_, out, err := instrumentWith(wasm, opts)
	return out, err
}

func instrumentWith(wasm []byte, opts Options) (*rewriter, []byte, error) {
	if len(wasm) < 8 || string(wasm[:4]) != "\x00asm" {
		return nil, nil, fmt.Errorf("%w: no wasm magic number", ErrMalformed)
	}
	if wasm[4] != 1 || wasm[5] != 0 || wasm[6] != 0 || wasm[7] != 0 {
		return nil, nil, fmt.Errorf("%w: unsupported binary version %x", ErrMalformed, wasm[4:8])
	}
	if opts.Fuel <= 0 {
		return nil, nil, errors.New("instrument: fuel must be positive")
	}
	if opts.StackBudget < 0 {
		return nil, nil, errors.New("instrument: stack budget must not be negative")
	}
	if opts.StackBudget == 0 {
		opts.StackBudget = DefaultStackBudget
	}
	if opts.MaxTableElems == 0 {
		opts.MaxTableElems = DefaultMaxTableElems
	}
	if err := CheckShape(wasm); err != nil {
		return nil, nil, err
	}
	r := &wasmbin.Reader{B: wasm, Pos: 8}
	var secs []section
	seen := map[byte]bool{}
	for !r.Done() {
		id := r.Byte()
		n := r.U32()
		body := r.Bytes(int(n))
		if r.Err != nil {
			return nil, nil, fmt.Errorf("%w: section %d: %v", ErrMalformed, id, r.Err)
		}
		if id != secCustom {
			if seen[id] {
				return nil, nil, fmt.Errorf("%w: duplicate section %d", ErrMalformed, id)
			}
			seen[id] = true
		}
		secs = append(secs, section{id: id, body: body})
	}

	w := &rewriter{opts: opts, blockTypes: map[string]uint32{}}
	// The index spaces of the original, in section order (types first: imports and functions
	// refer to them).
	for _, id := range []byte{secType, secImport, secFunction, secGlobal, secStart} {
		for _, s := range secs {
			if s.id != id {
				continue
			}
			var err error
			switch id {
			case secType:
				err = w.scanTypes(s.body)
			case secImport:
				err = w.scanImports(s.body)
			case secFunction:
				err = w.scanFunctions(s.body)
			case secGlobal:
				sr := &wasmbin.Reader{B: s.body}
				w.globals += sr.U32()
				err = sr.Err
			case secStart:
				sr := &wasmbin.Reader{B: s.body}
				w.start, w.hasStart = sr.U32(), true
				if sr.Err != nil || !sr.Done() {
					err = fmt.Errorf("%w: start section: %v", ErrMalformed, orTrailing(sr))
				}
			}
			if err != nil {
				return nil, nil, err
			}
		}
	}
	w.numFuncs += uint32(len(w.funcTypes))
	if w.hasStart && w.start >= w.numFuncs {
		return nil, nil, fmt.Errorf("%w: start function %d out of range (%d functions)", ErrMalformed, w.start, w.numFuncs)
	}
	// Exported as StartName, a start function of another type would make an invalid module
	// valid.
	if w.hasStart {
		var t uint32
		if w.start < w.yield {
			t = w.importTypes[w.start]
		} else {
			t = w.funcTypes[w.start-w.yield]
		}
		if ft := w.types[t]; ft.params != 0 || ft.nres != 0 {
			return nil, nil, fmt.Errorf("%w: start function %d takes %d parameters and returns %d results, want none", ErrMalformed, w.start, ft.params, ft.nres)
		}
	}
	keepStart := w.hasStart && opts.KeepStart
	if keepStart {
		w.hasStart = false // not exported
	}
	w.fuel, w.stk = w.globals, w.globals+1
	w.yieldType = uint32(len(w.types))
	next := w.yieldType + 1
	for _, ti := range w.funcTypes {
		ft := w.types[ti]
		if ft.nres < 2 {
			continue
		}
		if _, ok := w.blockTypes[string(ft.results)]; ok {
			continue
		}
		w.blockTypes[string(ft.results)] = next
		next++
		t := []byte{0x60, 0x00}
		t = appendU32(t, ft.nres)
		w.extraTypes = append(w.extraTypes, append(t, ft.results...))
	}

	for _, id := range []byte{secType, secImport, secGlobal, secExport} {
		if !seen[id] {
			secs = insertSection(secs, section{id: id, body: []byte{0}})
		}
	}

	// The code first: it decides the spill globals the global section declares.
	for _, s := range secs {
		if s.id == secCode {
			var err error
			if w.codeOut, err = w.code(s.body); err != nil {
				return nil, nil, err
			}
		}
	}
	if !seen[secCode] {
		w.planSaves(nil, 0)
	}

	out := make([]byte, 0, len(wasm)+len(wasm)/4+64)
	out = append(out, wasm[:8]...)
	for _, s := range secs {
		body := s.body
		var err error
		switch s.id {
		case secCustom:
			if isDebugSection(body) {
				continue
			}
			if body, err = w.nameSection(body); body == nil {
				continue // a malformed name section, dropped
			}
		case secType:
			body, err = appendToVector(body, []byte{0x60, 0x01, 0x7F, 0x01, 0x7F}) // (i32) -> i32
			for _, t := range w.extraTypes {
				if err == nil {
					body, err = appendToVector(body, t)
				}
			}
		case secImport:
			imp := appendName(nil, ImportModule)
			imp = appendName(imp, YieldName)
			imp = append(imp, 0x00)
			imp = appendU32(imp, w.yieldType)
			body, err = appendToVector(body, imp)
		case secTable:
			body, err = w.tables(body)
		case secGlobal:
			body, err = w.globalSection(body)
		case secExport:
			body, err = w.exports(body)
		case secStart:
			if !keepStart {
				continue // exported as StartName instead: the host runs it under a deadline
			}
			body = appendU32(nil, w.fn(w.start))
		case secElement:
			body, err = w.elements(body)
		case secCode:
			body = w.codeOut
		}
		if err != nil {
			return nil, nil, err
		}
		out = append(out, s.id)
		out = appendU32(out, uint32(len(body)))
		out = append(out, body...)
	}
	return w, out, nil
}

// fuelCheck appends: fuel -= 1; if fuel <= 0 { fuel = __yield(ReasonFuel) }, with the new fuel
// kept in the function's scratch local tmp rather than read back from the global.
func (w *rewriter) fuelCheck(c []byte, tmp uint32) []byte {
	c = append(c, 0x23) // global.get fuel
	c = appendU32(c, w.fuel)
	c = append(c, 0x41, 0x01, 0x6B) // i32.const 1, i32.sub
	return w.storeAndTest(c, tmp)
}

// chargeCheck appends a bulk instruction's charge: with its length n on top of the stack (left
// there), fuel -= n >> shift; if fuel <= 0 { fuel = __yield(ReasonFuel) }.
func (w *rewriter) chargeCheck(c []byte, tmp, shift uint32) []byte {
	c = append(c, 0x22) // local.tee tmp
	c = appendU32(c, tmp)
	c = append(c, 0x23) // global.get fuel
	c = appendU32(c, w.fuel)
	c = append(c, 0x20) // local.get tmp
	c = appendU32(c, tmp)
	c = append(c, 0x41) // i32.const shift
	c = appendS32(c, int32(shift))
	c = append(c, 0x76, 0x6B) // i32.shr_u, i32.sub
	return w.storeAndTest(c, tmp)
}

// storeAndTest appends, for the new fuel on the stack: local.tee tmp, global.set fuel; if tmp <=
// 0 { fuel = __yield(ReasonFuel) }.
func (w *rewriter) storeAndTest(c []byte, tmp uint32) []byte {
	c = append(c, 0x22) // local.tee tmp
	c = appendU32(c, tmp)
	c = append(c, 0x24) // global.set fuel
	c = appendU32(c, w.fuel)
	c = append(c, 0x20) // local.get tmp
	c = appendU32(c, tmp)
	c = append(c, 0x41, 0x00, 0x4C, 0x04, 0x40, 0x41, ReasonFuel, 0x10) // i32.const 0, i32.le_s, if, i32.const reason, call
	c = appendU32(c, w.yield)
	c = append(c, 0x24) // global.set fuel
	c = appendU32(c, w.fuel)
	return append(c, 0x0B) // end
}

// A loop's check keeps its call to __yield out of the loop. Every loop that contains no loop,
// with its own block type, is wrapped in a retry loop of the same type:
//
//	loop $retry (type)     ;; retryHead: if fuel <= 0 { fuel = __yield(ReasonFuel) + 1 }
//	  loop (type)          ;; loopCheck: fuel -= 1; if fuel <= 0 { br $retry }
//	    ...                ;; the original body, branches out of the loop relabelled + 1
//	  end
//	end
//
// Why: wazero's register allocator spills a value that is live across a call at every
// definition, and with an inline check every value carried around the loop is live across
// the (cold) call at its head, so it went to memory on every iteration. Measured (2026-12-03,
// interleaved with the inline check, medians): the Go guest's leaf256 guarded / bare wazero
// 2.20x -> 1.72x (its functions are one loop each, with no loop inside); a loop carrying five
// locals 5.6 -> 3.0 us per 1,000 iterations; BenchmarkChecks' sum1000 (two locals) unchanged.
// Not for a loop with loops inside: wrapped, its inner loops ran 20-40% slower (in wazero's
// code for the nest: an inner loop's own instructions are those of a lone wrapped loop; the
// cause is not pinned down), and its check runs once per run of its inner loops, so its call
// costs little. loopCheck's if block instead of a
// br_if: see there.
//
// It is valid for any block type: at the loop head the operand stack holds exactly the loop's
// parameters, which br_if $retry carries back (and leaves in place when not taken), and the
// retry head's if block touches nothing below it. Values below the loop stay below both.
// Locals keep their values across the re-entry. The check count is the inline one's: the loop
// head takes one unit of fuel per iteration and yields (through the retry head) when it hits
// zero; the retry head then adds 1 to the refill, which the loop head takes back on re-entry,
// so the iteration starts with exactly the refill, as after an inline check, and a refill of 1
// runs one iteration per yield (i32 arithmetic wraps: + 1 then - 1 gives back any refill). On
// entering the loop the retry head yields only if the fuel is already empty (the host emptied
// it to cut the call): the cut comes one check early, never late. Between the two heads the
// guest runs no original instruction, so the bound between checks is the inline check's.

// retryHead appends the head of a retry loop: if fuel <= 0 { fuel = __yield(ReasonFuel) + 1 },
// without the + 1 for a loop checked at its back edges (backEdge; see backEdgeCheck). Inside
// the if block, the locals of saves go to their spill globals before the call and come back
// after it (loopSaves: the numeric locals the loop names, up to maxSaves of a type).
//
// Why the saves: the retry loop moved the call out of the loop body, but a value carried
// around the loop is still live across the call at the retry head, which wazero then spills
// at every definition, in the loop too. Saved and restored, no value of a local the loop uses
// crosses the call: on the cold path the locals are new definitions, loaded from the globals,
// and the hot loop keeps its values in registers. The bits come back exactly (NaN payloads,
// -0). Only the locals the loop names: one it does not name is defined outside the loop, so
// crossing the call costs it one spill there; and the saves stay proportional to the loop's
// own size (every local of the function at every retry head let 2,000 empty loops make a module
// 850 times its input). A liveness analysis that saved the locals live at the loop head gave
// the leaf's hot loop the same code and measured no better (RATIONALE.md).
func (w *rewriter) retryHead(c []byte, backEdge bool, saves []save) []byte {
	c = append(c, 0x23) // global.get fuel
	c = appendU32(c, w.fuel)
	c = append(c, 0x41, 0x00, 0x4C, 0x04, 0x40) // i32.const 0, i32.le_s, if
	for _, sv := range saves {
		c = append(c, 0x20)
		c = appendU32(c, sv.local)
		c = append(c, 0x24)
		c = appendU32(c, sv.global)
	}
	c = append(c, 0x41, ReasonFuel, 0x10) // i32.const reason, call
	c = appendU32(c, w.yield)
	if !backEdge {
		c = append(c, 0x41, 0x01, 0x6A) // i32.const 1, i32.add
	}
	c = append(c, 0x24) // global.set fuel
	c = appendU32(c, w.fuel)
	for _, sv := range saves {
		c = append(c, 0x23)
		c = appendU32(c, sv.global)
		c = append(c, 0x21)
		c = appendU32(c, sv.local)
	}
	return append(c, 0x0B) // end
}

// A loop without parameters that no br_table names is checked at its back edges instead of its
// head, which is cheaper in wazero's code (measured 2026-12-03 on the Go guest's leaf256: a
// prototype, best of 5, guarded 986 -> 836 ns, bare wazero 441, no loop check at all 821; this
// form, interleaved with the head check, medians of 35, guarded/bare 1.74x -> 1.59x):
//
//	fuel -= 1              ;; entryDecrement
//	loop $retry            ;; retryHead: if fuel <= 0 { fuel = __yield(ReasonFuel) }
//	  loop $l
//	    ...
//	    fuel -= 1; if fuel <= 0 { br $retry }   ;; backEdgeCheck, before every br $l
//	    br $l
//	    ...
//	    if (cond) { fuel -= 1; if fuel <= 0 { br $retry } br $l }   ;; for br_if $l
//	  end
//	end
//
// Every arrival at the loop head passes exactly one check right before it, as with the check at
// the head: the entry (the decrement before the retry loop, the retry head's test) or the back
// edge it came through (the decrement and the branch to the retry head when it hits zero). The
// retry head adds nothing to the refill: the decrement was taken before it. So the check count
// is the inline check's for every refill, a cut host (fuel emptied) still yields on entry, and
// between the check and the loop head the guest runs no original instruction, so the loop head
// still starts a run at 0. A br_table cannot take a check on one of its targets only, and a
// loop's parameters are out of reach inside the if block: such loops keep the head check.

// entryDecrement appends fuel -= 1, before the retry loop of a loop checked at its back edges.
func (w *rewriter) entryDecrement(c []byte) []byte {
	c = append(c, 0x23) // global.get fuel
	c = appendU32(c, w.fuel)
	c = append(c, 0x41, 0x01, 0x6B, 0x24) // i32.const 1, i32.sub, global.set fuel
	return appendU32(c, w.fuel)
}

// backEdgeCheck appends the check before a branch back to a loop checked at its back edges:
// fuel -= 1; if fuel <= 0 { br retry }, retry being the retry loop's label where the check
// stands, outside the if block.
func (w *rewriter) backEdgeCheck(c []byte, tmp, retry uint32) []byte {
	c = append(c, 0x23) // global.get fuel
	c = appendU32(c, w.fuel)
	c = append(c, 0x41, 0x01, 0x6B, 0x22) // i32.const 1, i32.sub, local.tee tmp
	c = appendU32(c, tmp)
	c = append(c, 0x24) // global.set fuel
	c = appendU32(c, w.fuel)
	c = append(c, 0x20) // local.get tmp
	c = appendU32(c, tmp)
	c = append(c, 0x41, 0x00, 0x4C, 0x04, 0x40, 0x0C) // i32.const 0, i32.le_s, if, br
	c = appendU32(c, retry+1)
	return append(c, 0x0B) // end
}

// loopCheck appends the check at the head of a loop in its retry loop (label 1, just outside
// the loop): fuel -= 1; if fuel <= 0 { br $retry }. A loop without parameters gets the branch
// in an if block (if fuel <= 0 { br 2 }), which wazero compiles to one compare-and-jump; a
// br_if on the comparison costs a setcc and a test on top (measured: BenchmarkChecks' sum1000
// 20% slower). Inside the if the loop's parameters are out of reach, so a loop with
// parameters gets br_if 1, which carries them back.
func (w *rewriter) loopCheck(c []byte, tmp uint32, params bool) []byte {
	c = append(c, 0x23) // global.get fuel
	c = appendU32(c, w.fuel)
	c = append(c, 0x41, 0x01, 0x6B, 0x22) // i32.const 1, i32.sub, local.tee tmp
	c = appendU32(c, tmp)
	c = append(c, 0x24) // global.set fuel
	c = appendU32(c, w.fuel)
	c = append(c, 0x20) // local.get tmp
	c = appendU32(c, tmp)
	if params {
		return append(c, 0x41, 0x00, 0x4C, 0x0D, 0x01) // i32.const 0, i32.le_s, br_if 1
	}
	return append(c, 0x41, 0x00, 0x4C, 0x04, 0x40, 0x0C, 0x02, 0x0B) // i32.const 0, i32.le_s, if, br 2, end
}

// hasParams tells whether the block type bt (valid, see blockType) takes parameters.
func (w *rewriter) hasParams(bt []byte) bool {
	switch bt[0] {
	case 0x40, 0x7F, 0x7E, 0x7D, 0x7C, 0x7B, 0x70, 0x6F:
		return false
	}
	r := &wasmbin.Reader{B: bt}
	return w.types[r.S33()].params > 0
}

// stackEnter appends: stk -= weight; if stk < 0 { __yield(ReasonStack) } (which traps).
func (w *rewriter) stackEnter(c []byte, tmp uint32, weight int32) []byte {
	c = append(c, 0x23)
	c = appendU32(c, w.stk)
	c = append(c, 0x41)
	c = appendS32(c, weight)
	c = append(c, 0x6B, 0x22) // i32.sub, local.tee tmp
	c = appendU32(c, tmp)
	c = append(c, 0x24) // global.set
	c = appendU32(c, w.stk)
	c = append(c, 0x20) // local.get tmp
	c = appendU32(c, tmp)
	c = append(c, 0x41, 0x00, 0x48, 0x04, 0x40, 0x41, ReasonStack, 0x10) // i32.const 0, i32.lt_s, if, i32.const reason, call
	c = appendU32(c, w.yield)
	return append(c, 0x1A, 0x0B) // drop, end
}

// exit appends what runs as a function returns: stk += weight, then a fuel check (fc).
func (w *rewriter) exit(c []byte, weight int32, fc []byte) []byte {
	if weight == 0 { // a leaf: it took nothing
		return append(c, fc...)
	}
	c = append(c, 0x23)
	c = appendU32(c, w.stk)
	c = append(c, 0x41)
	c = appendS32(c, weight)
	c = append(c, 0x6A, 0x24) // i32.add, global.set
	c = appendU32(c, w.stk)
	return append(c, fc...)
}

// FrameWeight is what a call of a function with the given parameters, locals and body size
// takes from the stack budget: a fixed frame overhead, one unit per parameter and local, and
// one per 32 bytes of code for its operand stack and spills.
func FrameWeight(params, locals uint64, codeBytes int) int32 {
	w := 4 + params + locals + uint64(codeBytes)/32
	return int32(min(w, 1<<30))
}

func (w *rewriter) scanTypes(body []byte) error {
	r := &wasmbin.Reader{B: body}
	n := r.U32()
	for i := uint32(0); i < n && r.Err == nil; i++ {
		if form := r.Byte(); form != 0x60 && r.Err == nil {
			return fmt.Errorf("%w: type %d has form 0x%02x (only function types are supported)", ErrUnsupported, i, form)
		}
		var ft sigInfo
		ft.params = r.U32()
		for k := uint32(0); k < ft.params && r.Err == nil; k++ {
			if r.Pos < len(r.B) {
				ft.ptypes = append(ft.ptypes, r.B[r.Pos])
			}
			r.Valtype()
		}
		ft.nres = r.U32()
		start := r.Pos
		for k := uint32(0); k < ft.nres && r.Err == nil; k++ {
			r.Valtype()
		}
		if r.Err == nil {
			ft.results = body[start:r.Pos]
		}
		w.types = append(w.types, ft)
	}
	if r.Err != nil || !r.Done() {
		return fmt.Errorf("%w: type section: %v", ErrMalformed, orTrailing(r))
	}
	return nil
}

// scanImports counts imported functions and globals, checks their type indices, and refuses a
// module that already imports the yield function.
func (w *rewriter) scanImports(body []byte) error {
	r := &wasmbin.Reader{B: body}
	n := r.U32()
	for i := uint32(0); i < n && r.Err == nil; i++ {
		mod := r.Bytes(int(r.U32()))
		name := r.Bytes(int(r.U32()))
		if string(mod) == ImportModule && string(name) == YieldName {
			return fmt.Errorf("%w: the module imports %s.%s, a name reserved for the host", ErrMalformed, ImportModule, YieldName)
		}
		switch kind := r.Byte(); kind {
		case 0: // func: type index
			t := r.U32()
			if r.Err == nil && t >= uint32(len(w.types)) {
				return fmt.Errorf("%w: import %d: type index %d out of range (%d types)", ErrMalformed, i, t, len(w.types))
			}
			w.importTypes = append(w.importTypes, t)
			w.yield++
		case 1: // table: reftype, limits
			r.Valtype()
			r.Limits()
		case 2: // memory: limits
			r.Limits()
		case 3: // global: valtype, mutability
			r.Valtype()
			r.Byte()
			w.globals++
		case 4: // tag
			return fmt.Errorf("%w: import %d is a tag (exception handling)", ErrUnsupported, i)
		default:
			if r.Err == nil {
				return fmt.Errorf("%w: import %d has unknown kind %d", ErrMalformed, i, kind)
			}
		}
	}
	if r.Err != nil || !r.Done() {
		return fmt.Errorf("%w: import section: %v", ErrMalformed, orTrailing(r))
	}
	w.numFuncs = w.yield
	return nil
}

func (w *rewriter) scanFunctions(body []byte) error {
	r := &wasmbin.Reader{B: body}
	n := r.U32()
	for i := uint32(0); i < n && r.Err == nil; i++ {
		t := r.U32()
		if r.Err == nil && t >= uint32(len(w.types)) {
			return fmt.Errorf("%w: function %d: type index %d out of range (%d types)", ErrMalformed, i, t, len(w.types))
		}
		w.funcTypes = append(w.funcTypes, t)
	}
	if r.Err != nil || !r.Done() {
		return fmt.Errorf("%w: function section: %v", ErrMalformed, orTrailing(r))
	}
	return nil
}

// tables gives every defined table a maximum of at most MaxTableElems.
func (w *rewriter) tables(body []byte) ([]byte, error) {
	r := &wasmbin.Reader{B: body}
	n := r.U32()
	out := appendU32(nil, n)
	limit := uint64(w.opts.MaxTableElems)
	for i := uint32(0); i < n && r.Err == nil; i++ {
		start := r.Pos
		if r.Byte() == 0x40 && r.Err == nil {
			return nil, fmt.Errorf("%w: table %d has an initializer expression", ErrUnsupported, i)
		}
		r.Pos = start
		r.Valtype()
		out = append(out, body[start:r.Pos]...)
		flags := r.Byte()
		if flags > 1 && r.Err == nil {
			return nil, fmt.Errorf("%w: table %d has limits flags 0x%02x", ErrUnsupported, i, flags)
		}
		lo := r.U32()
		hi := uint64(1<<32 - 1)
		if flags == 1 {
			hi = uint64(r.U32())
		}
		if r.Err != nil {
			break
		}
		if uint64(lo) > limit {
			return nil, fmt.Errorf("%w: table %d declares %d elements, over the limit of %d", ErrMalformed, i, lo, limit)
		}
		out = append(out, 0x01)
		out = appendU32(out, lo)
		out = appendU32(out, uint32(min(hi, limit)))
	}
	if r.Err != nil || !r.Done() {
		return nil, fmt.Errorf("%w: table section: %v", ErrMalformed, orTrailing(r))
	}
	return out, nil
}

// globalSection renumbers ref.func in initializers and appends the fuel, the stack budget and
// the retry heads' spill globals (planSaves, starting at zero).
func (w *rewriter) globalSection(body []byte) ([]byte, error) {
	r := &wasmbin.Reader{B: body}
	n := r.U32()
	var nsp uint32
	for _, k := range w.spillN {
		nsp += k
	}
	out := appendU32(nil, n+2+nsp)
	for i := uint32(0); i < n && r.Err == nil; i++ {
		start := r.Pos
		r.Valtype()
		r.Byte()
		out = append(out, body[start:r.Pos]...)
		out = w.constExpr(out, r)
	}
	if r.Err != nil || !r.Done() {
		return nil, fmt.Errorf("%w: global section: %v", ErrMalformed, orTrailing(r))
	}
	out = append(out, 0x7F, 0x01, 0x41)
	out = appendS32(out, w.opts.Fuel)
	out = append(out, 0x0B, 0x7F, 0x01, 0x41)
	out = appendS32(out, w.opts.StackBudget)
	out = append(out, 0x0B)
	// A zero of every numeric type (numIdx order), as a mutable global's type and initializer.
	zeros := [4][]byte{
		{0x7F, 0x01, 0x41, 0x00, 0x0B},
		{0x7E, 0x01, 0x42, 0x00, 0x0B},
		{0x7D, 0x01, 0x43, 0, 0, 0, 0, 0x0B},
		{0x7C, 0x01, 0x44, 0, 0, 0, 0, 0, 0, 0, 0, 0x0B},
	}
	for k, z := range zeros {
		for range w.spillN[k] {
			out = append(out, z...)
		}
	}
	return out, nil
}

// exports renumbers function exports and appends the fuel's and the start function's exports.
func (w *rewriter) exports(body []byte) ([]byte, error) {
	r := &wasmbin.Reader{B: body}
	n := r.U32()
	extra := uint32(1)
	if w.hasStart {
		extra++
	}
	out := appendU32(nil, n+extra)
	for i := uint32(0); i < n && r.Err == nil; i++ {
		name := r.Bytes(int(r.U32()))
		kind := r.Byte()
		idx := r.U32()
		if string(name) == FuelName || string(name) == StartName {
			return nil, fmt.Errorf("%w: the module already exports %q, a name reserved for the host", ErrMalformed, name)
		}
		switch kind {
		case 0:
			idx = w.fn(idx)
		case 3:
			if idx >= w.globals && r.Err == nil {
				return nil, fmt.Errorf("%w: export %q: global %d out of range (%d globals)", ErrMalformed, name, idx, w.globals)
			}
		}
		out = appendName(out, string(name))
		out = append(out, kind)
		out = appendU32(out, idx)
	}
	if r.Err != nil || !r.Done() {
		return nil, fmt.Errorf("%w: export section: %v", ErrMalformed, orTrailing(r))
	}
	out = appendName(out, FuelName)
	out = append(out, 0x03)
	out = appendU32(out, w.fuel)
	if w.hasStart {
		out = appendName(out, StartName)
		out = append(out, 0x00)
		out = appendU32(out, w.fn(w.start))
	}
	return out, nil
}

func (w *rewriter) code(body []byte) ([]byte, error) {
	r := &wasmbin.Reader{B: body}
	n := r.U32()
	if r.Err != nil {
		return nil, fmt.Errorf("%w: code section: %v", ErrMalformed, r.Err)
	}
	if int(n) != len(w.funcTypes) {
		return nil, fmt.Errorf("%w: %d function bodies for %d functions", ErrMalformed, n, len(w.funcTypes))
	}
	// First every body is classified (which checks it can go without, what a call of it costs
	// its caller), then rewritten.
	bodies := r.Pos
	w.info = make([]bodyInfo, n)
	var tails []uint32
	tailIndirect := false
	for i := uint32(0); i < n && r.Err == nil; i++ {
		code := r.Bytes(int(r.U32()))
		if r.Err != nil {
			break
		}
		var ind bool
		w.info[i], tails, ind = scanBody(code, tails)
		tailIndirect = tailIndirect || ind
	}
	w.planSaves(body[bodies:], n)
	w.keepExit = make([]bool, n)
	for _, t := range tails {
		if t >= w.yield && t < w.numFuncs {
			w.info[t-w.yield].checkFree = false
			w.keepExit[t-w.yield] = true
		}
	}
	w.maxCost = 1
	for i := range w.info {
		if tailIndirect {
			w.info[i].checkFree = false
			w.keepExit[i] = true
		}
		w.maxCost = max(w.maxCost, w.info[i].cost())
	}
	r.Pos, r.Err = bodies, nil
	codes := make([][]byte, n)
	for i := range codes {
		codes[i] = r.Bytes(int(r.U32()))
		if r.Err != nil {
			return nil, fmt.Errorf("%w: function %d: %v", ErrMalformed, i, r.Err)
		}
	}
	if !r.Done() {
		return nil, fmt.Errorf("%w: code section: %d trailing bytes", ErrMalformed, len(body)-r.Pos)
	}

	// Callees first, so that a call counts what its callee's rewriting decided (the order
	// only matters for the exit checks: a callee not yet rewritten keeps its own).
	w.done = make([]bool, n)
	arena := make([]byte, 0, len(body)+len(body)/4)
	at := make([][2]int, n) // of every function, where its rewritten body is in arena
	fb := &funcBuf{}
	for _, i := range w.calleesFirst(codes) {
		ft := w.types[w.funcTypes[i]]
		fn, err := w.function(fb, codes[i], ft, w.info[i], i)
		if err != nil {
			return nil, fmt.Errorf("function %d: %w", w.yield+i, err)
		}
		// Its exit check goes if every path reaches its returns within MaxSuffix instructions
		// of a check (the rewriting measured it: the check is the last thing before the
		// return, a self-contained sequence, so cutting it out changes nothing else) and no
		// caller rewritten before it counted it with the check. Its callers, rewritten after,
		// count the suffix.
		if info := &w.info[i]; !info.checkFree && !info.tail && !w.keepExit[i] && w.exitMax <= MaxSuffix {
			info.exitFree, info.suffix = true, w.exitMax
			fn = cutExitChecks(fn, fb.exitAt, len(fb.fc))
		}
		w.done[i] = true
		at[i] = [2]int{len(arena), 0}
		arena = append(arena, fn...)
		at[i][1] = len(arena)
	}
	out := make([]byte, 0, len(arena)+5*int(n)+5)
	out = appendU32(out, n)
	for _, a := range at {
		out = appendU32(out, uint32(a[1]-a[0]))
		out = append(out, arena[a[0]:a[1]]...)
	}
	return out, nil
}

// loopForm selects the loop head checks: formAuto in production, the others for tests, which
// compare the forms (TestRetryLoopMatchesInline).
var loopForm = formAuto

// backEdges selects the check at the back edges of the loops it fits (backEdgeCheck): true in
// production, false for tests, which compare it with the check at the head.
var backEdges = true

const (
	formAuto   = iota // the retry form for a loop that contains no loop, the inline check otherwise
	formInline        // the inline check at every loop head
	formRetry         // the retry form for every loop
)

// funcBuf is reused across functions.
type funcBuf struct {
	body, out, fc []byte
	ctl           []ctl
	outer         []bool   // of every loop of the body, whether it contains a loop (loopFacts)
	tables        []bool   // of every loop of the body, whether a br_table names it (loopFacts)
	exitAt        []int    // where the exit fuel checks (fc) start in out
	types         []byte   // first byte of every local's type (localTypes)
	saves         []save   // of the retry head being written (loopSaves)
	used          []uint32 // the locals its loop touches (loopLocals)
}

// ctl is an open block, loop or if, with what the rewriter needs to bound the straight-line run
// since the last check along every path.
type ctl struct {
	loop, isIf, hasElse bool
	retry               bool // a loop in a retry loop
	backEdge            bool // a loop in a retry loop checked at its back edges (backEdgeCheck)
	ifCnt               int  // run length at the if, for the else branch and a missing else
	brMax               int  // longest run reaching the end through a branch; -1 if none
	// added counts the labels the rewriter added around this frame and the ones enclosing it:
	// one retry loop around every loop (loopCheck). A branch leaves the retry loops of the
	// loops it leaves: added of its own frame minus added of the frame it targets.
	added uint32
}

// function rewrites one body: the stack budget and a fuel check at entry, the original body
// wrapped in a block whose end (and every return) runs the exit (stack budget back, fuel
// check), a fuel check at every loop head and wherever a path would run more than MaxStraight
// instructions since the last check (a call counting what the callee runs before its first
// check, bodyInfo.cost), and a size-proportional charge before every bulk instruction. What
// info allows goes: the stack budget of a leaf, every check of a check-free function, the
// entry check of one with a prefix.
//
// self is the function's index among the defined ones. It leaves in w.exitMax the longest run
// since the last check at any of its returns, and in fb.exitAt where the fuel checks of its
// returns start in the result.
func (w *rewriter) function(fb *funcBuf, code []byte, ft sigInfo, info bodyInfo, self uint32) ([]byte, error) {
	r := &wasmbin.Reader{B: code}
	groups := r.U32()
	groupsEnd := r.Pos
	var locals uint64
	for g := uint32(0); g < groups && r.Err == nil; g++ {
		locals += uint64(r.U32())
		r.Valtype()
	}
	if r.Err != nil {
		return nil, fmt.Errorf("%w: locals: %v", ErrMalformed, r.Err)
	}
	nlocals := uint64(ft.params) + locals
	if nlocals >= 1<<32-1 {
		return nil, fmt.Errorf("%w: %d locals", ErrMalformed, nlocals)
	}
	tmp := uint32(nlocals) // the added i32 scratch local of the checks
	fb.types = localTypes(code, ft.ptypes, fb.types[:0])
	fc := w.fuelCheck(fb.fc[:0], tmp)
	fb.fc = fc
	weight := FrameWeight(uint64(ft.params), locals, len(code))
	localsHdr := code[:r.Pos]

	// What the function goes without (see bodyInfo): a leaf the stack budget, a check-free
	// function every check, one with a prefix its entry check.
	if info.leaf {
		weight = 0
	}
	exitFc := fc
	if info.checkFree {
		exitFc = nil
	}
	w.exitMax = 0
	fb.exitAt = fb.exitAt[:0]
	b := fb.body[:0]
	if !info.leaf {
		b = w.stackEnter(b, tmp, weight)
	}
	if !info.checkFree && info.prefix < 0 {
		b = append(b, fc...)
	}
	b = append(b, 0x02) // block with the function's results
	switch {
	case ft.nres == 0:
		b = append(b, 0x40)
	case ft.nres == 1:
		b = append(b, ft.results...)
	default:
		b = appendS33(b, int64(w.blockTypes[string(ft.results)]))
	}
	fb.ctl = append(fb.ctl[:0], ctl{brMax: -1})
	fb.outer, fb.tables = loopFacts(code, fb.outer[:0], fb.tables[:0])
	loopIdx := 0 // of the next loop, in fb.outer
	cnt := 0
	// target checks label l and bounds the run it carries to its frame; it returns the label
	// in the rewritten body, past the retry loops the branch leaves.
	target := func(l uint32) (uint32, error) {
		if uint64(l) >= uint64(len(fb.ctl)) {
			return 0, fmt.Errorf("%w: branch depth %d out of range (%d open blocks)", ErrMalformed, l, len(fb.ctl))
		}
		c := &fb.ctl[len(fb.ctl)-1-int(l)]
		if !c.loop {
			c.brMax = max(c.brMax, cnt)
		}
		return l + fb.ctl[len(fb.ctl)-1].added - c.added, nil
	}
	ended := false
	for !r.Done() {
		if ended {
			return nil, fmt.Errorf("%w: instructions after the body's end", ErrMalformed)
		}
		start := r.Pos
		op := r.Byte()
		cost, after := 1, -1
		switch op {
		case 0x10: // a call runs the callee's instructions before its first check
			save := r.Pos
			if idx := r.U32(); r.Err == nil && idx >= w.yield && idx < w.numFuncs {
				ci := w.info[idx-w.yield]
				cost = ci.cost()
				if ci.exitFree {
					// It checks on every path (at entry or at the loop head standing for it):
					// after it returns, the run is what it ran after its last check.
					after = 1 + ci.suffix
				}
				if !w.done[idx-w.yield] {
					w.keepExit[idx-w.yield] = true // counted with its exit check
				}
			}
			r.Pos = save
		case 0x11:
			// After it returns, the run is the caller's and a check-free callee's, or what a
			// callee without exit check ran after its last check (at most MaxSuffix).
			cost = w.maxCost
			after = -2
		}
		if cnt+cost > MaxStraight {
			b = append(b, fc...)
			cnt = 0
		}
		cnt += cost
		switch {
		case after >= 0:
			cnt = after
		case after == -2:
			cnt = max(cnt, 1+MaxSuffix)
		}
		var err error
		switch op {
		case 0x02, 0x04: // block, if
			if err := w.blockType(r); err != nil {
				return nil, err
			}
			b = append(b, code[start:r.Pos]...)
			fb.ctl = append(fb.ctl, ctl{isIf: op == 0x04, ifCnt: cnt, brMax: -1, added: fb.ctl[len(fb.ctl)-1].added})
			continue
		case 0x03: // loop: a check at the head of every iteration
			if err := w.blockType(r); err != nil {
				return nil, err
			}
			// A loop that contains no loop gets the check without the call (see loopCheck): it
			// runs in a retry loop of the same type, whose head yields. Another keeps the inline
			// check.
			added := fb.ctl[len(fb.ctl)-1].added
			retry := retryLoop(fb.outer, loopIdx)
			table := loopIdx >= len(fb.tables) || fb.tables[loopIdx]
			loopIdx++
			if !retry {
				b = append(b, code[start:r.Pos]...)
				b = append(b, fc...)
				fb.ctl = append(fb.ctl, ctl{loop: true, brMax: -1, added: added})
				cnt = 0
				continue
			}
			bt := code[start+1 : r.Pos]
			params := w.hasParams(bt)
			be := backEdges && !params && !table
			if be {
				b = w.entryDecrement(b)
			}
			b = append(b, 0x03)
			b = append(b, bt...)
			b = w.retryHead(b, be, w.loopSaves(fb, code, r.Pos))
			b = append(b, 0x03)
			b = append(b, bt...)
			if !be {
				b = w.loopCheck(b, tmp, params)
			}
			fb.ctl = append(fb.ctl, ctl{loop: true, retry: true, backEdge: be, brMax: -1, added: added + 1})
			cnt = 0
			continue
		case 0x05: // else
			c := &fb.ctl[len(fb.ctl)-1]
			if !c.isIf || c.hasElse {
				return nil, fmt.Errorf("%w: else without if", ErrMalformed)
			}
			c.hasElse = true
			c.brMax = max(c.brMax, cnt)
			cnt = c.ifCnt
			b = append(b, op)
		case 0x0B: // end
			c := fb.ctl[len(fb.ctl)-1]
			fb.ctl = fb.ctl[:len(fb.ctl)-1]
			if c.isIf && !c.hasElse {
				cnt = max(cnt, c.ifCnt)
			}
			if !c.loop {
				cnt = max(cnt, c.brMax)
			}
			if len(fb.ctl) == 0 { // the function's end: close the wrapper, run the exit
				w.exitMax = max(w.exitMax, cnt)
				b = append(b, 0x0B)
				b = w.exit(b, weight, exitFc)
				fb.exitAt = append(fb.exitAt, len(b)-len(exitFc))
				b = append(b, 0x0B)
				ended = true
				continue
			}
			b = append(b, op)
			if c.retry {
				b = append(b, 0x0B) // the retry loop's end
			}
		case 0x0C, 0x0D: // br, br_if
			l := r.U32()
			if r.Err == nil {
				be := uint64(l) < uint64(len(fb.ctl)) && fb.ctl[len(fb.ctl)-1-int(l)].backEdge
				if l, err = target(l); err == nil && be {
					// A back edge of a loop checked there: the check, then the branch; a
					// br_if's in an if block on its condition (the loop has no parameters,
					// so the branch carries no value, and a br_if not taken leaves none).
					// Inside the if block every label is one further.
					if op == 0x0D {
						b = append(b, 0x04, 0x40) // if
						l++
					}
					b = w.backEdgeCheck(b, tmp, l+1)
					b = append(b, 0x0C) // br
					b = appendU32(b, l)
					if op == 0x0D {
						b = append(b, 0x0B) // end
					} else {
						cnt = 0 // what follows is unreachable
					}
					continue
				}
			}
			b = append(b, op)
			b = appendU32(b, l)
			if op == 0x0C {
				cnt = 0 // what follows is unreachable
			}
			if err != nil {
				return nil, err
			}
			continue
		case 0x0E: // br_table
			n := r.U32()
			b = append(b, op)
			b = appendU32(b, n)
			for k := uint32(0); k <= n && r.Err == nil && err == nil; k++ {
				var l uint32
				if l, err = target(r.U32()); r.Err == nil {
					b = appendU32(b, l)
				}
			}
			if err != nil {
				return nil, err
			}
			cnt = 0
			continue
		case 0x0F: // return
			w.exitMax = max(w.exitMax, cnt)
			b = w.exit(b, weight, exitFc)
			fb.exitAt = append(fb.exitAt, len(b)-len(exitFc))
			b = append(b, op)
			cnt = 0
			continue
		case 0x00: // unreachable
			b = append(b, op)
			cnt = 0
			continue
		case 0x10, 0x12, 0xD2: // call, return_call, ref.func
			idx := r.U32()
			if op == 0x12 {
				b = w.exit(b, weight, exitFc)
			}
			b = append(b, op)
			b = appendU32(b, w.fn(idx))
			if op == 0x12 {
				cnt = 0
			}
		case 0x11, 0x13: // call_indirect, return_call_indirect
			t := r.U32()
			r.U32()
			if r.Err == nil && t >= uint32(len(w.types)) {
				return nil, fmt.Errorf("%w: call_indirect type %d out of range (%d types)", ErrMalformed, t, len(w.types))
			}
			if op == 0x13 {
				b = w.exit(b, weight, exitFc)
				cnt = 0
			}
			b = append(b, code[start:r.Pos]...)
		case 0x20, 0x21, 0x22: // local.get, local.set, local.tee
			if l := r.U32(); r.Err == nil && uint64(l) >= nlocals {
				return nil, fmt.Errorf("%w: local %d out of range (%d locals)", ErrMalformed, l, nlocals)
			}
			b = append(b, code[start:r.Pos]...)
		case 0x23, 0x24: // global.get, global.set
			if g := r.U32(); r.Err == nil && g >= w.globals {
				return nil, fmt.Errorf("%w: global %d out of range (%d globals)", ErrMalformed, g, w.globals)
			}
			b = append(b, code[start:r.Pos]...)
		case 0x06, 0x07, 0x08, 0x09, 0x18, 0x19, 0x1F:
			return nil, fmt.Errorf("%w: exception handling instruction 0x%02x", ErrUnsupported, op)
		case 0x14, 0x15:
			return nil, fmt.Errorf("%w: typed function reference instruction 0x%02x", ErrUnsupported, op)
		case 0xFC:
			save := r.Pos
			sub := r.U32()
			r.Pos = save
			r.PrefixFC()
			shift := uint32(0)
			switch sub {
			case 8, 10, 11: // memory.init, memory.copy, memory.fill
				shift = memChargeShift
			case 12, 14, 17: // table.init, table.copy, table.fill
				shift = tableChargeShift
			}
			if shift != 0 && r.Err == nil {
				b = w.chargeCheck(b, tmp, shift)
				cnt = 1
			}
			b = append(b, code[start:r.Pos]...)
		default:
			r.Immediates(op)
			b = append(b, code[start:r.Pos]...)
		}
		if r.Err != nil {
			return nil, fmt.Errorf("%w: instruction 0x%02x at offset %d: %v", ErrMalformed, op, start, r.Err)
		}
		if err != nil {
			return nil, err
		}
	}
	if r.Err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, r.Err)
	}
	if !ended {
		return nil, fmt.Errorf("%w: body does not end with end", ErrMalformed)
	}
	fb.body = b
	out := fb.out[:0]
	out = appendU32(out, groups+1)
	out = append(out, localsHdr[groupsEnd:]...)
	out = append(out, 0x01, 0x7F) // the scratch local: one i32
	for k := range fb.exitAt {
		fb.exitAt[k] += len(out)
	}
	out = append(out, b...)
	fb.out = out
	return out, nil
}

// blockType reads a block type and checks that a type index is in range.
func (w *rewriter) blockType(r *wasmbin.Reader) error {
	save := r.Pos
	switch c := r.Byte(); c {
	case 0x40, 0x7F, 0x7E, 0x7D, 0x7C, 0x7B, 0x70, 0x6F:
		return nil
	case 0x63, 0x64:
		return fmt.Errorf("%w: typed reference block type", ErrUnsupported)
	}
	r.Pos = save
	v := r.S33()
	if r.Err != nil {
		return fmt.Errorf("%w: block type: %v", ErrMalformed, r.Err)
	}
	if v < 0 || v >= int64(len(w.types)) {
		return fmt.Errorf("%w: block type %d out of range (%d types)", ErrMalformed, v, len(w.types))
	}
	return nil
}

func appendS33(b []byte, v int64) []byte {
	for {
		c := byte(v & 0x7F)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

func insertSection(secs []section, s section) []section {
	want := sectionOrder[s.id]
	for i, x := range secs {
		if o, ok := sectionOrder[x.id]; ok && o > want {
			return append(secs[:i], append([]section{s}, secs[i:]...)...)
		}
	}
	return append(secs, s)
}

func isDebugSection(body []byte) bool {
	r := &wasmbin.Reader{B: body}
	name := r.Bytes(int(r.U32()))
	return r.Err == nil && len(name) >= 7 && string(name[:7]) == ".debug_"
}

// appendToVector adds one encoded element to a section that is a vector.
func appendToVector(body, elem []byte) ([]byte, error) {
	r := &wasmbin.Reader{B: body}
	n := r.U32()
	if r.Err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, r.Err)
	}
	out := appendU32(nil, n+1)
	out = append(out, body[r.Pos:]...)
	return append(out, elem...), nil
}

func appendName(b []byte, s string) []byte {
	b = appendU32(b, uint32(len(s)))
	return append(b, s...)
}

func orTrailing(r *wasmbin.Reader) error {
	if r.Err != nil {
		return r.Err
	}
	return fmt.Errorf("%d trailing bytes", len(r.B)-r.Pos)
}

// elements renumbers the function indices of element segments.
func (w *rewriter) elements(body []byte) ([]byte, error) {
	r := &wasmbin.Reader{B: body}
	n := r.U32()
	out := appendU32(nil, n)
	for i := uint32(0); i < n && r.Err == nil; i++ {
		flags := r.U32()
		out = appendU32(out, flags)
		if flags > 7 {
			return nil, fmt.Errorf("%w: element segment %d: unknown flags %d", ErrMalformed, i, flags)
		}
		if flags&2 != 0 && flags&1 == 0 { // explicit table index
			out = appendU32(out, r.U32())
		}
		if flags&1 == 0 { // active: offset expression
			out = w.constExpr(out, r)
		}
		if flags&3 != 0 { // elemkind or reftype
			if flags&4 == 0 {
				out = append(out, r.Byte())
			} else {
				start := r.Pos
				r.Valtype()
				out = append(out, body[start:r.Pos]...)
			}
		}
		count := r.U32()
		out = appendU32(out, count)
		for k := uint32(0); k < count && r.Err == nil; k++ {
			if flags&4 == 0 {
				out = appendU32(out, w.fn(r.U32()))
			} else {
				out = w.constExpr(out, r)
			}
		}
	}
	if r.Err != nil || !r.Done() {
		return nil, fmt.Errorf("%w: element section: %v", ErrMalformed, orTrailing(r))
	}
	return out, nil
}

// constExpr copies a constant expression up to and including its end, renumbering ref.func.
func (w *rewriter) constExpr(out []byte, r *wasmbin.Reader) []byte {
	for r.Err == nil {
		start := r.Pos
		op := r.Byte()
		if op == 0xD2 {
			out = append(out, op)
			out = appendU32(out, w.fn(r.U32()))
			continue
		}
		r.Immediates(op)
		out = append(out, r.B[start:r.Pos]...)
		if op == 0x0B {
			break
		}
	}
	return out
}

// nameSection renumbers the function indices of the "name" custom section (function, local and
// label names), or returns nil for a name section it cannot read. Other custom sections are
// copied unchanged.
func (w *rewriter) nameSection(body []byte) ([]byte, error) {
	r := &wasmbin.Reader{B: body}
	name := r.Bytes(int(r.U32()))
	if r.Err != nil || string(name) != "name" {
		return body, nil
	}
	out := append([]byte(nil), body[:r.Pos]...)
	for !r.Done() {
		id := r.Byte()
		size := r.U32()
		sub := r.Bytes(int(size))
		if r.Err != nil {
			// A malformed name section is ignored by engines; drop it whole. Dropping only what
			// cannot be read would change what follows the last subsection, which wazero's
			// decoder reads past a module-name subsection's end.
			return nil, nil
		}
		if id >= 1 && id <= 3 {
			var ok bool
			if sub, ok = w.renumberNameMap(sub, id != 1); !ok {
				continue
			}
		}
		out = append(out, id)
		out = appendU32(out, uint32(len(sub)))
		out = append(out, sub...)
	}
	return out, nil
}

func (w *rewriter) renumberNameMap(sub []byte, indirect bool) ([]byte, bool) {
	r := &wasmbin.Reader{B: sub}
	n := r.U32()
	out := appendU32(nil, n)
	for i := uint32(0); i < n && r.Err == nil; i++ {
		out = appendU32(out, w.fn(r.U32()))
		if !indirect {
			out = appendName(out, string(r.Bytes(int(r.U32()))))
			continue
		}
		start := r.Pos
		m := r.U32()
		for k := uint32(0); k < m && r.Err == nil; k++ {
			r.U32()
			r.Bytes(int(r.U32()))
		}
		out = append(out, sub[start:r.Pos]...)
	}
	return out, r.Err == nil && r.Done()
}

// appendU32 and appendS32 encode immediates (wasmbin's LEB128 writers at the widths used here).
func appendU32(b []byte, v uint32) []byte { return wasmbin.AppendU64(b, uint64(v)) }
func appendS32(b []byte, v int32) []byte  { return wasmbin.AppendS64(b, int64(v)) }
