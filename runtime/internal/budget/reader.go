package budget

import (
	"errors"
	"fmt"
)

var errEOF = errors.New("unexpected end")

// reader decodes the binary format. After the first error every read returns zero and err keeps
// that error, so callers check once after a sequence of reads.
type reader struct {
	b   []byte
	pos int
	err error
}

func (r *reader) done() bool { return r.err != nil || r.pos >= len(r.b) }

func (r *reader) fail(err error) {
	if r.err == nil {
		r.err = err
	}
}

func (r *reader) byte() byte {
	if r.err != nil {
		return 0
	}
	if r.pos >= len(r.b) {
		r.fail(errEOF)
		return 0
	}
	c := r.b[r.pos]
	r.pos++
	return c
}

func (r *reader) peek() byte {
	if r.err != nil || r.pos >= len(r.b) {
		return 0
	}
	return r.b[r.pos]
}

func (r *reader) bytes(n uint32) []byte {
	if r.err != nil {
		return nil
	}
	if uint64(n) > uint64(len(r.b)-r.pos) {
		r.fail(errEOF)
		return nil
	}
	s := r.b[r.pos : r.pos+int(n)]
	r.pos += int(n)
	return s
}

// leb reads a LEB128 of at most maxBytes bytes and returns its low 64 bits.
func (r *reader) leb(maxBytes int) uint64 {
	var v uint64
	for i := range maxBytes {
		c := r.byte()
		if r.err != nil {
			return 0
		}
		if i < 10 {
			v |= uint64(c&0x7F) << (7 * i)
		}
		if c&0x80 == 0 {
			return v
		}
	}
	r.fail(errors.New("LEB128 too long"))
	return 0
}

func (r *reader) u32() uint32 {
	v := r.leb(5)
	if v > 0xFFFFFFFF {
		r.fail(errors.New("u32 out of range"))
		return 0
	}
	return uint32(v)
}

// count reads a vector length and refuses one that the enclosing bytes (size) cannot hold at
// one byte per entry, so no loop runs on a count the input does not back.
func (r *reader) count(size int) uint64 {
	n := uint64(r.u32())
	if r.err == nil && n > uint64(size) {
		r.fail(fmt.Errorf("vector of %d entries in %d bytes", n, size))
		return 0
	}
	return n
}

func (r *reader) valtype() {
	switch c := r.byte(); c {
	case 0x7F, 0x7E, 0x7D, 0x7C, 0x7B, 0x70, 0x6F, 0x69:
	case 0x63, 0x64: // (ref null ht), (ref ht)
		r.leb(5)
	default:
		r.fail(fmt.Errorf("unknown value type 0x%02x", c))
	}
}

// limits reads table or memory limits.
func (r *reader) limits() (min, max uint64, hasMax bool) {
	flags := r.byte()
	if flags > 0x07 {
		r.fail(fmt.Errorf("unknown limits flags 0x%02x", flags))
		return 0, 0, false
	}
	min = r.leb(10)
	if flags&1 != 0 {
		max, hasMax = r.leb(10), true
	}
	return min, max, hasMax
}

// constExpr skips a constant expression up to and including its end.
func (r *reader) constExpr() {
	for !r.done() {
		op := r.byte()
		if op == 0x0B {
			return
		}
		r.immediates(op)
	}
	r.fail(errEOF)
}

// elemSegment skips one element segment and returns its number of entries.
func (r *reader) elemSegment() uint64 {
	flags := r.u32()
	if flags > 7 {
		r.fail(fmt.Errorf("unknown element segment flags %d", flags))
		return 0
	}
	if flags&1 == 0 { // active
		if flags&2 != 0 {
			r.u32() // table index
		}
		r.constExpr()
	}
	exprs := flags&4 != 0
	if flags&3 != 0 { // elemkind or reftype
		if exprs {
			r.valtype()
		} else {
			r.byte()
		}
	}
	n := r.count(len(r.b) - r.pos)
	for i := uint64(0); i < n && r.err == nil; i++ {
		if exprs {
			r.constExpr()
		} else {
			r.u32()
		}
	}
	return n
}

