package runtime_test

import (
	"context"
	"errors"
	"github.com/wasmpod/wasmpod/runtime/internal/wasmbin"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/runtime"
)

// FuzzDeadline generates random valid native-ABI modules (recursion, mutual recursion through
// call_indirect, loops that may never end, bulk memory, traps) from the fuzzer's bytes and
// asserts that every call ends within its deadline plus a bound, with a result, a trap or
// ErrDeadline, and that every module the generator writes is accepted. The seeds run as a
// normal test.
func FuzzDeadline(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{3, 0, 3, 0, 3, 1})                   // recursion
	f.Add([]byte{4, 1, 2, 4, 0, 1, 2})                // call_indirect
	f.Add([]byte{6, 1, 1, 6, 1, 1, 0})                // nested loops
	f.Add([]byte{8, 200, 9, 200, 3, 0, 8, 255})       // bulk memory in recursion
	f.Add([]byte{5, 11, 1, 0, 2, 3, 7, 10, 4, 4, 3})  // mixed
	f.Add([]byte{2, 3, 0, 3, 0, 2, 3, 1, 3, 1, 2, 2}) // a recursion tree
	e := newEngine(f, runtime.DefaultConfig())
	const deadline = 200 * time.Millisecond
	f.Fuzz(func(t *testing.T, data []byte) {
		wasm := genModule(data)
		cfg := runtime.DefaultModuleConfig("fuzz")
		cfg.CallTimeout = deadline
		cfg.MaxConcurrency, cfg.MinInstances = 1, 1
		t0 := time.Now()
		m, err := e.Load(context.Background(), wasm, cfg)
		if err == nil {
			defer m.Close(context.Background())
			err = m.Start(context.Background(), runtime.StartOptions{})
			if err != nil {
				t.Fatalf("start: %v", err)
			}
		} else if !errors.Is(err, runtime.ErrDeadline) {
			t.Fatalf("a valid module was refused: %v", err)
		}
		if took := time.Since(t0); took > deadline+cutBound {
			t.Fatalf("load took %s", took)
		}
		if err != nil {
			return
		}
		for _, arg := range []byte{0, 7} {
			t0 = time.Now()
			_, err = m.Call(context.Background(), runtime.RoleHandle, []byte{arg}, nil)
			took := time.Since(t0)
			var te *runtime.TrapError
			if err != nil && !errors.Is(err, runtime.ErrDeadline) && !errors.As(err, &te) {
				t.Fatalf("call ended with %v", err)
			}
			if took > deadline+cutBound {
				t.Fatalf("call took %s, deadline %s: %v", took, deadline, err)
			}
		}
	})
}

// genModule writes a valid module from data: functions f0..f(n-1) of type (i32) -> i32 whose
// bodies are random expressions, a table of them, one page-sized memory and a global, and the
// native ABI exports; wasmpod_handle calls f0 with the first input byte and returns no output.
func genModule(data []byte) []byte {
	g := &gen{data: data}
	n := 1 + g.pick(4)
	var bodies [][]byte
	for k := 0; k < n; k++ {
		g.nfuncs = n
		body := g.expr(nil, 5)
		bodies = append(bodies, append([]byte{0}, append(body, 0x0B)...))
	}
	var b []byte
	sec := func(id byte, body []byte) {
		b = append(b, id)
		b = uleb(b, uint64(len(body)))
		b = append(b, body...)
	}
	b = append(b, "\x00asm\x01\x00\x00\x00"...)
	// types: 0 (i32) -> i32, 1 () -> i32, 2 (i32) -> i64
	sec(1, []byte{3, 0x60, 1, 0x7F, 1, 0x7F, 0x60, 0, 1, 0x7F, 0x60, 1, 0x7F, 1, 0x7E})
	fs := uleb(nil, uint64(n+3))
	for k := 0; k < n; k++ {
		fs = append(fs, 0)
	}
	sec(3, append(fs, 1, 0, 2))               // f0..fn-1, version, buffer, handle
	sec(4, []byte{1, 0x70, 0, byte(n)})       // table of n funcrefs
	sec(5, []byte{1, 0, 3})                   // memory, 3 pages
	sec(6, []byte{1, 0x7F, 1, 0x41, 0, 0x0B}) // global 0: mut i32
	exp := []byte{4}
	for i, name := range []string{"wasmpod_abi_version", "wasmpod_buffer", "wasmpod_handle", "memory"} {
		exp = uleb(exp, uint64(len(name)))
		exp = append(exp, name...)
		if name == "memory" {
			exp = append(exp, 2, 0)
		} else {
			exp = append(exp, 0)
			exp = uleb(exp, uint64(n+i))
		}
	}
	sec(7, exp)
	el := []byte{1, 0, 0x41, 0, 0x0B}
	el = uleb(el, uint64(n))
	for k := 0; k < n; k++ {
		el = uleb(el, uint64(k))
	}
	sec(9, el)
	bodies = append(bodies,
		[]byte{0, 0x41, 1, 0x0B},                         // version: 1
		[]byte{0, 0x41, 0x80, 0x80, 0x08, 0x0B},          // buffer: 131072
		[]byte{0, 0x20, 0, 0x10, 0, 0x1A, 0x42, 0, 0x0B}) // handle: drop f0(len); 0
	code := uleb(nil, uint64(len(bodies)))
	for _, body := range bodies {
		code = uleb(code, uint64(len(body)))
		code = append(code, body...)
	}
	sec(10, code)
	return b
}

