// Package core is the machinery shared by the wasmpod SDK packages: the input buffer, result
// packing, error reporting and panic recovery. It compiles on every platform; only the host
// imports differ (host_wasip1.go on wasm, an in-process Host elsewhere for unit tests).
package core

import (
	"errors"
	"fmt"
	"math"
	"runtime/debug"
	"unicode/utf8"
	"unsafe"
)

// ABIVersion is the native guest ABI version this SDK implements.
const ABIVersion = 1

// MaxErrorMessage is how much of an error message the host keeps; longer ones are cut here.
const MaxErrorMessage = 4096

// minBuffer is the smallest buffer allocated, so tiny requests do not cause reallocations.
const minBuffer = 64 << 10

var (
	buf  []byte // the input buffer handed to the host; len(buf) == cap(buf)
	keep []byte // the last output, kept alive until the next call
)

// Buffer implements wasmpod_buffer: it returns the address of a buffer of at least size bytes
// that stays put until the next Buffer call, or 0 for a negative size.
func Buffer(size int32) uint32 {
	if size < 0 {
		return 0
	}
	if int(size) > len(buf) || buf == nil {
		n := max(int(size), minBuffer)
		n = (n + minBuffer - 1) &^ (minBuffer - 1)
		buf = make([]byte, n)
	}
	return Addr(buf)
}

// Input returns the first n bytes of the buffer: the input the host wrote for this call.
func Input(n int32) ([]byte, error) {
	if n < 0 || int(n) > len(buf) {
		return nil, fmt.Errorf("wasmpod: input length %d exceeds the %d-byte buffer", uint32(n), len(buf))
	}
	return buf[:n:n], nil
}

// Addr returns the linear-memory address of b's first element (0 for an empty slice).
func Addr(b []byte) uint32 {
	if cap(b) == 0 {
		return 0
	}
	return uint32(uintptr(unsafe.Pointer(unsafe.SliceData(b))))
}

// Pack encodes a successful result: length in the high 32 bits, address in the low 32 bits.
func Pack(addr, n uint32) int64 {
	return int64(uint64(n)<<32 | uint64(addr))
}

// Unpack splits a successful result into address and length.
func Unpack(r int64) (addr, n uint32) {
	return uint32(uint64(r)), uint32(uint64(r) >> 32)
}

// Output returns the output of the last successful call that had one (kept alive until the
// next call). Tests use it to read results natively.
func Output() []byte { return keep }

// CodedError carries an application error code (see wasmpod.Code).
type CodedError struct {
	Code int
	Err  error
}

func (e *CodedError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("error code %d", e.Code)
	}
	return e.Err.Error()
}

func (e *CodedError) Unwrap() error { return e.Err }

// CodeOf returns the application error code of err: the code of the first CodedError in its
// chain if that code is positive, else 1. It returns 0 for a nil error.
func CodeOf(err error) int {
	if err == nil {
		return 0
	}
	var ce *CodedError
	if errors.As(err, &ce) && ce.Code > 0 {
		return min(ce.Code, math.MaxInt32)
	}
	return 1
}

// Fail reports err to the host (the error import, message cut to MaxErrorMessage bytes, at a
// UTF-8 boundary) and returns its positive code.
func Fail(err error) int {
	if msg := err.Error(); msg != "" {
		SetError(Cut(msg, MaxErrorMessage))
	}
	return CodeOf(err)
}

// Cut returns s cut to at most n bytes without splitting a UTF-8 sequence: it backs up over
// the continuation bytes (at most 3) of a rune that the limit would split.
func Cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	end := n
	for i := 0; i < utf8.UTFMax-1 && end > 0 && !utf8.RuneStart(s[end]); i++ {
		end--
	}
	if !utf8.RuneStart(s[end]) || !utf8.FullRuneInString(s[end:]) {
		return s[:n] // not UTF-8 here: cut where the limit is
	}
	return s[:end]
}

// PanicError is the error a recovered panic becomes.
type PanicError struct {
	Value any
	Stack []byte
}

func (e *PanicError) Error() string { return fmt.Sprintf("panic: %v", e.Value) }

// Recovered turns a recovered panic value into an error, logging the stack at error level.
func Recovered(v any) error {
	pe := &PanicError{Value: v, Stack: debug.Stack()}
	Log(3, pe.Error()+"\n"+string(pe.Stack))
	return pe
}

// Call runs a handler export: it takes the n-byte input from the buffer, runs fn with panics
// recovered, and returns the packed result. A nil fn fails the call naming role.
func Call(role string, n int32, fn func([]byte) ([]byte, error)) (r int64) {
	keep = nil
	if fn == nil || n < 0 || int(n) > len(buf) {
		return badCall(role, n, fn)
	}
	defer func() {
		if v := recover(); v != nil {
			keep = nil
			r = -int64(Fail(Recovered(v)))
		}
	}()
	out, err := fn(buf[:n:n])
	if err != nil {
		return -int64(Fail(err))
	}
	if len(out) == 0 {
		return 0
	}
	keep = out
	return Pack(Addr(out), uint32(len(out)))
}

// badCall fails a call that cannot run (kept out of Call so that its fast path stays small).
func badCall(role string, n int32, fn func([]byte) ([]byte, error)) int64 {
	if fn == nil {
		return -int64(Fail(fmt.Errorf("wasmpod: no %s handler registered (call %s.Handle in an init function)", role, role)))
	}
	_, err := Input(n)
	return -int64(Fail(err))
}

// Status runs a lifecycle hook that returns an error, with panics recovered: 0 on success,
// else the error's code after reporting it.
func Status(fn func() error) (code int32) {
	keep = nil
	defer func() {
		if v := recover(); v != nil {
			code = int32(Fail(Recovered(v)))
		}
	}()
	if err := fn(); err != nil {
		return int32(Fail(err))
	}
	return 0
}

// WriteInput copies in to the start of the buffer, growing it as the host would, and returns
// the length to pass to a handler. Native tests use it to play the host.
func WriteInput(in []byte) int32 {
	if len(in) > len(buf) {
		Buffer(int32(len(in)))
	}
	copy(buf, in)
	return int32(len(in))
}
