// Package budget checks a WebAssembly module against a compile budget before anything compiles
// it: how large it is, how many functions, how large a body, how many locals, how deep blocks
// nest, how much work its control flow and its locals across it cost the compiler's passes, how
// long its function types are, how many globals and exports it has, how large the declared
// tables and the data and element segments are.
//
// Why: wazero's compiler does work and keeps memory in proportion to these numbers, some of them
// worse than linearly (nesting costs about depth² per function; every declared local costs eight
// bytes for as long as the compiled module lives, in every function that declares it), and a
// declared table is allocated whole for every instance. A few hundred bytes of hostile module can
// otherwise take minutes of CPU or gigabytes of memory before the first instruction runs. The
// check is one linear pass over the bytes with no allocation proportional to the counts it reads
// (but for a stack of the open blocks, bounded by MaxNesting), so it is itself cheap on any input.
//
// Check does not validate the module (the compiler does); it refuses only what exceeds a limit
// or is too malformed to measure.
package budget

import (
	"errors"
	"fmt"
	"math"
	"math/bits"

	"github.com/wasmpod/wasmpod/runtime/internal/wasmbin"
)

// Limits is a compile budget. A zero field means "no limit" for that quantity.
type Limits struct {
	// MaxModuleBytes bounds the module's encoded size. Everything else the budget bounds grows
	// with it, and the loader holds the bytes several times over (the module, its instrumented
	// copy, the compiled code); a file read to load it is refused from its size, unread.
	MaxModuleBytes uint64
	// MaxFunctions bounds functions (imported and defined). Compile time and the compiled
	// module's memory grow with it.
	MaxFunctions uint64
	// MaxBodyBytes bounds one function body's encoded size.
	MaxBodyBytes uint64
	// MaxLocals bounds one function's locals (parameters included).
	MaxLocals uint64
	// MaxTotalLocals bounds the locals declared over all functions: the compiled module keeps
	// per-function state for each.
	MaxTotalLocals uint64
	// MaxNesting bounds how deep blocks (block, loop, if, try) nest in one function.
	MaxNesting uint64
	// The three work limits (MaxNestingWork, MaxBranchWork, MaxLocalWork) hold for every 4 MiB
	// of code (see forCode).
	//
	// MaxNestingWork bounds the compiler's work for nesting: the sum, over every block opened in
	// the module, of the depth it opens at, plus, for every function, the deepest nesting of the
	// module so far (the compiler resets block structures as large as the deepest function's
	// for every function after it: 100k functions after one 10k deep compiled for 4 s).
	MaxNestingWork uint64
	// MaxBranchWork bounds the compiler's work for control flow: its passes over the dominator
	// tree (immediate dominators, loop detection, the loop nesting forest) walk from every basic
	// block and every branch up the tree, often to the function's entry, and every
	// branch is checked against the target's earlier predecessors. So the work grows with the
	// square of how many conditionals follow one another outside a loop and of how many branches
	// go to one label: 40,000 `if`s in a row (200 KB) compiled for 45 s, 80,000 br_ifs to one
	// label (320 KB) for 108 s. Counted: for every basic block and every branch, the blocks that
	// dominate it; for every branch, the branches to its target before it.
	MaxBranchWork uint64
	// MaxLocalWork bounds the compiler's work for locals across control flow: a local read
	// after a merge of paths becomes a parameter of every block on the way back to its
	// definition, and eliminating those parameters took time growing faster than the number of
	// locals. A 50 KB function of 9,999 locals read after 2,000 ifs in a row compiled for 155 s
	// and allocated 4 GiB. Counted: for every function, the square of its locals (parameters
	// included) times its blocks.
	MaxLocalWork uint64
	// MaxTypeWork bounds the work of decoding the function types: every type costs
	// (40 + its parameters + its results)². The decoder builds a type's key one value at a time,
	// so a type costs the square of its length: one type of 100,000 parameters (100 KB) took
	// 15 s of CPU and allocated 14 GiB; and every type has a fixed cost besides (1M types of one
	// parameter, 4 MB: 2.4 s).
	MaxTypeWork uint64
	// MaxGlobals bounds the globals (imported and defined): each costs every instance a
	// global instance on the Go heap, outside the memory limit (1M globals, 5 MB: 0.9 s to
	// compile, 330 MiB allocated).
	MaxGlobals uint64
	// MaxExports bounds the exports: each costs a map entry in the compiled module and in
	// every instance.
	MaxExports uint64
	// MaxTableEntries bounds each table's size: its declared minimum, and its maximum when the
	// module can grow tables (contains table.grow). Every instance allocates its tables whole.
	MaxTableEntries uint64
	// MaxDataBytes bounds the bytes of all data segments together.
	MaxDataBytes uint64
	// MaxElementEntries bounds the entries of all element segments together.
	MaxElementEntries uint64
	// MaxSegments bounds the number of data and of element segments.
	MaxSegments uint64
}

