// Package instrument rewrites a WebAssembly module so that the host can stop it cheaply and the
// Go runtime can always reach a safe point while it runs.
//
// It adds an imported host function (wasmpod.__yield: () -> i32) and an exported mutable i32
// global (the fuel), and at the head of every loop a countdown: fuel is decremented, and when it
// reaches zero the guest calls __yield, which either refills the fuel (the call goes on) or traps
// (the call is cut). The host cuts a call by setting the fuel to zero from another goroutine; the
// guest then yields within one loop iteration (or, if that store races with the guest's own
// decrement, within one refill).
//
// Why not wazero's WithCloseOnContextDone: it starts a goroutine per call and makes every loop
// iteration call out to Go; on a loop-heavy guest that costs 20x the call itself (RATIONALE.md).
// Why yield at all instead of only checking a flag: compiled wasm cannot be preempted by the Go
// scheduler, so a guest that loops without ever calling into Go would block every stop-the-world
// pause of the garbage collector, and with it the timer that should cut the guest. Calling into
// Go every few thousand iterations gives the scheduler its safe point.
//
// Code without loops needs no check: it runs a bounded number of instructions, or recurses until
// the stack runs out, which traps.
package instrument

import (
	"errors"
	"fmt"
)

// Names the instrumented module imports and exports.
const (
	ImportModule = "wasmpod"
	YieldName    = "__yield"
	FuelName     = "__wasmpod_fuel"
)

// ErrMalformed is wrapped by every error about the input's encoding.
var ErrMalformed = errors.New("malformed wasm")

const (
	secCustom  = 0
	secType    = 1
	secImport  = 2
	secGlobal  = 6
	secExport  = 7
	secStart   = 8
	secElement = 9
	secCode    = 10
)

// sectionOrder gives each known section's position in the canonical order, so a missing section
// can be added where it belongs.
var sectionOrder = map[byte]int{1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 13: 6, 6: 7, 7: 8, 8: 9, 9: 10, 12: 11, 10: 12, 11: 13}

type section struct {
	id   byte
	body []byte
}

// rewriter carries what the passes need: where the new import sits in the function index space
// and the index of the fuel global.
type rewriter struct {
	yield uint32 // function index of __yield == number of imported functions before it
	fuel  uint32 // global index of the fuel
	check []byte // the instructions inserted at every loop head
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
	r := &reader{b: wasm, pos: 8}
	for !r.done() {
		id := r.byte()
		body := r.bytes(int(r.u32()))
		if r.err != nil {
			return fmt.Errorf("%w: section %d: %v", ErrMalformed, id, r.err)
		}
		switch id {
		case secCustom, secStart, 12: // custom, start, data count: no vector
			continue
		}
		sr := &reader{b: body}
		n := sr.u32()
		if sr.err != nil {
			return fmt.Errorf("%w: section %d: %v", ErrMalformed, id, sr.err)
		}
		if int64(n) > int64(len(body)-sr.pos) {
			return fmt.Errorf("%w: section %d declares %d entries in %d bytes", ErrMalformed, id, n, len(body))
		}
		if id == secCode {
			// Each body declares local groups; a count of locals can also be huge.
			for i := uint32(0); i < n && sr.err == nil; i++ {
				fb := sr.bytes(int(sr.u32()))
				fr := &reader{b: fb}
				groups := fr.u32()
				if fr.err == nil && int64(groups)*2 > int64(len(fb)) {
					return fmt.Errorf("%w: function %d declares %d local groups in %d bytes", ErrMalformed, i, groups, len(fb))
				}
				var total uint64
				for g := uint32(0); g < groups && fr.err == nil; g++ {
					total += uint64(fr.u32())
					fr.valtype()
				}
				if total > 50000 {
					return fmt.Errorf("%w: function %d declares %d locals (limit 50000)", ErrMalformed, i, total)
				}
			}
			if sr.err != nil {
				return fmt.Errorf("%w: code section: %v", ErrMalformed, sr.err)
			}
		}
	}
	return nil
}

