//go:build !wasip1

// The tests play the host through core.FakeHost, which exists only off wasip1.

package core

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"unsafe"
)

func reset() *FakeHost {
	Host = NewFakeHost()
	buf, keep = nil, nil
	return Host
}

func TestPackUnpack(t *testing.T) {
	for _, c := range []struct{ addr, n uint32 }{{0, 0}, {65536, 8}, {0xFFFFFFFF, 0x7FFFFFFF}, {1, 1}} {
		r := Pack(c.addr, c.n)
		if r < 0 {
			t.Fatalf("Pack(%#x, %d) = %d, negative", c.addr, c.n, r)
		}
		a, n := Unpack(r)
		if a != c.addr || n != c.n {
			t.Fatalf("Unpack(Pack(%#x, %d)) = %#x, %d", c.addr, c.n, a, n)
		}
	}
	if Pack(65536, 3) != 3<<32|65536 {
		t.Fatal("Pack layout: length must be the high 32 bits")
	}
}

func TestBuffer(t *testing.T) {
	reset()
	a := Buffer(100)
	if a == 0 || len(buf) < 100 {
		t.Fatalf("Buffer(100) = %#x with %d bytes", a, len(buf))
	}
	if b := Buffer(minBuffer); b != a {
		t.Fatalf("Buffer moved for a size it already had: %#x -> %#x", a, b)
	}
	if Buffer(-1) != 0 {
		t.Fatal("Buffer(-1) should fail with 0")
	}
	Buffer(minBuffer*3 + 1)
	if len(buf) < minBuffer*3+1 || len(buf)%minBuffer != 0 {
		t.Fatalf("grown buffer has %d bytes", len(buf))
	}
	if Buffer(0) == 0 {
		t.Fatal("Buffer(0) should return the current buffer")
	}
}

func TestInput(t *testing.T) {
	reset()
	if in, err := Input(0); err != nil || len(in) != 0 {
		t.Fatalf("Input(0) before any buffer: %v, %v", in, err)
	}
	n := WriteInput([]byte("hello"))
	in, err := Input(n)
	if err != nil || string(in) != "hello" || cap(in) != 5 {
		t.Fatalf("Input = %q (cap %d), %v", in, cap(in), err)
	}
	if _, err := Input(int32(len(buf) + 1)); err == nil {
		t.Fatal("Input past the buffer should fail")
	}
	if _, err := Input(-1); err == nil {
		t.Fatal("Input(-1) should fail")
	}
}

func TestCallSuccess(t *testing.T) {
	reset()
	n := WriteInput([]byte("abc"))
	r := Call("leaf", n, func(in []byte) ([]byte, error) { return append([]byte("x"), in...), nil })
	addr, size := Unpack(r)
	out := Output()
	if r < 0 || size != 4 || string(out) != "xabc" || addr != uint32(uintptr(unsafe.Pointer(&out[0]))) {
		t.Fatalf("r=%#x out=%q", r, out)
	}
	// Output aliasing the input is allowed.
	r = Call("leaf", n, func(in []byte) ([]byte, error) { return in, nil })
	if a, size := Unpack(r); size != 3 || a != Addr(buf) {
		t.Fatalf("aliasing output: r=%#x", r)
	}
	// Empty output is r = 0 and releases the previous output.
	if r := Call("leaf", n, func([]byte) ([]byte, error) { return nil, nil }); r != 0 || Output() != nil {
		t.Fatalf("empty output: r=%d keep=%v", r, Output())
	}
}

func TestCallErrors(t *testing.T) {
	h := reset()
	n := WriteInput([]byte("x"))
	cases := []struct {
		err  error
		code int64
		msg  string
	}{
		{errors.New("plain"), 1, "plain"},
		{&CodedError{Code: 7, Err: errors.New("seven")}, 7, "seven"},
		{fmt.Errorf("wrapped: %w", &CodedError{Code: 9, Err: errors.New("nine")}), 9, "wrapped: nine"},
		{&CodedError{Code: 0, Err: errors.New("zero")}, 1, "zero"},
		{&CodedError{Code: 12}, 12, "error code 12"},
	}
	for _, c := range cases {
		r := Call("handler", n, func([]byte) ([]byte, error) { return []byte("ignored"), c.err })
		if r != -c.code || h.LastError() != c.msg || Output() != nil {
			t.Errorf("%v: r=%d msg=%q", c.err, r, h.LastError())
		}
	}
	long := strings.Repeat("m", MaxErrorMessage+100)
	Call("handler", n, func([]byte) ([]byte, error) { return nil, errors.New(long) })
	if got := h.LastError(); len(got) != MaxErrorMessage {
		t.Errorf("long message kept %d bytes, want %d", len(got), MaxErrorMessage)
	}
}

