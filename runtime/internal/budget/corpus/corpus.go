// Package corpus generates hostile WebAssembly modules that stress the compiler rather than the
// runtime: deep block nesting, functions with very many locals, huge declared tables and data
// segments, many functions. Tests use them to show the compile budget (package budget) refuses
// them quickly and that what it lets through compiles in bounded time and memory.
//
// Every generator returns a module that is valid WebAssembly (the compiler would accept it), so a
// refusal is the budget's doing, not a decoding error.
package corpus

import "github.com/wasmpod/wasmpod/runtime/internal/wasmbin"

// Nested returns a module with one exported function "f" whose body is depth nested blocks
// (block block ... end end). depth 1,000,000 is about 3 MB.
func Nested(depth int) []byte {
	body := make([]byte, 0, 3*depth+4)
	body = append(body, 0) // no locals
	for range depth {
		body = append(body, 0x02, 0x40) // block (empty type)
	}
	for range depth {
		body = append(body, 0x0B)
	}
	body = append(body, 0x0B)
	return oneFunc(body)
}

// NestedFuncs returns a module with n functions, each depth nested blocks deep.
func NestedFuncs(n, depth int) []byte {
	body := make([]byte, 0, 3*depth+2)
	body = append(body, 0)
	for range depth {
		body = append(body, 0x02, 0x40)
	}
	for range depth {
		body = append(body, 0x0B)
	}
	body = append(body, 0x0B)
	return manyFuncs(n, body)
}

// Locals returns a module with fns functions, each declaring locals i64 locals that it never
// uses: a few bytes per function, the shape that made a 78 KB module take seconds to compile
// and keep gigabytes.
func Locals(fns, locals int) []byte {
	body := []byte{1}
	body = uleb(body, uint64(locals))
	body = append(body, 0x7E, 0x0B) // i64; end
	return manyFuncs(fns, body)
}

// Table returns a module declaring a funcref table of min entries (and max, when max >= 0).
func Table(min, max int64) []byte {
	var t []byte
	t = append(t, 1, 0x70)
	if max >= 0 {
		t = append(t, 1)
		t = uleb(t, uint64(min))
		t = uleb(t, uint64(max))
	} else {
		t = append(t, 0)
		t = uleb(t, uint64(min))
	}
	m := header()
	m = section(m, 4, t)
	return m
}

// TableGrow returns a module with a table of min entries and no maximum, and a function "grow"
// that grows it by its i32 argument with null entries.
func TableGrow(min int64) []byte {
	m := header()
	m = section(m, 1, []byte{1, 0x60, 1, 0x7F, 1, 0x7F}) // (i32) -> i32
	m = section(m, 3, []byte{1, 0})
	t := []byte{1, 0x70, 0}
	t = uleb(t, uint64(min))
	m = section(m, 4, t)
	m = section(m, 7, append(name([]byte{1}, "grow"), 0, 0))
	// ref.null func; local.get 0; table.grow 0; end
	body := []byte{0, 0xD0, 0x70, 0x20, 0, 0xFC, 15, 0, 0x0B}
	code := uleb([]byte{1}, uint64(len(body)))
	m = section(m, 10, append(code, body...))
	return m
}

// Data returns a module with a memory of pages pages and one active data segment of n bytes.
func Data(pages, n int) []byte {
	m := header()
	mem := uleb([]byte{1, 0}, uint64(pages))
	m = section(m, 5, mem)
	d := []byte{1, 0, 0x41, 0, 0x0B} // one active segment at i32.const 0
	d = uleb(d, uint64(n))
	d = append(d, make([]byte, n)...)
	m = section(m, 11, d)
	return m
}

// Elements returns a module with a table of n entries and one active element segment of n
// references to its only function.
func Elements(n int) []byte {
	m := header()
	m = section(m, 1, []byte{1, 0x60, 0, 0})
	m = section(m, 3, []byte{1, 0})
	t := uleb([]byte{1, 0x70, 0}, uint64(n))
	m = section(m, 4, t)
	e := []byte{1, 0, 0x41, 0, 0x0B}
	e = uleb(e, uint64(n))
	for range n {
		e = append(e, 0)
	}
	m = section(m, 9, e)
	m = section(m, 10, []byte{1, 2, 0, 0x0B})
	return m
}

