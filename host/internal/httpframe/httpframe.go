// Package httpframe encodes HTTP requests into, and decodes HTTP responses from, the framing of
// the guest ABI's http role (guest-sdk/ABI.md section 2.2). The host cannot import guest code, so
// this is its own implementation.
//
// Both directions are allocation-free in steady state: AppendRequest appends to a caller-owned
// buffer, and DecodeResponse returns sub-slices of the output it was given.
package httpframe

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrFraming: a guest's response is not well-formed framing.
var ErrFraming = errors.New("malformed http framing")

// MaxHeaders bounds the headers of a decoded response.
const MaxHeaders = 256

// AppendString appends a u32 length and the bytes.
func AppendString(dst []byte, s []byte) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(s)))
	return append(dst, s...)
}

// AppendRequestStart appends method, uri and the header count; the caller then appends each
// header with AppendString (name, value) and finally the body with AppendString.
func AppendRequestStart(dst, method, uri []byte, headers int) []byte {
	dst = AppendString(dst, method)
	dst = AppendString(dst, uri)
	return binary.LittleEndian.AppendUint32(dst, uint32(headers))
}

// Header is one response header, sub-slices of the guest output.
type Header struct{ Name, Value []byte }

// Response is a decoded response. Its slices point into the decoded output.
type Response struct {
	Status  int
	Headers []Header
	Body    []byte
}

// DecodeResponse decodes b into r, reusing r.Headers' storage. Status must be 100..999.
func DecodeResponse(b []byte, r *Response) error {
	r.Headers = r.Headers[:0]
	if len(b) < 8 {
		return fmt.Errorf("%w: response shorter than its status and header count", ErrFraming)
	}
	st := binary.LittleEndian.Uint32(b)
	if st < 100 || st > 999 {
		return fmt.Errorf("%w: status %d out of range", ErrFraming, st)
	}
	r.Status = int(st)
	n := binary.LittleEndian.Uint32(b[4:])
	if n > MaxHeaders {
		return fmt.Errorf("%w: %d headers (at most %d)", ErrFraming, n, MaxHeaders)
	}
	b = b[8:]
	var err error
	for i := uint32(0); i < n; i++ {
		var h Header
		if h.Name, b, err = field(b, "header name"); err != nil {
			return err
		}
		if h.Value, b, err = field(b, "header value"); err != nil {
			return err
		}
		if !validName(h.Name) {
			return fmt.Errorf("%w: invalid header name %q", ErrFraming, h.Name)
		}
		if !validValue(h.Value) {
			return fmt.Errorf("%w: invalid value of header %q", ErrFraming, h.Name)
		}
		r.Headers = append(r.Headers, h)
	}
	if r.Body, b, err = field(b, "body"); err != nil {
		return err
	}
	if len(b) != 0 {
		return fmt.Errorf("%w: %d bytes after the body", ErrFraming, len(b))
	}
	return nil
}

func field(b []byte, what string) ([]byte, []byte, error) {
	if len(b) < 4 {
		return nil, nil, fmt.Errorf("%w: truncated %s length", ErrFraming, what)
	}
	n := binary.LittleEndian.Uint32(b)
	b = b[4:]
	if uint64(n) > uint64(len(b)) {
		return nil, nil, fmt.Errorf("%w: %s of %d bytes, only %d left", ErrFraming, what, n, len(b))
	}
	return b[:n], b[n:], nil
}

// validName: an RFC 9110 token.
func validName(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c <= ' ' || c >= 0x7f || c == ':' || c == '(' || c == ')' || c == ',' || c == '/' ||
			c == ';' || c == '<' || c == '=' || c == '>' || c == '?' || c == '@' || c == '[' ||
			c == '\\' || c == ']' || c == '{' || c == '}' || c == '"' {
			return false
		}
	}
	return true
}

// validValue: no control characters except tab (no header injection through CR/LF).
func validValue(b []byte) bool {
	for _, c := range b {
		if (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}
