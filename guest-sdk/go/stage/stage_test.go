//go:build !wasip1

// The tests play the host through core.FakeHost, which exists only off wasip1.

package stage

import (
	"errors"
	"testing"

	"github.com/wasmpod/wasmpod/guest-sdk/go/internal/core"
)

func TestCall(t *testing.T) {
	core.Host = core.NewFakeHost()
	fn = nil
	if r := call(core.WriteInput(nil)); r != -1 {
		t.Fatalf("unregistered: r=%d", r)
	}
	Handle(func(in []byte) ([]byte, error) { return append([]byte("out:"), in...), nil })
	r := call(core.WriteInput([]byte("in")))
	if _, n := core.Unpack(r); n != 6 || string(core.Output()) != "out:in" {
		t.Fatalf("r=%#x out=%q", r, core.Output())
	}
	Handle(func([]byte) ([]byte, error) { return nil, errors.New("nope") })
	if r := call(core.WriteInput([]byte("in"))); r != -1 || core.Host.LastError() != "nope" {
		t.Fatalf("error: r=%d", r)
	}
}
