// Package wasmbin decodes the WebAssembly binary format for the passes that read an untrusted
// module before any compiler does: the compile budget (runtime/internal/budget) and the
// instrumenter (runtime/internal/instrument). One decoder, so both passes agree on what a module
// contains and a fix to one reaches both.
package wasmbin

import (
	"errors"
	"fmt"
)

// ErrEOF: the input ends inside something it declared.
var ErrEOF = errors.New("unexpected end")

// Reader decodes the binary format. After the first error every read returns zero and Err keeps
// that error, so callers check once after a sequence of reads. Not safe for concurrent use.
type Reader struct {
	B   []byte // the input
	Pos int    // the next byte to read
	Err error  // the first error
}

// Done reports whether the input is used up or an error occurred.
func (r *Reader) Done() bool { return r.Err != nil || r.Pos >= len(r.B) }

// Fail records err unless an earlier error is recorded.
func (r *Reader) Fail(err error) {
	if r.Err == nil {
		r.Err = err
	}
}

// Byte reads one byte.
func (r *Reader) Byte() byte {
	if r.Err != nil {
		return 0
	}
	if r.Pos >= len(r.B) {
		r.Fail(ErrEOF)
		return 0
	}
	c := r.B[r.Pos]
	r.Pos++
	return c
}

// Peek returns the next byte without reading it (0 at the end or after an error).
func (r *Reader) Peek() byte {
	if r.Err != nil || r.Pos >= len(r.B) {
		return 0
	}
	return r.B[r.Pos]
}

// Bytes reads n bytes (a slice of the input, not a copy).
func (r *Reader) Bytes(n int) []byte {
	if r.Err != nil {
		return nil
	}
	if n < 0 || n > len(r.B)-r.Pos {
		r.Fail(ErrEOF)
		return nil
	}
	s := r.B[r.Pos : r.Pos+n]
	r.Pos += n
	return s
}

// Leb reads a LEB128 of at most maxBytes bytes and returns its low 64 bits.
func (r *Reader) Leb(maxBytes int) uint64 {
	var v uint64
	for i := range maxBytes {
		c := r.Byte()
		if r.Err != nil {
			return 0
		}
		if i < 10 {
			v |= uint64(c&0x7F) << (7 * i)
		}
		if c&0x80 == 0 {
			return v
		}
	}
	r.Fail(errors.New("LEB128 too long"))
	return 0
}

// U32 reads an unsigned 32-bit LEB128.
func (r *Reader) U32() uint32 {
	v := r.Leb(5)
	if v > 0xFFFFFFFF {
		r.Fail(errors.New("u32 out of range"))
		return 0
	}
	return uint32(v)
}

// Count reads a vector length and refuses one that the enclosing bytes (size) cannot hold at
// one byte per entry, so no loop runs on a count the input does not back.
func (r *Reader) Count(size int) uint64 {
	n := uint64(r.U32())
	if r.Err == nil && n > uint64(size) {
		r.Fail(fmt.Errorf("vector of %d entries in %d bytes", n, size))
		return 0
	}
	return n
}

// Valtype reads a value type: one byte, or a reference type with a heap type.
func (r *Reader) Valtype() {
	switch c := r.Byte(); c {
	case 0x7F, 0x7E, 0x7D, 0x7C, 0x7B, 0x70, 0x6F, 0x69:
	case 0x63, 0x64: // (ref null ht), (ref ht)
		r.Leb(5)
	default:
		r.Fail(fmt.Errorf("unknown value type 0x%02x", c))
	}
}

// Limits reads table or memory limits.
func (r *Reader) Limits() (min, max uint64, hasMax bool) {
	flags := r.Byte()
	if flags > 0x07 {
		r.Fail(fmt.Errorf("unknown limits flags 0x%02x", flags))
		return 0, 0, false
	}
	min = r.Leb(10)
	if flags&1 != 0 {
		max, hasMax = r.Leb(10), true
	}
	return min, max, hasMax
}

// ConstExpr skips a constant expression up to and including its end.
func (r *Reader) ConstExpr() {
	for !r.Done() {
		op := r.Byte()
		if op == 0x0B {
			return
		}
		r.Immediates(op)
	}
	r.Fail(ErrEOF)
}

// ElemSegment skips one element segment and returns its number of entries.
func (r *Reader) ElemSegment() uint64 {
	flags := r.U32()
	if flags > 7 {
		r.Fail(fmt.Errorf("unknown element segment flags %d", flags))
		return 0
	}
	if flags&1 == 0 { // active
		if flags&2 != 0 {
			r.U32() // table index
		}
		r.ConstExpr()
	}
	exprs := flags&4 != 0
	if flags&3 != 0 { // elemkind or reftype
		if exprs {
			r.Valtype()
		} else {
			r.Byte()
		}
	}
	n := r.Count(len(r.B) - r.Pos)
	for i := uint64(0); i < n && r.Err == nil; i++ {
		if exprs {
			r.ConstExpr()
		} else {
			r.U32()
		}
	}
	return n
}