// workCodeUnit is the code that the work limits (MaxNestingWork, MaxBranchWork, MaxLocalWork)
// are set for: a code section larger than that gets them in proportion (forCode).
const workCodeUnit = 4 << 20

// forCode returns l with its work limits scaled to a code section of codeBytes: the limits hold
// for up to workCodeUnit bytes of code and grow with every further workCodeUnit. The compiler's
// work grows with the code even where it is linear, so a fixed limit, 3-15x above the needs of
// a 3 MB Go guest, would refuse a real 40 MB one (a 10.6 MB Go command needs 5.2 M units of
// branch work and 14.7 M of nesting work); scaled, every module may cost the compiler about as
// much per byte of code as a small one, and a hostile one no more per byte than that.
func (l Limits) forCode(codeBytes uint64) Limits {
	k := max(1, codeBytes/workCodeUnit)
	scale := func(v uint64) uint64 {
		if v > math.MaxUint64/k {
			return math.MaxUint64
		}
		return v * k
	}
	l.MaxNestingWork, l.MaxBranchWork, l.MaxLocalWork = scale(l.MaxNestingWork), scale(l.MaxBranchWork), scale(l.MaxLocalWork)
	return l
}

// Default returns the budget every untrusted module is checked against. Each default is far
// above what the real Go, Rust, C and AssemblyScript guests of this repository use (see
// TestRealGuestsFitTheBudget for their figures) and low enough that a module at every limit at
// once still compiles in well under a second of CPU and a few tens of MiB (TestWorstCaseBounded).
func Default() Limits {
	return Limits{
		// 64 MiB: the largest wasm upload the admin API takes (MaxAdminBody), so a module a pod
		// file names can be replaced by an upload; our largest Go guest is ~10 MB, and a 40 MB Go
		// guest with its debug info fits.
		MaxModuleBytes: 64 << 20,
		// 100k: a large Go guest (the Extism PDK, fmt, encoding/json) defines ~5k functions.
		MaxFunctions: 100_000,
		// 4 MiB: generated code (big init functions, table-driven parsers) stays far below.
		MaxBodyBytes: 4 << 20,
		// 10k per function, 1M in all: real guests use at most a few hundred in one function.
		MaxLocals:      10_000,
		MaxTotalLocals: 1_000_000,
		// 10k deep: Go's backend nests a block per resumption point (549 in the largest function
		// of our Go guests); a switch of 1,000 cases compiles to 1,000 nested blocks.
		MaxNesting: 10_000,
		// 64M: about half a second of compiler work for nesting (one function at MaxNesting
		// needs 50M); our largest Go guest needs 4.2M.
		MaxNestingWork: 64_000_000,
		// 16M: about half a second of compiler work (80k branches to one label compiled for
		// 108 s before the limit); our largest guest needs 1.4M.
		MaxBranchWork: 16_000_000,
		// 500M: about half a second (1,000 locals across 250 ifs); our largest guest needs 10M.
		MaxLocalWork: 500_000_000,
		// 16M: about 25 ms (one type of 3,900 parameters, or 10,000 small types); our largest
		// guest needs 40k (21 types of at most 10 values).
		MaxTypeWork: 16_000_000,
		// 10k globals and exports: our guests have at most 18 globals and 15 exports.
		MaxGlobals: 10_000,
		MaxExports: 10_000,
		// 1M entries: 8 MiB per instance; Go guests declare a table of a few thousand functions.
		MaxTableEntries: 1 << 20,
		// 64 MiB of data segments: all of it is copied into every instance's memory anyway.
		MaxDataBytes: 64 << 20,
		// 1M element entries: every one is written into an instance's table.
		MaxElementEntries: 1 << 20,
		// 1M segments of each kind: Go emits one data segment per symbol (39k in a 3.6 MB guest).
		MaxSegments: 1_000_000,
	}
}

