//go:build !wasip1

package pod

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestCall(t *testing.T) {
	Host = NewFakeHost()
	Host.MaxResponse = 4096
	Host.Modules["echo"] = func(in []byte) ([]byte, error) { return in, nil }
	Host.Modules["big"] = func(in []byte) ([]byte, error) { return bytes.Repeat([]byte("x"), 2000), nil }
	Host.Modules["huge"] = func(in []byte) ([]byte, error) { return make([]byte, 5000), nil }
	Host.Modules["bad"] = func(in []byte) ([]byte, error) { return nil, errors.New("boom") }
	Host.Modules["empty"] = func(in []byte) ([]byte, error) { return nil, nil }
	for _, tc := range []struct {
		name, target, in string
		want             string
		wantErr          error
		wantMsg          string
	}{
		{name: "echo", target: "echo", in: "hi", want: "hi"},
		{name: "larger than the first buffer", target: "big", want: strings.Repeat("x", 2000)},
		{name: "empty response", target: "empty", want: ""},
		{name: "no module", target: "nope", wantErr: ErrNoModule, wantMsg: "no such module"},
		{name: "target failed", target: "bad", wantErr: ErrFailed, wantMsg: "boom"},
		{name: "self", target: "main", wantErr: ErrNotAllowed},
		{name: "too large", target: "huge", wantErr: ErrTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := Call(tc.target, []byte(tc.in))
			if tc.wantErr != nil {
				var ce *CallError
				if !errors.Is(err, tc.wantErr) || !errors.As(err, &ce) || ce.Target != tc.target {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				if !strings.Contains(err.Error(), tc.wantMsg) {
					t.Fatalf("err %q lacks %q", err, tc.wantMsg)
				}
				return
			}
			if err != nil || string(out) != tc.want {
				t.Fatalf("Call = %q, %v; want %q", out, err, tc.want)
			}
		})
	}
	if got := strings.Join(Host.Calls, ","); got != "echo,big,empty,nope,bad,main,huge" {
		t.Fatalf("calls %s", got)
	}
}

func TestNestedCall(t *testing.T) {
	Host = NewFakeHost()
	Host.Modules["a"] = func(in []byte) ([]byte, error) { return Call("b", append(in, 'a')) }
	Host.Modules["b"] = func(in []byte) ([]byte, error) { return append(in, 'b'), nil }
	out, err := Call("a", []byte(">"))
	if err != nil || string(out) != ">ab" {
		t.Fatalf("nested: %q, %v", out, err)
	}
}