// Memarg skips a memory argument: alignment (with the multi-memory flag, a memory index) and offset.
func (r *Reader) Memarg() {
	align := r.U32()
	if align&(1<<6) != 0 { // multi-memory: a memory index follows
		r.U32()
	}
	r.Leb(10)
}

// Immediates skips the immediates of the instruction whose opcode was just read. Unknown
// opcodes are errors: a pass cannot check what it cannot decode.
func (r *Reader) Immediates(op byte) {
	switch {
	case op == 0x02 || op == 0x03 || op == 0x04 || op == 0x06: // blocktype
		r.Leb(5)
	case op == 0x07 || op == 0x08 || op == 0x09 || op == 0x18: // catch, throw, rethrow, delegate
		r.U32()
	case op == 0x1F: // try_table
		r.Leb(5)
		n := r.Count(len(r.B) - r.Pos)
		for i := uint64(0); i < n && r.Err == nil; i++ {
			switch kind := r.Byte(); kind {
			case 0x00, 0x01:
				r.U32()
				r.U32()
			case 0x02, 0x03:
				r.U32()
			default:
				r.Fail(fmt.Errorf("unknown catch kind %d", kind))
			}
		}
	case op == 0x0C || op == 0x0D: // br, br_if
		r.U32()
	case op == 0x0E: // br_table
		n := r.Count(len(r.B) - r.Pos)
		for i := uint64(0); i <= n && r.Err == nil; i++ {
			r.U32()
		}
	case op == 0x10 || op == 0x12 || op == 0x14 || op == 0x15:
		r.U32()
	case op == 0x11 || op == 0x13:
		r.U32()
		r.U32()
	case op == 0x1C: // select t*
		n := r.Count(len(r.B) - r.Pos)
		for i := uint64(0); i < n && r.Err == nil; i++ {
			r.Valtype()
		}
	case op >= 0x20 && op <= 0x26:
		r.U32()
	case op >= 0x28 && op <= 0x3E:
		r.Memarg()
	case op == 0x3F || op == 0x40:
		r.U32()
	case op == 0x41:
		r.Leb(5)
	case op == 0x42:
		r.Leb(10)
	case op == 0x43:
		r.Bytes(4)
	case op == 0x44:
		r.Bytes(8)
	case op == 0xD0:
		r.Leb(5)
	case op == 0xD2:
		r.U32()
	case op == 0xFC:
		r.PrefixFC()
	case op == 0xFD:
		r.PrefixFD()
	case op == 0xFE:
		r.PrefixFE()
	case op <= 0x01, op == 0x05, op == 0x0A, op == 0x0B, op == 0x0F, op == 0x19, op == 0x1A, op == 0x1B,
		op >= 0x45 && op <= 0xC4, op == 0xD1:
	default:
		r.Fail(fmt.Errorf("unknown opcode 0x%02x", op))
	}
}

// PrefixFC skips the rest of a 0xFC-prefixed instruction (saturating truncations, bulk memory
// and table operations).
func (r *Reader) PrefixFC() {
	switch sub := r.U32(); {
	case sub <= 7:
	case sub == 8, sub == 10, sub == 12, sub == 14: // memory.init, memory.copy, table.init, table.copy
		r.U32()
		r.U32()
	case sub == 9, sub == 11, sub == 13, sub >= 15 && sub <= 17:
		r.U32()
	default:
		r.Fail(fmt.Errorf("unknown opcode 0xfc %d", sub))
	}
}

// PrefixFD skips the rest of a 0xFD-prefixed (SIMD) instruction.
func (r *Reader) PrefixFD() {
	switch sub := r.U32(); {
	case sub <= 11:
		r.Memarg()
	case sub == 12 || sub == 13:
		r.Bytes(16)
	case sub >= 21 && sub <= 34:
		r.Byte()
	case sub >= 84 && sub <= 91:
		r.Memarg()
		r.Byte()
	case sub == 92 || sub == 93:
		r.Memarg()
	case sub <= 0x113:
	default:
		r.Fail(fmt.Errorf("unknown opcode 0xfd %d", sub))
	}
}

// PrefixFE skips the rest of a 0xFE-prefixed (threads, atomics) instruction.
func (r *Reader) PrefixFE() {
	switch sub := r.U32(); {
	case sub == 0x03:
		r.Byte()
	case sub <= 0x02 || (sub >= 0x10 && sub <= 0x4E):
		r.Memarg()
	default:
		r.Fail(fmt.Errorf("unknown opcode 0xfe %d", sub))
	}
}

// U64 reads an unsigned 64-bit LEB128.
func (r *Reader) U64() uint64 { return r.Leb(10) }

// S33 reads a signed 33-bit LEB128 (a block type's type index).
func (r *Reader) S33() int64 {
	var v int64
	var shift uint
	for i := 0; i < 5; i++ {
		c := r.Byte()
		if r.Err != nil {
			return 0
		}
		v |= int64(c&0x7F) << shift
		shift += 7
		if c&0x80 == 0 {
			if shift < 64 && c&0x40 != 0 {
				v |= -1 << shift
			}
			return v
		}
	}
	r.Fail(errors.New("LEB128 too long"))
	return 0
}
