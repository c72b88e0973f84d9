// Package budget checks a WebAssembly module against a compile budget before anything compiles
// it: how many functions, how large a body, how many locals, how deep blocks nest, how large the
// declared tables and the data and element segments are.
//
// Why: wazero's compiler does work and keeps memory in proportion to these numbers, some of them
// worse than linearly (nesting costs about depth² per function; every declared local costs eight
// bytes for as long as the compiled module lives, in every function that declares it), and a
// declared table is allocated whole for every instance. A few hundred bytes of hostile module can
// otherwise take minutes of CPU or gigabytes of memory before the first instruction runs. The
// check is one linear pass over the bytes with no allocation proportional to the counts it reads,
// so it is itself cheap on any input.
//
// Check does not validate the module (the compiler does); it refuses only what exceeds a limit
// or is too malformed to measure.
package budget

import (
	"errors"
	"fmt"
	"github.com/wasmpod/wasmpod/runtime/internal/wasmbin"
)

// Limits is a compile budget. A zero field means "no limit" for that quantity.
type Limits struct {
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
	// MaxNestingWork bounds the compiler's work for nesting: the sum, over every block opened in
	// the module, of the depth it opens at, plus, for every function, the deepest nesting of the
	// module so far (the compiler resets block structures as large as the deepest function's
	// for every function after it: 100k functions after one 10k deep compiled for 4 s).
	MaxNestingWork uint64
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

// Default returns the budget every untrusted module is checked against. Each default is far
// above what the real Go, Rust, C and AssemblyScript guests of this repository use (see
// TestRealGuestsFitTheBudget for their figures) and low enough that a module at every limit at
// once still compiles in well under a second of CPU and a few tens of MiB (TestWorstCaseBounded).
func Default() Limits {
	return Limits{
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
	where := "module"
	if e.Where != "" {
		where = e.Where
	}
	return fmt.Sprintf("%v: %s has %d %s (limit %s=%d)", ErrExceeded, where, e.Value, what[e.Limit], e.Limit, e.Max)
}

func (e *Error) Unwrap() error { return ErrExceeded }

var what = map[string]string{
	"MaxFunctions":      "functions",
	"MaxBodyBytes":      "bytes of body",
	"MaxLocals":         "locals",
	"MaxTotalLocals":    "locals over all functions",
	"MaxNesting":        "levels of nested blocks",
	"MaxNestingWork":    "units of nesting work (the depth at every block, and the deepest nesting so far at every function)",
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
	secElement  = 9
	secCode     = 10
	secData     = 11
)

// Check measures wasm and returns the first limit it exceeds as an *Error, or an error wrapping
// ErrMalformed. It returns the figures it measured either way.
func Check(wasm []byte, l Limits) (Stats, error) { return CheckCapped(wasm, l, 0) }

// CheckCapped is Check for a module whose tables the loader caps at growCap entries (the runtime's
// instrumentation gives every defined table of a guarded module a maximum of at most that): a
// table.grow cannot take a table past it, so a growable table counts as at most growCap entries.
// growCap 0 means no cap (the declared maximum, or 2^32-1, bounds the growth).
func CheckCapped(wasm []byte, l Limits, growCap uint64) (Stats, error) {
	var st Stats
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
				if err := checkFunction(code, np, l, &st); err != nil {
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

// checkFunction measures one body: locals and nesting, and notes table.grow.
func checkFunction(code []byte, params uint64, l Limits, st *Stats) error {
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
	var depth uint64
	for !r.Done() {
		op := r.Byte()
		switch op {
		case 0x02, 0x03, 0x04, 0x06, 0x1F: // block, loop, if, try, try_table
			depth++
			st.NestingWork += depth
			st.MaxNesting = max(st.MaxNesting, depth)
			if l.MaxNesting != 0 && depth > l.MaxNesting {
				return &Error{Limit: "MaxNesting", Value: depth, Max: l.MaxNesting}
			}
			if l.MaxNestingWork != 0 && st.NestingWork > l.MaxNestingWork {
				return &Error{Limit: "MaxNestingWork", Value: st.NestingWork, Max: l.MaxNestingWork}
			}
		case 0x0B: // end
			if depth > 0 {
				depth--
			}
		case 0xFC:
			// Peek the sub-opcode for table.grow (15) without consuming it.
			save := r.Pos
			if r.U32() == 15 {
				st.TableGrow = true
			}
			r.Pos = save
		}
		r.Immediates(op)
		if r.Err != nil {
			return fmt.Errorf("instruction 0x%02x: %v", op, r.Err)
		}
	}
	return nil
}