// ErrExceeded is wrapped by every *Error.
var ErrExceeded = errors.New("compile budget exceeded")

// ErrMalformed: the module is too malformed to measure.
var ErrMalformed = errors.New("malformed wasm")

// Error says which limit a module exceeds and where.
type Error struct {
	Limit string // the Limits field name, e.g. "MaxNesting"
	Where string // e.g. "function 12", "table 0"; empty for module-wide limits
	Value uint64 // what the module has (at least; counting stops at the limit)
	Max   uint64
}

func (e *Error) Error() string {
	if e.Limit == "MaxModuleBytes" {
		return fmt.Sprintf("%v: module of %d bytes (limit %s=%d)", ErrExceeded, e.Value, e.Limit, e.Max)
	}
	where := "module"
	if e.Where != "" {
		where = e.Where
	}
	return fmt.Sprintf("%v: %s has %d %s (limit %s=%d)", ErrExceeded, where, e.Value, what[e.Limit], e.Limit, e.Max)
}

func (e *Error) Unwrap() error { return ErrExceeded }

var what = map[string]string{
	"MaxModuleBytes":    "bytes",
	"MaxFunctions":      "functions",
	"MaxBodyBytes":      "bytes of body",
	"MaxLocals":         "locals",
	"MaxTotalLocals":    "locals over all functions",
	"MaxNesting":        "levels of nested blocks",
	"MaxNestingWork":    "units of nesting work (the depth at every block, and the deepest nesting so far at every function)",
	"MaxBranchWork":     "units of branch work (for every block and branch, the blocks dominating it; for every branch, the earlier branches to its target)",
	"MaxTypeWork":       "units of type work ((40 + parameters + results)² for every function type)",
	"MaxGlobals":        "globals",
	"MaxExports":        "exports",
	"MaxLocalWork":      "units of local work (the square of a function's locals times its blocks, over all functions)",
	"MaxTableEntries":   "table entries",
	"MaxDataBytes":      "bytes of data segments",
	"MaxElementEntries": "element segment entries",
	"MaxSegments":       "segments",
}

// Stats are what Check measured. Fields are maxima (per function or per table) or totals.
type Stats struct {
	Functions      uint64
	MaxBodyBytes   uint64
	MaxLocals      uint64
	TotalLocals    uint64
	MaxNesting     uint64
	NestingWork    uint64
	BranchWork     uint64 // see Limits.MaxBranchWork
	LocalWork      uint64 // see Limits.MaxLocalWork
	Types          uint64
	MaxTypeArity   uint64 // parameters + results of the longest function type
	TypeWork       uint64 // see Limits.MaxTypeWork
	Globals        uint64
	Exports        uint64
	MaxTable       uint64 // largest effective table size (entries)
	TableEntries   uint64 // sum of the effective sizes of all tables
	TableGrow      bool   // the code contains table.grow
	DataBytes      uint64
	ElementEntries uint64
	DataSegments   uint64
	ElemSegments   uint64
	MemoryMinPages uint64 // the declared minimum of the (first) memory, defined or imported
}

