// Package instrument rewrites a WebAssembly module so that a host can stop it cheaply: it adds
// an exported mutable i32 global and, at the head of every loop, a check that traps
// (unreachable) once the host has set that global to a non-zero value.
//
// This is wasmpod's termination guarantee. The alternative, wazero's WithCloseOnContextDone,
// starts a goroutine per call and makes every loop iteration call out to Go to check whether the
// module was closed; on a loop-heavy guest that is 20x the cost of the call itself (see
// RATIONALE.md). The check inserted here is a load and a branch.
//
// Code without loops needs no check: it runs for a bounded number of instructions, or recurses
// until the stack runs out, which traps.
package instrument

import (
	"errors"
	"fmt"
)

// GlobalName is the export name of the stop flag the instrumented module gets.
const GlobalName = "__wasmpod_stop"

// ErrMalformed is wrapped by every error about the input's encoding.
var ErrMalformed = errors.New("malformed wasm")

const (
	secCustom = 0
	secImport = 2
	secGlobal = 6
	secExport = 7
	secCode   = 10
)

// sectionOrder gives each known section's position in the canonical order, so a new global or
// export section can be put where it belongs.
var sectionOrder = map[byte]int{1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 13: 6, 6: 7, 7: 8, 8: 9, 9: 10, 12: 11, 10: 12, 11: 13}

type section struct {
	id   byte
	body []byte
}

// Stop instruments wasm. The result is a new module; wasm is not modified. Debug-info custom
// sections (.debug_*) are dropped because the code offsets they describe change.
func Stop(wasm []byte) ([]byte, error) {
	if len(wasm) < 8 || string(wasm[:4]) != "\x00asm" {
		return nil, fmt.Errorf("%w: no wasm magic number", ErrMalformed)
	}
	if wasm[4] != 1 || wasm[5] != 0 || wasm[6] != 0 || wasm[7] != 0 {
		return nil, fmt.Errorf("%w: unsupported binary version %x", ErrMalformed, wasm[4:8])
	}
	r := &reader{b: wasm, pos: 8}
	var secs []section
	for !r.done() {
		id := r.byte()
		n := r.u32()
		body := r.bytes(int(n))
		if r.err != nil {
			return nil, fmt.Errorf("%w: section %d: %v", ErrMalformed, id, r.err)
		}
		secs = append(secs, section{id: id, body: body})
	}

	importedGlobals, definedGlobals := 0, 0
	hasGlobal, hasExport := false, false
	for _, s := range secs {
		switch s.id {
		case secImport:
			n, err := countImportedGlobals(s.body)
			if err != nil {
				return nil, err
			}
			importedGlobals = n
		case secGlobal:
			hasGlobal = true
			sr := &reader{b: s.body}
			definedGlobals = int(sr.u32())
			if sr.err != nil {
				return nil, fmt.Errorf("%w: global section: %v", ErrMalformed, sr.err)
			}
		case secExport:
			hasExport = true
		}
	}
	flag := uint32(importedGlobals + definedGlobals)

	// Put missing global/export sections in their canonical place.
	if !hasGlobal {
		secs = insertSection(secs, section{id: secGlobal, body: []byte{0}})
	}
	if !hasExport {
		secs = insertSection(secs, section{id: secExport, body: []byte{0}})
	}

	out := make([]byte, 0, len(wasm)+len(wasm)/16+64)
	out = append(out, wasm[:8]...)
	for _, s := range secs {
		body := s.body
		var err error
		switch s.id {
		case secCustom:
			if isDebugSection(body) {
				continue
			}
		case secGlobal:
			body, err = addGlobal(body)
		case secExport:
			body, err = addExport(body, flag)
		case secCode:
			body, err = instrumentCode(body, flag)
		}
		if err != nil {
			return nil, err
		}
		out = append(out, s.id)
		out = appendU32(out, uint32(len(body)))
		out = append(out, body...)
	}
	return out, nil
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
	r := &reader{b: body}
	name := r.bytes(int(r.u32()))
	return r.err == nil && len(name) >= 7 && string(name[:7]) == ".debug_"
}

