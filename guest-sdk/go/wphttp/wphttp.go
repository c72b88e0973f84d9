// Package wphttp adds the HTTP handler role (ingress) to a wasmpod plugin: importing it exports
// wasmpod_http (guest-sdk/ABI.md, section 2.2), which decodes the framed request, runs the
// function given to Handle and encodes its response.
//
// Request.Body aliases the guest buffer, which the host overwrites on the next call: do not
// retain it after the handler returns; copy what you keep. The other Request fields are copies.
package wphttp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"

	_ "github.com/wasmpod/wasmpod/guest-sdk/go" // required exports and lifecycle
	"github.com/wasmpod/wasmpod/guest-sdk/go/internal/core"
)

// Header is one header field. Names are case-insensitive and may repeat.
type Header struct {
	Name, Value string
}

// Headers is a list of header fields in wire order.
type Headers []Header

// Get returns the value of the first field named name (case-insensitive), or "".
func (h Headers) Get(name string) string {
	v, _ := h.Lookup(name)
	return v
}

// Lookup is Get that also tells whether the field is present.
func (h Headers) Lookup(name string) (string, bool) {
	for _, f := range h {
		if strings.EqualFold(f.Name, name) {
			return f.Value, true
		}
	}
	return "", false
}

// Values returns the values of every field named name (case-insensitive), in order.
func (h Headers) Values(name string) []string {
	var vs []string
	for _, f := range h {
		if strings.EqualFold(f.Name, name) {
			vs = append(vs, f.Value)
		}
	}
	return vs
}

// Add appends a field.
func (h *Headers) Add(name, value string) { *h = append(*h, Header{name, value}) }

// Del removes every field named name (case-insensitive).
func (h *Headers) Del(name string) {
	out := (*h)[:0]
	for _, f := range *h {
		if !strings.EqualFold(f.Name, name) {
			out = append(out, f)
		}
	}
	clear((*h)[len(out):])
	*h = out
}

// Set replaces every field named name with one field name: value.
func (h *Headers) Set(name, value string) {
	h.Del(name)
	h.Add(name, value)
}

// Request is an HTTP request as the host received it.
type Request struct {
	Method string
	URI    string // path and query, as received
	Header Headers
	Body   []byte // aliases the guest buffer inside a handler
}

// Response is an HTTP response.
type Response struct {
	Status int // 0 means 200 when returned by a handler
	Header Headers
	Body   []byte
}

// ErrMalformed is wrapped by every decoding error.
var ErrMalformed = errors.New("malformed http framing")

var (
	fn  func(*Request) *Response
	out []byte // encoded responses; reused (the previous one is done once a new call starts)
)

// Handle registers the HTTP handler; call it from an init function. A nil response or a status
// outside 100-999 fails the call (the host answers with a server error); so does a panic, which
// leaves the instance usable. Malformed request framing fails the call without calling fn.
func Handle(f func(req *Request) *Response) { fn = f }

func call(n int32) int64 {
	if fn == nil {
		return core.Call("wphttp", n, nil)
	}
	return core.Call("wphttp", n, func(in []byte) ([]byte, error) {
		req, err := decodeRequest(in, false)
		if err != nil {
			return nil, err
		}
		resp := fn(req)
		if resp == nil {
			return nil, errors.New("wphttp: handler returned a nil response")
		}
		status := resp.Status
		if status == 0 {
			status = 200
		}
		if status < 100 || status > 999 {
			return nil, fmt.Errorf("wphttp: handler returned invalid status %d", resp.Status)
		}
		r := *resp
		r.Status = status
		out = AppendResponse(out[:0], &r)
		return out, nil
	})
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) u32(what string) uint32 {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 4 {
		d.err = fmt.Errorf("%w: truncated %s", ErrMalformed, what)
		return 0
	}
	v := binary.LittleEndian.Uint32(d.b)
	d.b = d.b[4:]
	return v
}

func (d *decoder) bytes(what string) []byte {
	n := d.u32(what + " length")
	if d.err != nil {
		return nil
	}
	if uint64(n) > uint64(len(d.b)) {
		d.err = fmt.Errorf("%w: %s length %d exceeds the %d bytes left", ErrMalformed, what, n, len(d.b))
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) headers() Headers {
	count := d.u32("header count")
	if d.err != nil {
		return nil
	}
	if uint64(count) > uint64(len(d.b))/8 { // every field takes at least two lengths
		d.err = fmt.Errorf("%w: header count %d does not fit in %d bytes", ErrMalformed, count, len(d.b))
		return nil
	}
	if count == 0 {
		return nil
	}
	h := make(Headers, count)
	for i := range h {
		h[i].Name = string(d.bytes("header name"))
		h[i].Value = string(d.bytes("header value"))
	}
	return h
}

func (d *decoder) end() error {
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(d.b))
	}
	return d.err
}

// DecodeRequest parses request framing: method, uri, u32 header count, that many name/value
// pairs, body, each string a u32 length and its bytes. Strings are copies; Body is a copy too.
func DecodeRequest(b []byte) (*Request, error) { return decodeRequest(b, true) }

func decodeRequest(b []byte, copyBody bool) (*Request, error) {
	d := decoder{b: b}
	r := &Request{}
	r.Method = string(d.bytes("method"))
	r.URI = string(d.bytes("uri"))
	r.Header = d.headers()
	r.Body = d.bytes("body")
	if err := d.end(); err != nil {
		return nil, err
	}
	if copyBody && r.Body != nil {
		r.Body = append([]byte{}, r.Body...)
	}
	return r, nil
}

// DecodeResponse parses response framing: u32 status, u32 header count, that many name/value
// pairs, body. Body is a copy.
func DecodeResponse(b []byte) (*Response, error) {
	d := decoder{b: b}
	r := &Response{}
	r.Status = int(d.u32("status"))
	r.Header = d.headers()
	body := d.bytes("body")
	if err := d.end(); err != nil {
		return nil, err
	}
	if len(body) > 0 {
		r.Body = append([]byte{}, body...)
	}
	return r, nil
}

func appendBytes(dst []byte, what string, b []byte) []byte {
	if uint64(len(b)) > math.MaxUint32 {
		panic("wphttp: " + what + " too large to frame")
	}
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(b)))
	return append(dst, b...)
}

func appendString(dst []byte, what, s string) []byte {
	if uint64(len(s)) > math.MaxUint32 {
		panic("wphttp: " + what + " too large to frame")
	}
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(s)))
	return append(dst, s...)
}

func appendHeaders(dst []byte, h Headers) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(h)))
	for _, f := range h {
		dst = appendString(dst, "header name", f.Name)
		dst = appendString(dst, "header value", f.Value)
	}
	return dst
}

// AppendRequest appends the framing of r to dst and returns it (the host's side of
// DecodeRequest; tests use it).
func AppendRequest(dst []byte, r *Request) []byte {
	dst = appendString(dst, "method", r.Method)
	dst = appendString(dst, "uri", r.URI)
	dst = appendHeaders(dst, r.Header)
	return appendBytes(dst, "body", r.Body)
}

// AppendResponse appends the framing of r to dst and returns it. The status is written as is
// (as a u32); it panics if the status does not fit in a u32.
func AppendResponse(dst []byte, r *Response) []byte {
	if r.Status < 0 || uint64(r.Status) > math.MaxUint32 {
		panic(fmt.Sprintf("wphttp: status %d does not fit the framing", r.Status))
	}
	dst = binary.LittleEndian.AppendUint32(dst, uint32(r.Status))
	dst = appendHeaders(dst, r.Header)
	return appendBytes(dst, "body", r.Body)
}