const (
	secType     = 1
	secImport   = 2
	secFunction = 3
	secTable    = 4
	secMemory   = 5
	secGlobal   = 6
	secExport   = 7
	secElement  = 9
	secCode     = 10
	secData     = 11
)

// Check measures wasm and returns the first limit it exceeds as an *Error (MaxModuleBytes before
// anything else), or an error wrapping ErrMalformed. It returns the figures it measured either way.
func Check(wasm []byte, l Limits) (Stats, error) { return CheckCapped(wasm, l, 0) }

// CheckCapped is Check for a module whose tables the loader caps at growCap entries (the runtime's
// instrumentation gives every defined table of a guarded module a maximum of at most that): a
// table.grow cannot take a table past it, so a growable table counts as at most growCap entries.
// growCap 0 means no cap (the declared maximum, or 2^32-1, bounds the growth).
func CheckCapped(wasm []byte, l Limits, growCap uint64) (Stats, error) {
	var st Stats
	if l.MaxModuleBytes != 0 && uint64(len(wasm)) > l.MaxModuleBytes {
		return st, &Error{Limit: "MaxModuleBytes", Value: uint64(len(wasm)), Max: l.MaxModuleBytes}
	}
	if len(wasm) < 8 || string(wasm[:4]) != "\x00asm" {
		return st, fmt.Errorf("%w: no wasm magic number", ErrMalformed)
	}
	over := func(limit, where string, v, max uint64) error {
		if max != 0 && v > max {
			return &Error{Limit: limit, Where: where, Value: v, Max: max}
		}
		return nil
	}
	// Tables are checked after the code, once it is known whether they can grow.
	type table struct {
		min, max uint64
		hasMax   bool
	}
	var tables []table
	var params []uint64 // parameter count of each type
	var funcTypes []uint32
	var importedFuncs uint64
	var frames []frame // checkFunction's control stack, reused

	r := &wasmbin.Reader{B: wasm, Pos: 8}
	for !r.Done() {
		id := r.Byte()
		body := r.Bytes(int(r.U32()))
		if r.Err != nil {
			return st, fmt.Errorf("%w: section %d: %v", ErrMalformed, id, r.Err)
		}
		sr := &wasmbin.Reader{B: body}
		switch id {
		case secType:
			n := sr.Count(len(body))
			for i := uint64(0); i < n && sr.Err == nil; i++ {
				if f := sr.Byte(); f != 0x60 {
					// Not a plain function type (GC proposal shapes): wazero refuses it anyway.
					return st, fmt.Errorf("%w: type %d: form 0x%02x", ErrMalformed, i, f)
				}
				np := sr.Count(len(body))
				for j := uint64(0); j < np && sr.Err == nil; j++ {
					sr.Valtype()
				}
				nr := sr.Count(len(body))
				for j := uint64(0); j < nr && sr.Err == nil; j++ {
					sr.Valtype()
				}
				params = append(params, np)
				st.Types++
				st.MaxTypeArity = max(st.MaxTypeArity, np+nr)
				st.TypeWork += (40 + np + nr) * (40 + np + nr)
				if err := over("MaxTypeWork", "", st.TypeWork, l.MaxTypeWork); err != nil {
					return st, err
				}
			}
		case secImport:
			n := sr.Count(len(body))
			for i := uint64(0); i < n && sr.Err == nil; i++ {
				sr.Bytes(int(sr.U32())) // module
				sr.Bytes(int(sr.U32())) // name
				switch k := sr.Byte(); k {
				case 0x00:
					sr.U32()
					importedFuncs++
				case 0x01:
					sr.Valtype()
					mn, mx, has := sr.Limits()
					tables = append(tables, table{mn, mx, has})
				case 0x02:
					mn, _, _ := sr.Limits()
					st.MemoryMinPages = max(st.MemoryMinPages, mn)
				case 0x03:
					sr.Valtype()
					sr.Byte()
					st.Globals++
				case 0x04:
					sr.Byte()
					sr.U32()
				default:
					sr.Fail(fmt.Errorf("import %d: unknown kind 0x%02x", i, k))
				}
			}
		case secFunction:
			n := sr.Count(len(body))
			if err := over("MaxFunctions", "", importedFuncs+n, l.MaxFunctions); err != nil {
				return st, err
			}
			funcTypes = make([]uint32, 0, n)
			for i := uint64(0); i < n && sr.Err == nil; i++ {
				funcTypes = append(funcTypes, sr.U32())
			}
		case secTable:
			n := sr.Count(len(body))
			for i := uint64(0); i < n && sr.Err == nil; i++ {
				if sr.Peek() == 0x40 { // table with an initializer expression
					sr.Byte()
					sr.Byte()
					sr.Valtype()
					mn, mx, has := sr.Limits()
					tables = append(tables, table{mn, mx, has})
					sr.ConstExpr()
					continue
				}
				sr.Valtype()
				mn, mx, has := sr.Limits()
				tables = append(tables, table{mn, mx, has})
			}
		case secMemory:
			n := sr.Count(len(body))
			for i := uint64(0); i < n && sr.Err == nil; i++ {
				mn, _, _ := sr.Limits()
				st.MemoryMinPages = max(st.MemoryMinPages, mn)
			}
		case secGlobal:
			n := sr.Count(len(body))
			st.Globals += n
			if err := over("MaxGlobals", "", st.Globals, l.MaxGlobals); err != nil {
				return st, err
			}
		case secExport:
			n := sr.Count(len(body))
			st.Exports += n
			if err := over("MaxExports", "", st.Exports, l.MaxExports); err != nil {
				return st, err
			}
		case secElement:
			n := sr.Count(len(body))
			st.ElemSegments = n
			if err := over("MaxSegments", "element section", n, l.MaxSegments); err != nil {
				return st, err
			}
			for i := uint64(0); i < n && sr.Err == nil; i++ {
				k := sr.ElemSegment()
				st.ElementEntries += k
				if err := over("MaxElementEntries", "", st.ElementEntries, l.MaxElementEntries); err != nil {
					return st, err
				}
			}
		case secData:
			n := sr.Count(len(body))
			st.DataSegments = n
			if err := over("MaxSegments", "data section", n, l.MaxSegments); err != nil {
				return st, err
			}
			for i := uint64(0); i < n && sr.Err == nil; i++ {
				switch f := sr.U32(); f {
				case 0:
					sr.ConstExpr()
				case 1:
				case 2:
					sr.U32()
					sr.ConstExpr()
				default:
					sr.Fail(fmt.Errorf("data segment %d: unknown flags %d", i, f))
				}
				k := sr.U32()
				sr.Bytes(int(k))
				st.DataBytes += uint64(k)
				if err := over("MaxDataBytes", "", st.DataBytes, l.MaxDataBytes); err != nil {
					return st, err
				}
			}
		case secCode:
			n := sr.Count(len(body))
			l := l.forCode(uint64(len(body)))
			for i := uint64(0); i < n && sr.Err == nil; i++ {
				size := sr.U32()
				code := sr.Bytes(int(size))
				if sr.Err != nil {
					break
				}
				fn := importedFuncs + i
				where := fmt.Sprintf("function %d", fn)
				if err := over("MaxBodyBytes", where, uint64(size), l.MaxBodyBytes); err != nil {
					return st, err
				}
				st.MaxBodyBytes = max(st.MaxBodyBytes, uint64(size))
				var np uint64
				if i < uint64(len(funcTypes)) && uint64(funcTypes[i]) < uint64(len(params)) {
					np = params[funcTypes[i]]
				}
				if err := checkFunction(code, np, l, &st, &frames); err != nil {
					var be *Error
					if errors.As(err, &be) {
						if be.Limit == "MaxLocals" || be.Limit == "MaxNesting" {
							be.Where = where
						}
						return st, be
					}
					return st, fmt.Errorf("%w: %s: %v", ErrMalformed, where, err)
				}
			}
		}
		if sr.Err != nil {
			return st, fmt.Errorf("%w: section %d: %v", ErrMalformed, id, sr.Err)
		}
	}
	st.Functions = importedFuncs + uint64(len(funcTypes))
	if err := over("MaxFunctions", "", st.Functions, l.MaxFunctions); err != nil {
		return st, err
	}
	if err := over("MaxGlobals", "", st.Globals, l.MaxGlobals); err != nil {
		return st, err
	}
	for i, t := range tables {
		size := t.min
		if st.TableGrow {
			size = max(t.min, 1<<32-1)
			if t.hasMax {
				size = t.max
			}
			if growCap != 0 && size > growCap {
				size = max(t.min, growCap)
			}
		}
		st.MaxTable = max(st.MaxTable, size)
		st.TableEntries += size
		where := fmt.Sprintf("table %d", i)
		if st.TableGrow && size > t.min {
			where += " (grown to its maximum by table.grow)"
		}
		if err := over("MaxTableEntries", where, size, l.MaxTableEntries); err != nil {
			return st, err
		}
	}
	return st, nil
}

