//go:build !wasip1

// The tests play the host through core.FakeHost, which exists only off wasip1.

package wphttp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/wasmpod/wasmpod/guest-sdk/go/internal/core"
)

func TestRequestLayout(t *testing.T) {
	r := &Request{Method: "GET", URI: "/a?b=c", Header: Headers{{"Host", "x"}}, Body: []byte("hi")}
	var want []byte
	str := func(s string) {
		want = binary.LittleEndian.AppendUint32(want, uint32(len(s)))
		want = append(want, s...)
	}
	str("GET")
	str("/a?b=c")
	want = binary.LittleEndian.AppendUint32(want, 1)
	str("Host")
	str("x")
	str("hi")
	if got := AppendRequest(nil, r); !bytes.Equal(got, want) {
		t.Fatalf("layout\n got %x\nwant %x", got, want)
	}
	back, err := DecodeRequest(want)
	if err != nil || !reflect.DeepEqual(back, r) {
		t.Fatalf("decode: %+v %v", back, err)
	}
}

func TestResponseRoundTrip(t *testing.T) {
	r := &Response{Status: 404, Header: Headers{{"A", "1"}, {"a", "2"}, {"B", ""}}, Body: []byte("not found")}
	b := AppendResponse(nil, r)
	if binary.LittleEndian.Uint32(b) != 404 {
		t.Fatal("status must come first")
	}
	back, err := DecodeResponse(b)
	if err != nil || !reflect.DeepEqual(back, r) {
		t.Fatalf("%+v %v", back, err)
	}
	empty, err := DecodeResponse(AppendResponse(nil, &Response{Status: 204}))
	if err != nil || empty.Status != 204 || empty.Header != nil || empty.Body != nil {
		t.Fatalf("empty: %+v %v", empty, err)
	}
}

func TestMalformed(t *testing.T) {
	good := AppendRequest(nil, &Request{Method: "GET", URI: "/", Header: Headers{{"k", "v"}}, Body: []byte("b")})
	for i := 0; i < len(good); i++ {
		if _, err := DecodeRequest(good[:i]); !errors.Is(err, ErrMalformed) {
			t.Fatalf("truncated at %d: %v", i, err)
		}
	}
	if _, err := DecodeRequest(append(good, 0)); !errors.Is(err, ErrMalformed) {
		t.Fatal("trailing byte accepted")
	}
	huge := binary.LittleEndian.AppendUint32(AppendRequest(nil, &Request{})[:8], 0xFFFFFFFF)
	if _, err := DecodeRequest(huge); !errors.Is(err, ErrMalformed) {
		t.Fatal("huge header count accepted")
	}
	goodResp := AppendResponse(nil, &Response{Status: 200, Header: Headers{{"k", "v"}}})
	for i := 0; i < len(goodResp); i++ {
		if _, err := DecodeResponse(goodResp[:i]); !errors.Is(err, ErrMalformed) {
			t.Fatalf("response truncated at %d: %v", i, err)
		}
	}
}

func TestHeaders(t *testing.T) {
	var h Headers
	h.Add("Set-Cookie", "a")
	h.Add("content-type", "text/plain")
	h.Add("set-cookie", "b")
	if h.Get("CONTENT-TYPE") != "text/plain" || h.Get("nope") != "" {
		t.Fatal("Get")
	}
	if _, ok := h.Lookup("nope"); ok {
		t.Fatal("Lookup")
	}
	if v := h.Values("SET-COOKIE"); !reflect.DeepEqual(v, []string{"a", "b"}) {
		t.Fatalf("Values %v", v)
	}
	h.Set("Set-Cookie", "c")
	if v := h.Values("set-cookie"); !reflect.DeepEqual(v, []string{"c"}) || len(h) != 2 {
		t.Fatalf("Set: %v", h)
	}
	h.Del("content-type")
	if len(h) != 1 || h[0].Value != "c" {
		t.Fatalf("Del: %v", h)
	}
}

func TestCall(t *testing.T) {
	core.Host = core.NewFakeHost()
	fn = nil
	in := AppendRequest(nil, &Request{Method: "POST", URI: "/echo", Header: Headers{{"X", "1"}}, Body: []byte("body")})
	if r := call(core.WriteInput(in)); r != -1 {
		t.Fatal("unregistered handler should fail")
	}
	var seen *Request
	Handle(func(r *Request) *Response {
		seen = r
		resp := &Response{Body: r.Body}
		resp.Header.Add("X-Method", r.Method)
		return resp
	})
	r := call(core.WriteInput(in))
	if r < 0 {
		t.Fatalf("r=%d: %s", r, core.Host.LastError())
	}
	if seen.URI != "/echo" || seen.Header.Get("x") != "1" {
		t.Fatalf("request %+v", seen)
	}
	resp, err := DecodeResponse(core.Output())
	if err != nil || resp.Status != 200 || resp.Header.Get("x-method") != "POST" || string(resp.Body) != "body" {
		t.Fatalf("response %+v %v", resp, err)
	}

	for name, h := range map[string]func(*Request) *Response{
		"nil response": func(*Request) *Response { return nil },
		"bad status":   func(*Request) *Response { return &Response{Status: 42} },
		"panic":        func(*Request) *Response { panic("boom") },
	} {
		Handle(h)
		if r := call(core.WriteInput(in)); r != -1 {
			t.Errorf("%s: r=%d", name, r)
		}
	}
	Handle(func(*Request) *Response { return &Response{Status: 201} })
	if r := call(core.WriteInput([]byte("junk"))); r != -1 || !strings.Contains(core.Host.LastError(), "malformed") {
		t.Fatalf("malformed request: r=%d", r)
	}
}

func FuzzDecodeRequest(f *testing.F) {
	f.Add([]byte{})
	f.Add(AppendRequest(nil, &Request{Method: "GET", URI: "/"}))
	f.Add(AppendRequest(nil, &Request{Method: "PUT", URI: "/x?y", Header: Headers{{"a", "b"}, {"c", ""}}, Body: []byte("zz")}))
	f.Fuzz(func(t *testing.T, in []byte) {
		r, err := DecodeRequest(in)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error not wrapping ErrMalformed: %v", err)
			}
			return
		}
		if out := AppendRequest(nil, r); !bytes.Equal(out, in) {
			t.Fatalf("re-encoding differs:\n in %x\nout %x", in, out)
		}
	})
}

func FuzzDecodeResponse(f *testing.F) {
	f.Add([]byte{})
	f.Add(AppendResponse(nil, &Response{Status: 200}))
	f.Add(AppendResponse(nil, &Response{Status: 503, Header: Headers{{"Retry-After", "1"}}, Body: []byte("busy")}))
	f.Fuzz(func(t *testing.T, in []byte) {
		r, err := DecodeResponse(in)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error not wrapping ErrMalformed: %v", err)
			}
			return
		}
		if out := AppendResponse(nil, r); !bytes.Equal(out, in) {
			t.Fatalf("re-encoding differs:\n in %x\nout %x", in, out)
		}
	})
}