func (r *reader) memarg() {
	align := r.u32()
	if align&(1<<6) != 0 { // multi-memory: a memory index follows
		r.u32()
	}
	r.leb(10)
}

// immediates skips the immediates of the instruction whose opcode was just read. Unknown
// opcodes are errors: the budget cannot measure what it cannot decode.
func (r *reader) immediates(op byte) {
	switch {
	case op == 0x02 || op == 0x03 || op == 0x04 || op == 0x06: // blocktype
		r.leb(5)
	case op == 0x07 || op == 0x08 || op == 0x09 || op == 0x18: // catch, throw, rethrow, delegate
		r.u32()
	case op == 0x1F: // try_table
		r.leb(5)
		n := r.count(len(r.b) - r.pos)
		for i := uint64(0); i < n && r.err == nil; i++ {
			switch kind := r.byte(); kind {
			case 0x00, 0x01:
				r.u32()
				r.u32()
			case 0x02, 0x03:
				r.u32()
			default:
				r.fail(fmt.Errorf("unknown catch kind %d", kind))
			}
		}
	case op == 0x0C || op == 0x0D: // br, br_if
		r.u32()
	case op == 0x0E: // br_table
		n := r.count(len(r.b) - r.pos)
		for i := uint64(0); i <= n && r.err == nil; i++ {
			r.u32()
		}
	case op == 0x10 || op == 0x12 || op == 0x14 || op == 0x15:
		r.u32()
	case op == 0x11 || op == 0x13:
		r.u32()
		r.u32()
	case op == 0x1C: // select t*
		n := r.count(len(r.b) - r.pos)
		for i := uint64(0); i < n && r.err == nil; i++ {
			r.valtype()
		}
	case op >= 0x20 && op <= 0x26:
		r.u32()
	case op >= 0x28 && op <= 0x3E:
		r.memarg()
	case op == 0x3F || op == 0x40:
		r.u32()
	case op == 0x41:
		r.leb(5)
	case op == 0x42:
		r.leb(10)
	case op == 0x43:
		r.bytes(4)
	case op == 0x44:
		r.bytes(8)
	case op == 0xD0:
		r.leb(5)
	case op == 0xD2:
		r.u32()
	case op == 0xFC:
		r.prefixFC()
	case op == 0xFD:
		r.prefixFD()
	case op == 0xFE:
		r.prefixFE()
	case op <= 0x01, op == 0x05, op == 0x0A, op == 0x0B, op == 0x0F, op == 0x19, op == 0x1A, op == 0x1B,
		op >= 0x45 && op <= 0xC4, op == 0xD1:
	default:
		r.fail(fmt.Errorf("unknown opcode 0x%02x", op))
	}
}

func (r *reader) prefixFC() {
	switch sub := r.u32(); {
	case sub <= 7:
	case sub == 8, sub == 10, sub == 12, sub == 14: // memory.init, memory.copy, table.init, table.copy
		r.u32()
		r.u32()
	case sub == 9, sub == 11, sub == 13, sub >= 15 && sub <= 17:
		r.u32()
	default:
		r.fail(fmt.Errorf("unknown opcode 0xfc %d", sub))
	}
}

func (r *reader) prefixFD() {
	switch sub := r.u32(); {
	case sub <= 11:
		r.memarg()
	case sub == 12 || sub == 13:
		r.bytes(16)
	case sub >= 21 && sub <= 34:
		r.byte()
	case sub >= 84 && sub <= 91:
		r.memarg()
		r.byte()
	case sub == 92 || sub == 93:
		r.memarg()
	case sub <= 0x113:
	default:
		r.fail(fmt.Errorf("unknown opcode 0xfd %d", sub))
	}
}

func (r *reader) prefixFE() {
	switch sub := r.u32(); {
	case sub == 0x03:
		r.byte()
	case sub <= 0x02 || (sub >= 0x10 && sub <= 0x4E):
		r.memarg()
	default:
		r.fail(fmt.Errorf("unknown opcode 0xfe %d", sub))
	}
}