// frame is an open block (or the function itself) as branch work counts it. Blocks are counted
// along the current path of the dominator tree: dsum is the number of blocks that dominate the
// current one, seq how many of them the frame added directly (a closed inner frame adds one:
// the block after its end), edges the branches to its label so far.
type frame struct {
	seq, edges uint64
	loop       bool
}

// loopWeight is what a loop's blocks (its header, the block after it) count for each block
// dominating them, against 1 for any other block: the instrumentation wraps every loop in a retry
// loop with a fuel check, and the compiler's dominator passes take several rounds over loops.
// 2,828 empty loops in a row (8.5 KB) counted like ifs compiled for 5.2 s.
const loopWeight = 16

// checkFunction measures one body: locals, nesting and branch work, and notes table.grow.
func checkFunction(code []byte, params uint64, l Limits, st *Stats, stack *[]frame) error {
	r := &wasmbin.Reader{B: code}
	groups := r.Count(len(code))
	locals := params
	for g := uint64(0); g < groups && r.Err == nil; g++ {
		locals += uint64(r.U32())
		r.Valtype()
		if l.MaxLocals != 0 && locals > l.MaxLocals {
			return &Error{Limit: "MaxLocals", Value: locals, Max: l.MaxLocals}
		}
	}
	if r.Err != nil {
		return fmt.Errorf("locals: %v", r.Err)
	}
	st.MaxLocals = max(st.MaxLocals, locals)
	st.TotalLocals += locals
	if l.MaxTotalLocals != 0 && st.TotalLocals > l.MaxTotalLocals {
		return &Error{Limit: "MaxTotalLocals", Value: st.TotalLocals, Max: l.MaxTotalLocals}
	}
	// Every function costs the compiler the deepest nesting seen so far (see MaxNestingWork).
	st.NestingWork += st.MaxNesting
	if l.MaxNestingWork != 0 && st.NestingWork > l.MaxNestingWork {
		return &Error{Limit: "MaxNestingWork", Value: st.NestingWork, Max: l.MaxNestingWork}
	}
	var blocks uint64 // the function's basic blocks (splits), for MaxLocalWork
	frames := append((*stack)[:0], frame{})
	defer func() { *stack = frames[:0] }()
	var dsum uint64
	// split: a new basic block, dominated by the current one. The compiler's passes walk from
	// it up the dominator tree (to its loop header, or to the entry when it heads no loop).
	split := func(weight uint64) {
		blocks++
		st.BranchWork += weight * dsum
		frames[len(frames)-1].seq++
		dsum++
	}
	// edge: a branch to label lab: the passes walk from it up the dominator tree (to the
	// target, or to the entry when it is a forward branch), and the target's earlier
	// predecessors are each compared with it.
	edge := func(lab uint64) {
		if lab >= uint64(len(frames)) {
			return // no such label: the compiler refuses the module
		}
		f := &frames[uint64(len(frames))-1-lab]
		st.BranchWork += dsum + f.edges
		f.edges++
	}
	for !r.Done() {
		op := r.Byte()
		switch op {
		case 0x02, 0x03, 0x04, 0x06, 0x1F: // block, loop, if, try, try_table
			depth := uint64(len(frames))
			st.NestingWork += depth
			st.MaxNesting = max(st.MaxNesting, depth)
			if l.MaxNesting != 0 && depth > l.MaxNesting {
				return &Error{Limit: "MaxNesting", Value: depth, Max: l.MaxNesting}
			}
			if l.MaxNestingWork != 0 && st.NestingWork > l.MaxNestingWork {
				return &Error{Limit: "MaxNestingWork", Value: st.NestingWork, Max: l.MaxNestingWork}
			}
			if op == 0x03 {
				split(loopWeight) // the loop header
			}
			f := frame{loop: op == 0x03}
			if op == 0x1F {
				// try_table's catch clauses branch to labels outside it.
				save := r.Pos
				r.Leb(5)
				n := r.Count(len(code) - r.Pos)
				for i := uint64(0); i < n && r.Err == nil; i++ {
					switch r.Byte() {
					case 0x00, 0x01:
						r.U32()
						edge(uint64(r.U32()))
					default:
						edge(uint64(r.U32()))
					}
				}
				r.Pos = save
			}
			frames = append(frames, f)
			if op == 0x04 {
				split(1) // the then block
			}
		case 0x05: // else: a block dominated by the if's, not by the then branch
			top := &frames[len(frames)-1]
			dsum -= top.seq
			top.seq = 0
			split(1)
		case 0x0B: // end
			if len(frames) > 1 {
				f := frames[len(frames)-1]
				frames = frames[:len(frames)-1]
				dsum -= f.seq
				w := uint64(1)
				if f.loop {
					w = loopWeight
				}
				split(w) // the block after it
			}
		case 0x0C, 0x0D: // br, br_if
			save := r.Pos
			edge(uint64(r.U32()))
			r.Pos = save
			split(1)
		case 0x0E: // br_table: a block per entry (dominated by this one), each a branch
			save := r.Pos
			n := r.Count(len(code) - r.Pos)
			for i := uint64(0); i <= n && r.Err == nil; i++ {
				edge(uint64(r.U32()))
				st.BranchWork += dsum + 1
			}
			r.Pos = save
			split(1)
		case 0x00, 0x0F: // unreachable, return
			split(1)
		case 0xFC:
			// Peek the sub-opcode for table.grow (15) without consuming it.
			save := r.Pos
			if r.U32() == 15 {
				st.TableGrow = true
			}
			r.Pos = save
		}
		if l.MaxBranchWork != 0 && st.BranchWork > l.MaxBranchWork {
			return &Error{Limit: "MaxBranchWork", Value: st.BranchWork, Max: l.MaxBranchWork}
		}
		if lw := addSat(st.LocalWork, mulSat(mulSat(locals, locals), blocks)); l.MaxLocalWork != 0 && lw > l.MaxLocalWork {
			return &Error{Limit: "MaxLocalWork", Value: lw, Max: l.MaxLocalWork}
		}
		r.Immediates(op)
		if r.Err != nil {
			return fmt.Errorf("instruction 0x%02x: %v", op, r.Err)
		}
	}
	st.LocalWork = addSat(st.LocalWork, mulSat(mulSat(locals, locals), blocks))
	return nil
}

// mulSat and addSat saturate at the largest uint64 (locals are unbounded without MaxLocals).
func mulSat(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	if hi != 0 {
		return math.MaxUint64
	}
	return lo
}

func addSat(a, b uint64) uint64 {
	s, carry := bits.Add64(a, b, 0)
	if carry != 0 {
		return math.MaxUint64
	}
	return s
}