type gen struct {
	data   []byte
	pos    int
	nfuncs int
}

func (g *gen) pick(n int) int {
	if g.pos >= len(g.data) {
		return 0
	}
	c := int(g.data[g.pos])
	g.pos++
	return c % n
}

// expr appends an expression that leaves one i32 on the stack.
func (g *gen) expr(b []byte, depth int) []byte {
	if depth == 0 {
		if g.pick(2) == 0 {
			return append(b, 0x20, 0) // local.get 0
		}
		return append(b, 0x41, byte(g.pick(64))) // i32.const
	}
	d := depth - 1
	switch g.pick(12) {
	case 0:
		return append(b, 0x41, byte(g.pick(64)))
	case 1:
		return append(b, 0x20, 0)
	case 2: // binary op
		b = g.expr(b, d)
		b = g.expr(b, d)
		return append(b, []byte{0x6A, 0x6B, 0x6C, 0x73, 0x71, 0x72, 0x74}[g.pick(7)])
	case 3: // call f_k (the argument decreases, so some recursions end)
		k := g.pick(g.nfuncs)
		b = append(b, 0x20, 0, 0x41, 1, 0x6B) // local.get 0 - 1
		return append(b, 0x10, byte(k))
	case 4: // call_indirect (type 0) through the table
		b = g.expr(b, d)
		b = append(b, 0x41, byte(g.pick(g.nfuncs)))
		return append(b, 0x11, 0, 0)
	case 5: // if (result i32)
		b = g.expr(b, d)
		b = append(b, 0x04, 0x7F)
		b = g.expr(b, d)
		b = append(b, 0x05)
		b = g.expr(b, d)
		return append(b, 0x0B)
	case 6: // loop (result i32): expr; br_if 0 on a condition; expr
		b = append(b, 0x03, 0x7F)
		b = g.expr(b, d)
		b = append(b, 0x0D, 0)
		b = g.expr(b, d)
		return append(b, 0x0B)
	case 7: // global.set then get
		b = g.expr(b, d)
		return append(b, 0x24, 0, 0x23, 0)
	case 8: // memory.fill 0, v, size (within the 3 pages)
		b = append(b, 0x41, 0)
		b = g.expr(b, d)
		b = append(b, 0x41)
		b = sleb(b, int64(g.pick(256))<<10) // up to 255 KiB: may run past the memory and trap
		return append(b, 0xFC, 11, 0, 0x41, 1)
	case 9: // memory.copy 0, 65536, size
		b = append(b, 0x41, 0, 0x41, 0x80, 0x80, 0x04, 0x41)
		b = sleb(b, int64(g.pick(128))<<10)
		return append(b, 0xFC, 10, 0, 0, 0x41, 2)
	case 10: // load within the first page
		b = g.expr(b, d)
		b = append(b, 0x41, 0xFC, 0xFF, 0x03, 0x71) // & 0xFFFC
		return append(b, 0x28, 2, 0)
	default: // div_u: may trap
		b = g.expr(b, d)
		b = g.expr(b, d)
		return append(b, 0x6E)
	}
}

func uleb(b []byte, v uint64) []byte { return wasmbin.AppendU64(b, v) }

func sleb(b []byte, v int64) []byte { return wasmbin.AppendS64(b, v) }
