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
	m := header()
	m = section(m, 1, []byte{1, 0x60, 0, 0})
	fs := uleb(nil, uint64(n))
	for range n {
		fs = append(fs, 0)
	}
	m = section(m, 3, fs)
	code := uleb(nil, uint64(n))
	for i := range n {
		body := []byte{0, 0x0B}
		if i == 0 {
			body = first
		}
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
	m := header()
	m = section(m, 1, []byte{1, 0x60, 0, 0})
	fs := uleb(nil, uint64(n))
	for range n {
		fs = append(fs, 0)
	}
	m = section(m, 3, fs)
	code := uleb(nil, uint64(n))
	for range n {
		code = uleb(code, uint64(len(body)))
		code = append(code, body...)
	}
	m = section(m, 10, code)
	return m
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
