package snapshot

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"
)

const wasmSum = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

func TestRoundTrip(t *testing.T) {
	for _, s := range []Snapshot{
		{Module: "web", WasmSHA256: wasmSum, State: []byte("42")},
		{Module: "m", State: nil},
		{Module: strings.Repeat("a", MaxNameLen), State: bytes.Repeat([]byte{0xff}, 1000)},
	} {
		b, err := Encode(s)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Decode(b)
		if err != nil {
			t.Fatalf("%s: %v", s.Module, err)
		}
		if got.Module != s.Module || got.WasmSHA256 != s.WasmSHA256 || !bytes.Equal(got.State, s.State) {
			t.Fatalf("round trip: got %+v want %+v", got, s)
		}
	}
}

func TestDecodeRefuses(t *testing.T) {
	good, _ := Encode(Snapshot{Module: "web", State: []byte("hello")})
	flip := bytes.Clone(good)
	flip[len(flip)-1] ^= 1
	for name, b := range map[string][]byte{
		"empty":     nil,
		"magic":     append([]byte("XXXXXXXX"), good[8:]...),
		"truncated": good[:len(good)-1],
		"trailing":  append(bytes.Clone(good), 0),
		"bitflip":   flip,
		"header":    good[:12],
	} {
		if _, err := Decode(b); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: got %v, want ErrCorrupt", name, err)
		}
	}
}

func TestStore(t *testing.T) {
	st, err := NewStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if s, err := st.Load("web"); s != nil || err != nil {
		t.Fatalf("missing: %v %v", s, err)
	}
	if err := st.Save(Snapshot{Module: "web", State: []byte("7")}); err != nil {
		t.Fatal(err)
	}
	s, err := st.Load("web")
	if err != nil || string(s.State) != "7" {
		t.Fatalf("load: %v %v", s, err)
	}
	b, _ := os.ReadFile(st.Path("web"))
	os.WriteFile(st.Path("other"), b, 0o600)
	if _, err := st.Load("other"); !errors.Is(err, ErrMismatch) {
		t.Fatalf("other: %v", err)
	}
	b[len(b)-1] = 'x'
	os.WriteFile(st.Path("web"), b, 0o600)
	if _, err := st.Load("web"); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), st.Path("web")) {
		t.Fatalf("corrupt: %v", err)
	}
}

func FuzzDecode(f *testing.F) {
	good, _ := Encode(Snapshot{Module: "web", WasmSHA256: wasmSum, State: []byte("hello")})
	f.Add(good)
	f.Add([]byte(Magic))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := Decode(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error does not wrap ErrCorrupt: %v", err)
			}
			return
		}
		again, err := Encode(s)
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("decoded snapshot does not re-encode to the same bytes: %v", err)
		}
	})
}