func countImportedGlobals(body []byte) (int, error) {
	r := &reader{b: body}
	n := r.u32()
	globals := 0
	for i := uint32(0); i < n && r.err == nil; i++ {
		r.bytes(int(r.u32())) // module
		r.bytes(int(r.u32())) // name
		switch kind := r.byte(); kind {
		case 0: // func: type index
			r.u32()
		case 1: // table: reftype, limits
			r.byte()
			r.limits()
		case 2: // memory: limits
			r.limits()
		case 3: // global: valtype, mutability
			r.valtype()
			r.byte()
			globals++
		case 4: // tag: attribute, type index
			r.byte()
			r.u32()
		default:
			return 0, fmt.Errorf("%w: import %d has unknown kind %d", ErrMalformed, i, kind)
		}
	}
	if r.err != nil {
		return 0, fmt.Errorf("%w: import section: %v", ErrMalformed, r.err)
	}
	return globals, nil
}

// addGlobal appends `(global (mut i32) (i32.const 0))`.
func addGlobal(body []byte) ([]byte, error) {
	r := &reader{b: body}
	n := r.u32()
	if r.err != nil {
		return nil, fmt.Errorf("%w: global section: %v", ErrMalformed, r.err)
	}
	out := appendU32(nil, n+1)
	out = append(out, body[r.pos:]...)
	return append(out, 0x7F, 0x01, 0x41, 0x00, 0x0B), nil
}

// addExport appends the export of the stop flag, refusing a module that already uses its name.
func addExport(body []byte, flag uint32) ([]byte, error) {
	r := &reader{b: body}
	n := r.u32()
	for i := uint32(0); i < n && r.err == nil; i++ {
		name := r.bytes(int(r.u32()))
		r.byte()
		r.u32()
		if r.err == nil && string(name) == GlobalName {
			return nil, fmt.Errorf("%w: the module already exports %q, a name reserved for the host", ErrMalformed, GlobalName)
		}
	}
	if r.err != nil {
		return nil, fmt.Errorf("%w: export section: %v", ErrMalformed, r.err)
	}
	out := appendU32(nil, n+1)
	out = append(out, body[lebLen(body):]...)
	out = appendU32(out, uint32(len(GlobalName)))
	out = append(out, GlobalName...)
	out = append(out, 0x03)
	return appendU32(out, flag), nil
}

func lebLen(b []byte) int {
	for i, c := range b {
		if c&0x80 == 0 {
			return i + 1
		}
	}
	return len(b)
}

func instrumentCode(body []byte, flag uint32) ([]byte, error) {
	r := &reader{b: body}
	n := r.u32()
	if r.err != nil {
		return nil, fmt.Errorf("%w: code section: %v", ErrMalformed, r.err)
	}
	check := []byte{0x23}
	check = appendU32(check, flag)
	check = append(check, 0x04, 0x40, 0x00, 0x0B) // if (empty) unreachable end

	out := make([]byte, 0, len(body)+len(body)/16)
	out = appendU32(out, n)
	var fn []byte
	for i := uint32(0); i < n; i++ {
		size := r.u32()
		code := r.bytes(int(size))
		if r.err != nil {
			return nil, fmt.Errorf("%w: function %d: %v", ErrMalformed, i, r.err)
		}
		var err error
		fn, err = instrumentFunc(fn[:0], code, check)
		if err != nil {
			return nil, fmt.Errorf("%w: function %d: %v", ErrMalformed, i, err)
		}
		out = appendU32(out, uint32(len(fn)))
		out = append(out, fn...)
	}
	if !r.done() {
		return nil, fmt.Errorf("%w: code section: %d trailing bytes", ErrMalformed, len(body)-r.pos)
	}
	return out, nil
}

func instrumentFunc(out, code, check []byte) ([]byte, error) {
	r := &reader{b: code}
	groups := r.u32()
	for g := uint32(0); g < groups && r.err == nil; g++ {
		r.u32()
		r.valtype()
	}
	if r.err != nil {
		return nil, fmt.Errorf("locals: %v", r.err)
	}
	out = append(out, code[:r.pos]...)
	for !r.done() {
		start := r.pos
		op := r.byte()
		r.immediates(op)
		if r.err != nil {
			return nil, fmt.Errorf("instruction 0x%02x at offset %d: %v", op, start, r.err)
		}
		out = append(out, code[start:r.pos]...)
		if op == 0x03 { // loop: check at the head of every iteration
			out = append(out, check...)
		}
	}
	if len(code) == 0 || code[len(code)-1] != 0x0B {
		return nil, errors.New("body does not end with end")
	}
	return out, nil
}

func appendU32(b []byte, v uint32) []byte {
	for {
		c := byte(v & 0x7F)
		v >>= 7
		if v != 0 {
			b = append(b, c|0x80)
			continue
		}
		return append(b, c)
	}
}