// Functions returns a module with n empty functions.
func Functions(n int) []byte { return manyFuncs(n, []byte{0, 0x0B}) }

// AtLimits returns one module with every compile-cost limit used at once: fns functions in all,
// of which one nests depth blocks deep, localFns declare locals unused i64 locals each, and the
// rest are empty.
func AtLimits(fns, depth, localFns, locals int) []byte {
	nested := []byte{0}
	for range depth {
		nested = append(nested, 0x02, 0x40)
	}
	for range depth {
		nested = append(nested, 0x0B)
	}
	nested = append(nested, 0x0B)
	withLocals := uleb([]byte{1}, uint64(locals))
	withLocals = append(withLocals, 0x7E, 0x0B)
	empty := []byte{0, 0x0B}

	m := header()
	m = section(m, 1, []byte{1, 0x60, 0, 0})
	fs := uleb(nil, uint64(fns))
	for range fns {
		fs = append(fs, 0)
	}
	m = section(m, 3, fs)
	code := uleb(nil, uint64(fns))
	for i := range fns {
		body := empty
		switch {
		case i == 0:
			body = nested
		case i <= localFns:
			body = withLocals
		}
		code = uleb(code, uint64(len(body)))
		code = append(code, body...)
	}
	m = section(m, 10, code)
	return m
}

// WithFirstBody returns a module with n functions () -> (): the first has the given body (locals
// declarations included, end included), the others are empty.
func WithFirstBody(n int, first []byte) []byte {
	bodies := make([][]byte, n)
	for i := range bodies {
		bodies[i] = []byte{0, 0x0B}
	}
	if n > 0 {
		bodies[0] = first
	}
	return Bodies(bodies...)
}

// Bodies returns a module with a function () -> () for each body (locals declarations included,
// end included).
func Bodies(bodies ...[]byte) []byte {
	m := header()
	m = section(m, 1, []byte{1, 0x60, 0, 0})
	fs := uleb(nil, uint64(len(bodies)))
	for range bodies {
		fs = append(fs, 0)
	}
	m = section(m, 3, fs)
	code := uleb(nil, uint64(len(bodies)))
	for _, body := range bodies {
		code = uleb(code, uint64(len(body)))
		code = append(code, body...)
	}
	return section(m, 10, code)
}

func oneFunc(body []byte) []byte {
	m := header()
	m = section(m, 1, []byte{1, 0x60, 0, 0})
	m = section(m, 3, []byte{1, 0})
	m = section(m, 7, append(name([]byte{1}, "f"), 0, 0))
	code := uleb([]byte{1}, uint64(len(body)))
	m = section(m, 10, append(code, body...))
	return m
}

func manyFuncs(n int, body []byte) []byte {
	bodies := make([][]byte, n)
	for i := range bodies {
		bodies[i] = body
	}
	return Bodies(bodies...)
}

func header() []byte { return []byte{0, 'a', 's', 'm', 1, 0, 0, 0} }

func section(m []byte, id byte, body []byte) []byte {
	m = append(m, id)
	m = uleb(m, uint64(len(body)))
	return append(m, body...)
}

func name(b []byte, s string) []byte {
	b = uleb(b, uint64(len(s)))
	return append(b, s...)
}

func uleb(b []byte, v uint64) []byte { return wasmbin.AppendU64(b, v) }

// Ifs returns a module with one function of n empty ifs one after another (i32.const 0; if;
// end): each block after an if is dominated by the one before it, so the dominator tree is n
// deep. 40,000 of them (200 KB) compiled for 45 s before the branch work budget.
func Ifs(n int) []byte {
	body := make([]byte, 0, 5*n+2)
	body = append(body, 0)
	for range n {
		body = append(body, 0x41, 0, 0x04, 0x40, 0x0B)
	}
	return oneFunc(append(body, 0x0B))
}