func TestCallPanicKeepsWorking(t *testing.T) {
	h := reset()
	n := WriteInput([]byte("x"))
	r := Call("handler", n, func([]byte) ([]byte, error) { panic("oops") })
	if r != -1 || h.LastError() != "panic: oops" {
		t.Fatalf("panic: r=%d msg=%q", r, h.LastError())
	}
	if len(h.Logs) != 1 || h.Logs[0].Level != 3 || !strings.Contains(h.Logs[0].Msg, "goroutine") {
		t.Fatalf("panic stack not logged at error level: %+v", h.Logs)
	}
	var nilMap map[string]int
	r = Call("handler", n, func([]byte) ([]byte, error) { nilMap["x"] = 1; return nil, nil })
	if r != -1 || !strings.Contains(h.LastError(), "nil map") {
		t.Fatalf("runtime panic: r=%d msg=%q", r, h.LastError())
	}
	r = Call("handler", n, func(in []byte) ([]byte, error) { return in, nil })
	if _, size := Unpack(r); size != 1 {
		t.Fatalf("call after panic: r=%d", r)
	}
}

func TestCallBad(t *testing.T) {
	h := reset()
	if r := Call("merge", 0, nil); r != -1 || !strings.Contains(h.LastError(), "merge.Handle") {
		t.Fatalf("nil handler: r=%d msg=%q", r, h.LastError())
	}
	Buffer(10)
	called := false
	if r := Call("leaf", int32(len(buf)+1), func([]byte) ([]byte, error) { called = true; return nil, nil }); r != -1 || called {
		t.Fatalf("oversized input: r=%d called=%v", r, called)
	}
}

func TestStatus(t *testing.T) {
	h := reset()
	if Status(func() error { return nil }) != 0 {
		t.Fatal("nil error should be 0")
	}
	if c := Status(func() error { return &CodedError{Code: 5, Err: errors.New("five")} }); c != 5 || h.LastError() != "five" {
		t.Fatalf("coded: %d %q", c, h.LastError())
	}
	if c := Status(func() error { panic(errors.New("bang")) }); c != 1 || h.LastError() != "panic: bang" {
		t.Fatalf("panic: %d %q", c, h.LastError())
	}
}

func TestCodeOf(t *testing.T) {
	if CodeOf(nil) != 0 || CodeOf(errors.New("x")) != 1 || CodeOf(&CodedError{Code: 1 << 40}) != 1<<31-1 {
		t.Fatal("CodeOf")
	}
	ce := &CodedError{Code: 3, Err: errors.New("inner")}
	if !errors.Is(ce, ce.Err) {
		t.Fatal("CodedError must unwrap")
	}
}

func TestConfigGet(t *testing.T) {
	h := reset()
	h.Config["small"] = "v"
	h.Config["big"] = strings.Repeat("b", 1000)
	h.Config["empty"] = ""
	if v, ok := ConfigGet("small"); !ok || v != "v" {
		t.Fatalf("small: %q %v", v, ok)
	}
	if v, ok := ConfigGet("big"); !ok || v != h.Config["big"] {
		t.Fatalf("big: %d bytes %v", len(v), ok)
	}
	if v, ok := ConfigGet("empty"); !ok || v != "" {
		t.Fatalf("empty: %q %v", v, ok)
	}
	if _, ok := ConfigGet("missing"); ok {
		t.Fatal("missing key found")
	}
}

func TestFakeHostMetrics(t *testing.T) {
	reset()
	id := MetricDefine(0, "ok_total", "")
	if id != 0 || MetricDefine(0, "ok_total", "") != 0 {
		t.Fatal("define twice should find the same id")
	}
	for name, want := range map[string]int32{"1bad": -1, "": -1, "a-b": -1, strings.Repeat("a", 129): -1} {
		if got := MetricDefine(1, name, ""); got != want {
			t.Errorf("define %q = %d, want %d", name, got, want)
		}
	}
	if MetricDefine(1, "ok_total", "") != -2 || MetricDefine(5, "x", "") != -4 {
		t.Fatal("kind errors")
	}
}
