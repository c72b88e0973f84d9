//go:build !wasip1

// The tests play the host through core.FakeHost, which exists only off wasip1.

package merge

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/wasmpod/wasmpod/guest-sdk/go/internal/core"
)

func frame(words ...any) []byte {
	var b []byte
	for _, w := range words {
		switch w := w.(type) {
		case uint32:
			b = binary.LittleEndian.AppendUint32(b, w)
		case string:
			b = append(b, w...)
		}
	}
	return b
}

func TestDecode(t *testing.T) {
	in := frame(uint32(3), uint32(1), "a", uint32(MissingLength), uint32(0))
	parts, err := Decode(nil, in)
	if err != nil {
		t.Fatal(err)
	}
	if len(parts) != 3 || string(parts[0].Data) != "a" || parts[0].Missing ||
		!parts[1].Missing || parts[1].Data != nil || parts[2].Missing || len(parts[2].Data) != 0 {
		t.Fatalf("parts %+v", parts)
	}
	if cap(parts[0].Data) != 1 {
		t.Fatal("part capacity must be clipped so appends cannot overwrite the next part")
	}
	if parts, err := Decode(nil, frame(uint32(0))); err != nil || len(parts) != 0 {
		t.Fatalf("zero parts: %v %v", parts, err)
	}
}

func TestDecodeMalformed(t *testing.T) {
	for name, in := range map[string][]byte{
		"empty":             nil,
		"short count":       {1, 0},
		"count too large":   frame(uint32(2), uint32(0)),
		"huge count":        frame(uint32(0xFFFFFFF0)),
		"truncated length":  frame(uint32(1), "ab"),
		"length past end":   frame(uint32(1), uint32(5), "abc"),
		"trailing bytes":    frame(uint32(1), uint32(1), "ab"),
		"missing then data": frame(uint32(1), uint32(MissingLength), "x"),
	} {
		parts, err := Decode(make([]Part, 0, 4), in)
		if !errors.Is(err, ErrMalformed) || len(parts) != 0 {
			t.Errorf("%s: parts=%v err=%v", name, parts, err)
		}
	}
}

func TestAppendRoundTrip(t *testing.T) {
	want := []Part{{Data: []byte("one")}, {Missing: true}, {Data: []byte{}}, {Data: bytes.Repeat([]byte{7}, 300)}}
	b := Append(nil, want)
	got, err := Decode(nil, b)
	if err != nil || len(got) != len(want) {
		t.Fatalf("%v %v", got, err)
	}
	for i := range want {
		if got[i].Missing != want[i].Missing || !bytes.Equal(got[i].Data, want[i].Data) {
			t.Fatalf("part %d: %+v want %+v", i, got[i], want[i])
		}
	}
}

func TestDecodeReusesStorage(t *testing.T) {
	in := Append(nil, []Part{{Data: []byte("a")}, {Missing: true}, {Data: []byte("bc")}})
	parts := make([]Part, 0, 8)
	allocs := testing.AllocsPerRun(100, func() {
		var err error
		parts, err = Decode(parts, in)
		if err != nil || len(parts) != 3 {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("Decode allocated %v times per call with a reused slice", allocs)
	}
}

func TestCall(t *testing.T) {
	core.Host = core.NewFakeHost()
	fn = nil
	if r := call(core.WriteInput(frame(uint32(0)))); r != -1 {
		t.Fatal("unregistered merge should fail")
	}
	Handle(func(parts []Part) ([]byte, error) {
		var out []string
		for _, p := range parts {
			if p.Missing {
				out = append(out, "?")
			} else {
				out = append(out, string(p.Data))
			}
		}
		return []byte(strings.Join(out, ",")), nil
	})
	r := call(core.WriteInput(Append(nil, []Part{{Data: []byte("x")}, {Missing: true}, {Data: []byte("yz")}})))
	if r < 0 || string(core.Output()) != "x,?,yz" {
		t.Fatalf("r=%d out=%q", r, core.Output())
	}
	if r := call(core.WriteInput([]byte{1})); r != -1 || !strings.Contains(core.Host.LastError(), "malformed") {
		t.Fatalf("malformed: r=%d msg=%q", r, core.Host.LastError())
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte{})
	f.Add(frame(uint32(0)))
	f.Add(frame(uint32(2), uint32(1), "a", uint32(MissingLength)))
	f.Add(frame(uint32(1), uint32(3), "abc"))
	f.Add(frame(uint32(0xFFFFFFFF)))
	f.Fuzz(func(t *testing.T, in []byte) {
		parts, err := Decode(nil, in)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error not wrapping ErrMalformed: %v", err)
			}
			return
		}
		if out := Append(nil, parts); !bytes.Equal(out, in) {
			t.Fatalf("re-encoding differs:\n in %x\nout %x", in, out)
		}
	})
}