// Instrument rewrites wasm (which is not modified) and returns the new module. fuel is the
// number of loop iterations between two yields. Debug-info custom sections (.debug_*) are
// dropped because the code offsets they describe change.
func Instrument(wasm []byte, fuel int32) ([]byte, error) {
	if len(wasm) < 8 || string(wasm[:4]) != "\x00asm" {
		return nil, fmt.Errorf("%w: no wasm magic number", ErrMalformed)
	}
	if wasm[4] != 1 || wasm[5] != 0 || wasm[6] != 0 || wasm[7] != 0 {
		return nil, fmt.Errorf("%w: unsupported binary version %x", ErrMalformed, wasm[4:8])
	}
	if fuel <= 0 {
		return nil, errors.New("instrument: fuel must be positive")
	}
	if err := CheckShape(wasm); err != nil {
		return nil, err
	}
	r := &reader{b: wasm, pos: 8}
	var secs []section
	seen := map[byte]bool{}
	for !r.done() {
		id := r.byte()
		n := r.u32()
		body := r.bytes(int(n))
		if r.err != nil {
			return nil, fmt.Errorf("%w: section %d: %v", ErrMalformed, id, r.err)
		}
		if id != secCustom {
			if seen[id] {
				return nil, fmt.Errorf("%w: duplicate section %d", ErrMalformed, id)
			}
			seen[id] = true
		}
		secs = append(secs, section{id: id, body: body})
	}

	var numTypes uint32
	w := &rewriter{}
	var definedGlobals uint32
	for _, s := range secs {
		sr := &reader{b: s.body}
		switch s.id {
		case secType:
			numTypes = sr.u32()
		case secImport:
			funcs, globals, err := scanImports(s.body)
			if err != nil {
				return nil, err
			}
			w.yield, w.fuel = funcs, globals
			continue
		case secGlobal:
			definedGlobals = sr.u32()
		default:
			continue
		}
		if sr.err != nil {
			return nil, fmt.Errorf("%w: section %d: %v", ErrMalformed, s.id, sr.err)
		}
	}
	w.fuel += definedGlobals
	w.check = loopCheck(w.yield, w.fuel)

	for _, id := range []byte{secType, secImport, secGlobal, secExport} {
		if !seen[id] {
			secs = insertSection(secs, section{id: id, body: []byte{0}})
		}
	}

	out := make([]byte, 0, len(wasm)+len(wasm)/8+64)
	out = append(out, wasm[:8]...)
	for _, s := range secs {
		body := s.body
		var err error
		switch s.id {
		case secCustom:
			if isDebugSection(body) {
				continue
			}
			body, err = w.nameSection(body)
		case secType:
			body, err = appendToVector(body, []byte{0x60, 0x00, 0x01, 0x7F}) // () -> i32
		case secImport:
			imp := appendName(nil, ImportModule)
			imp = appendName(imp, YieldName)
			imp = append(imp, 0x00)
			imp = appendU32(imp, numTypes)
			body, err = appendToVector(body, imp)
		case secGlobal:
			body, err = w.globals(body, fuel)
		case secExport:
			body, err = w.exports(body)
		case secStart:
			sr := &reader{b: body}
			idx := sr.u32()
			if sr.err != nil {
				err = fmt.Errorf("%w: start section: %v", ErrMalformed, sr.err)
			}
			body = appendU32(nil, w.fn(idx))
		case secElement:
			body, err = w.elements(body)
		case secCode:
			body, err = w.code(body)
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

// loopCheck is: fuel -= 1; if fuel <= 0 { fuel = __yield() }.
func loopCheck(yield, fuel uint32) []byte {
	c := []byte{0x23}
	c = appendU32(c, fuel)
	c = append(c, 0x41, 0x01, 0x6B, 0x24) // i32.const 1, i32.sub, global.set
	c = appendU32(c, fuel)
	c = append(c, 0x23)
	c = appendU32(c, fuel)
	c = append(c, 0x41, 0x00, 0x4C, 0x04, 0x40, 0x10) // i32.const 0, i32.le_s, if, call
	c = appendU32(c, yield)
	c = append(c, 0x24) // global.set
	c = appendU32(c, fuel)
	return append(c, 0x0B) // end
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

// appendToVector adds one encoded element to a section that is a vector.
func appendToVector(body, elem []byte) ([]byte, error) {
	r := &reader{b: body}
	n := r.u32()
	if r.err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, r.err)
	}
	out := appendU32(nil, n+1)
	out = append(out, body[r.pos:]...)
	return append(out, elem...), nil
}

func appendName(b []byte, s string) []byte {
	b = appendU32(b, uint32(len(s)))
	return append(b, s...)
}

// scanImports counts imported functions and globals, and refuses a module that already imports
// the yield function.
func scanImports(body []byte) (funcs, globals uint32, err error) {
	r := &reader{b: body}
	n := r.u32()
	for i := uint32(0); i < n && r.err == nil; i++ {
		mod := r.bytes(int(r.u32()))
		name := r.bytes(int(r.u32()))
		if string(mod) == ImportModule && string(name) == YieldName {
			return 0, 0, fmt.Errorf("%w: the module imports %s.%s, a name reserved for the host", ErrMalformed, ImportModule, YieldName)
		}
		switch kind := r.byte(); kind {
		case 0: // func: type index
			r.u32()
			funcs++
		case 1: // table: reftype, limits
			r.valtype()
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
			if r.err == nil {
				return 0, 0, fmt.Errorf("%w: import %d has unknown kind %d", ErrMalformed, i, kind)
			}
		}
	}
	if r.err != nil || !r.done() {
		return 0, 0, fmt.Errorf("%w: import section: %v", ErrMalformed, orTrailing(r))
	}
	return funcs, globals, nil
}

func orTrailing(r *reader) error {
	if r.err != nil {
		return r.err
	}
	return fmt.Errorf("%d trailing bytes", len(r.b)-r.pos)
}

// globals renumbers ref.func in initializers and appends the fuel global.
func (w *rewriter) globals(body []byte, fuel int32) ([]byte, error) {
	r := &reader{b: body}
	n := r.u32()
	out := appendU32(nil, n+1)
	for i := uint32(0); i < n && r.err == nil; i++ {
		start := r.pos
		r.valtype()
		r.byte()
		out = append(out, body[start:r.pos]...)
		out = w.constExpr(out, r)
	}
	if r.err != nil || !r.done() {
		return nil, fmt.Errorf("%w: global section: %v", ErrMalformed, orTrailing(r))
	}
	out = append(out, 0x7F, 0x01, 0x41)
	out = appendS32(out, fuel)
	return append(out, 0x0B), nil
}

// exports renumbers function exports and appends the fuel's export.
func (w *rewriter) exports(body []byte) ([]byte, error) {
	r := &reader{b: body}
	n := r.u32()
	out := appendU32(nil, n+1)
	for i := uint32(0); i < n && r.err == nil; i++ {
		name := r.bytes(int(r.u32()))
		kind := r.byte()
		idx := r.u32()
		if string(name) == FuelName {
			return nil, fmt.Errorf("%w: the module already exports %q, a name reserved for the host", ErrMalformed, FuelName)
		}
		if kind == 0 {
			idx = w.fn(idx)
		}
		out = appendName(out, string(name))
		out = append(out, kind)
		out = appendU32(out, idx)
	}
	if r.err != nil || !r.done() {
		return nil, fmt.Errorf("%w: export section: %v", ErrMalformed, orTrailing(r))
	}
	out = appendName(out, FuelName)
	out = append(out, 0x03)
	return appendU32(out, w.fuel), nil
}

// elements renumbers the function indices of element segments.
func (w *rewriter) elements(body []byte) ([]byte, error) {
	r := &reader{b: body}
	n := r.u32()
	out := appendU32(nil, n)
	for i := uint32(0); i < n && r.err == nil; i++ {
		flags := r.u32()
		out = appendU32(out, flags)
		if flags > 7 {
			return nil, fmt.Errorf("%w: element segment %d: unknown flags %d", ErrMalformed, i, flags)
		}
		if flags&2 != 0 && flags&1 == 0 { // explicit table index
			out = appendU32(out, r.u32())
		}
		if flags&1 == 0 { // active: offset expression
			out = w.constExpr(out, r)
		}
		if flags&3 != 0 { // elemkind or reftype
			if flags&4 == 0 {
				out = append(out, r.byte())
			} else {
				start := r.pos
				r.valtype()
				out = append(out, body[start:r.pos]...)
			}
		}
		count := r.u32()
		out = appendU32(out, count)
		for k := uint32(0); k < count && r.err == nil; k++ {
			if flags&4 == 0 {
				out = appendU32(out, w.fn(r.u32()))
			} else {
				out = w.constExpr(out, r)
			}
		}
	}
	if r.err != nil || !r.done() {
		return nil, fmt.Errorf("%w: element section: %v", ErrMalformed, orTrailing(r))
	}
	return out, nil
}

// constExpr copies a constant expression up to and including its end, renumbering ref.func.
func (w *rewriter) constExpr(out []byte, r *reader) []byte {
	for r.err == nil {
		start := r.pos
		op := r.byte()
		if op == 0xD2 {
			out = append(out, op)
			out = appendU32(out, w.fn(r.u32()))
			continue
		}
		r.immediates(op)
		out = append(out, r.b[start:r.pos]...)
		if op == 0x0B {
			break
		}
	}
	return out
}

func (w *rewriter) code(body []byte) ([]byte, error) {
	r := &reader{b: body}
	n := r.u32()
	if r.err != nil {
		return nil, fmt.Errorf("%w: code section: %v", ErrMalformed, r.err)
	}
	out := make([]byte, 0, len(body)+len(body)/8)
	out = appendU32(out, n)
	var fn []byte
	for i := uint32(0); i < n; i++ {
		size := r.u32()
		code := r.bytes(int(size))
		if r.err != nil {
			return nil, fmt.Errorf("%w: function %d: %v", ErrMalformed, i, r.err)
		}
		var err error
		fn, err = w.function(fn[:0], code)
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

func (w *rewriter) function(out, code []byte) ([]byte, error) {
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
		switch op {
		case 0x10, 0x12, 0xD2: // call, return_call, ref.func
			idx := r.u32()
			out = append(out, op)
			out = appendU32(out, w.fn(idx))
			continue
		}
		r.immediates(op)
		if r.err != nil {
			return nil, fmt.Errorf("instruction 0x%02x at offset %d: %v", op, start, r.err)
		}
		out = append(out, code[start:r.pos]...)
		if op == 0x03 { // loop: count down at the head of every iteration
			out = append(out, w.check...)
		}
	}
	if r.err != nil {
		return nil, r.err
	}
	if len(code) == 0 || code[len(code)-1] != 0x0B {
		return nil, errors.New("body does not end with end")
	}
	return out, nil
}

// nameSection renumbers the function indices of the "name" custom section (function, local and
// label names). Other custom sections are copied unchanged.
func (w *rewriter) nameSection(body []byte) ([]byte, error) {
	r := &reader{b: body}
	name := r.bytes(int(r.u32()))
	if r.err != nil || string(name) != "name" {
		return body, nil
	}
	out := append([]byte(nil), body[:r.pos]...)
	for !r.done() {
		id := r.byte()
		size := r.u32()
		sub := r.bytes(int(size))
		if r.err != nil {
			// A malformed name section is ignored by engines; drop what we cannot read.
			return out, nil
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
	r := &reader{b: sub}
	n := r.u32()
	out := appendU32(nil, n)
	for i := uint32(0); i < n && r.err == nil; i++ {
		out = appendU32(out, w.fn(r.u32()))
		if !indirect {
			out = appendName(out, string(r.bytes(int(r.u32()))))
			continue
		}
		start := r.pos
		m := r.u32()
		for k := uint32(0); k < m && r.err == nil; k++ {
			r.u32()
			r.bytes(int(r.u32()))
		}
		out = append(out, sub[start:r.pos]...)
	}
	return out, r.err == nil && r.done()
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

func appendS32(b []byte, v int32) []byte {
	for {
		c := byte(v & 0x7F)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}