// BrIfs returns a module with one function whose block holds n br_ifs to its end: n
// predecessors of one block, each a step deeper in the dominator tree. 80,000 (320 KB) compiled
// for 108 s before the branch work budget.
func BrIfs(n int) []byte {
	body := make([]byte, 0, 4*n+5)
	body = append(body, 0, 0x02, 0x40)
	for range n {
		body = append(body, 0x41, 0, 0x0D, 0)
	}
	return oneFunc(append(body, 0x0B, 0x0B))
}

// BrTable returns a module with one function holding one br_table of n entries (and the
// default), all to the same label: n predecessors of one block.
func BrTable(n int) []byte {
	body := []byte{0, 0x02, 0x40, 0x41, 0, 0x0E}
	body = uleb(body, uint64(n))
	for range n + 1 {
		body = append(body, 0)
	}
	return oneFunc(append(body, 0x0B, 0x0B))
}

// Loops returns a module with one function of n empty loops one after another: the
// instrumentation gives each loop head a fuel check (and a retry loop around it), so the compiled
// module has several blocks for each.
func Loops(n int) []byte {
	body := make([]byte, 0, 3*n+2)
	body = append(body, 0)
	for range n {
		body = append(body, 0x03, 0x40, 0x0B)
	}
	return oneFunc(append(body, 0x0B))
}

// Nops returns a module with one function of n nops: no branch at all, but the
// instrumentation checks the fuel every MaxStraight instructions of it.
func Nops(n int) []byte {
	body := make([]byte, n+2)
	body[0] = 0
	for i := 1; i <= n; i++ {
		body[i] = 0x01
	}
	body[n+1] = 0x0B
	return oneFunc(body)
}

// BackEdges returns a module with one function of n loops one after another, each branching
// back to its head once (i32.const 0; br_if 0).
func BackEdges(n int) []byte {
	body := make([]byte, 0, 7*n+2)
	body = append(body, 0)
	for range n {
		body = append(body, 0x03, 0x40, 0x41, 0, 0x0D, 0, 0x0B)
	}
	return oneFunc(append(body, 0x0B))
}

// Types returns a module declaring n function types of arity i32 parameters each (and no
// result), and nothing else.
func Types(n, arity int) []byte {
	t := uleb(nil, uint64(n))
	for range n {
		t = append(t, 0x60)
		t = uleb(t, uint64(arity))
		for range arity {
			t = append(t, 0x7F)
		}
		t = append(t, 0)
	}
	return section(header(), 1, t)
}

// Globals returns a module declaring n mutable i32 globals, and nothing else.
func Globals(n int) []byte {
	g := uleb(nil, uint64(n))
	for range n {
		g = append(g, 0x7F, 1, 0x41, 0, 0x0B)
	}
	return section(header(), 6, g)
}

// Exports returns a module with one function exported under n names.
func Exports(n int) []byte {
	m := header()
	m = section(m, 1, []byte{1, 0x60, 0, 0})
	m = section(m, 3, []byte{1, 0})
	e := uleb(nil, uint64(n))
	for i := range n {
		e = name(e, "f"+itoa(i))
		e = append(e, 0, 0)
	}
	m = section(m, 7, e)
	return section(m, 10, []byte{1, 2, 0, 0x0B})
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b []byte
	for ; i > 0; i /= 10 {
		b = append([]byte{byte('0' + i%10)}, b...)
	}
	return string(b)
}

// LocalsAcrossIfs returns a module with one function that declares locals i32 locals, runs
// ifs empty ifs one after another and then reads every local: each read local becomes a
// parameter of every block after an if. 9,999 locals across 2,000 ifs (50 KB) compiled for
// 155 s before the local work budget.
func LocalsAcrossIfs(locals, ifs int) []byte {
	body := uleb([]byte{1}, uint64(locals))
	body = append(body, 0x7F)
	for range ifs {
		body = append(body, 0x41, 0, 0x04, 0x40, 0x0B)
	}
	for k := range locals {
		body = uleb(append(body, 0x20), uint64(k))
		body = append(body, 0x1A)
	}
	return WithFirstBody(1, append(body, 0x0B))
}
