package scatter

import (
	"bytes"
	"errors"
	"net/http"
	"testing"
	"time"
)

func TestParseWire(t *testing.T) {
	id := RequestID{0xde, 0xad, 0xbe, 0xef}
	good := WireRequest{Path: []byte(PathPrefix + "s-1"), RequestID: id.appendHex(nil), Budget: []byte("1500")}
	tests := []struct {
		name   string
		mutate func(r *WireRequest)
		want   error
	}{
		{"ok", func(*WireRequest) {}, nil},
		{"no shard", func(r *WireRequest) { r.Path = []byte(PathPrefix) }, ErrMalformed},
		{"other path", func(r *WireRequest) { r.Path = []byte("/x/s") }, ErrMalformed},
		{"slash in shard", func(r *WireRequest) { r.Path = []byte(PathPrefix + "a/b") }, ErrMalformed},
		{"short id", func(r *WireRequest) { r.RequestID = []byte("abc") }, ErrMalformed},
		{"id not hex", func(r *WireRequest) { r.RequestID = bytes.Repeat([]byte("z"), 32) }, ErrMalformed},
		{"no budget", func(r *WireRequest) { r.Budget = nil }, ErrMalformed},
		{"negative budget", func(r *WireRequest) { r.Budget = []byte("-5") }, ErrMalformed},
		{"zero budget", func(r *WireRequest) { r.Budget = []byte("0") }, ErrDeadline},
		{"huge budget", func(r *WireRequest) { r.Budget = []byte("9999999999999") }, ErrMalformed},
	}
	for _, tc := range tests {
		r := good
		tc.mutate(&r)
		p, err := parseWire(r, time.Second)
		if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
			continue
		}
		if err == nil && (p.id != id || string(p.shard) != "s-1" || p.budget != 1500*time.Microsecond) {
			t.Errorf("%s: parsed %+v", tc.name, p)
		}
	}
	r := good
	r.Budget = []byte("999999999")
	if p, err := parseWire(r, time.Second); err != nil || p.budget != time.Second {
		t.Errorf("budget not capped: %v %v", p.budget, err)
	}
}

func TestDecodeAnswer(t *testing.T) {
	tests := []struct {
		status int
		want   error
	}{
		{http.StatusOK, nil},
		{http.StatusBadRequest, ErrMalformed},
		{http.StatusNotFound, ErrUnknownShard},
		{http.StatusConflict, ErrDuplicate},
		{http.StatusServiceUnavailable, ErrOverloaded},
		{http.StatusGatewayTimeout, ErrDeadline},
		{http.StatusTeapot, ErrRemote},
	}
	for _, tc := range tests {
		out, err := decodeAnswer(tc.status, []byte("part"), []byte("x"))
		if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
			t.Errorf("%d: %v, want %v", tc.status, err, tc.want)
		}
		if tc.want == nil && string(out) != "xpart" {
			t.Errorf("%d: out %q", tc.status, out)
		}
		// statusOf is decodeAnswer's inverse for our own sentinels.
		if tc.want != nil && tc.want != ErrRemote && statusOf(err) != tc.status {
			t.Errorf("statusOf(%v) = %d, want %d", err, statusOf(err), tc.status)
		}
	}
}

// FuzzParseWire feeds the internal endpoint's request parser arbitrary paths and headers: it
// must never panic, and what it accepts must round-trip through the client's encoding.
func FuzzParseWire(f *testing.F) {
	id := RequestID{1, 2, 3}
	f.Add([]byte(PathPrefix+"shard-0"), id.appendHex(nil), []byte("200000"))
	f.Add([]byte(PathPrefix), []byte(""), []byte("0"))
	f.Add([]byte("/_wasmpod/scatter/v1/\x00"), bytes.Repeat([]byte("F"), 32), []byte("999999999999"))
	f.Fuzz(func(t *testing.T, path, rid, budget []byte) {
		p, err := parseWire(WireRequest{Path: path, RequestID: rid, Budget: budget}, 30*time.Second)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrDeadline) {
				t.Fatalf("error %v wraps no sentinel", err)
			}
			return
		}
		if p.budget <= 0 || p.budget > 30*time.Second || len(p.shard) == 0 {
			t.Fatalf("accepted %+v", p)
		}
		again, err := parseWire(WireRequest{Path: append([]byte(PathPrefix), p.shard...), RequestID: p.id.appendHex(nil), Budget: appendBudget(nil, p.budget)}, 30*time.Second)
		if err != nil || again.id != p.id || string(again.shard) != string(p.shard) || again.budget != p.budget {
			t.Fatalf("round trip: %+v %v, want %+v", again, err, p)
		}
	})
}

// FuzzDecodeAnswer feeds the client's answer decoder arbitrary statuses and bodies.
func FuzzDecodeAnswer(f *testing.F) {
	f.Add(200, []byte("part"))
	f.Add(409, []byte("duplicate"))
	f.Add(-1, bytes.Repeat([]byte("x"), 2000))
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		out, err := decodeAnswer(status, body, nil)
		if status == http.StatusOK {
			if err != nil || !bytes.Equal(out, body) {
				t.Fatalf("200: %q %v", out, err)
			}
			return
		}
		if err == nil || len(out) != 0 {
			t.Fatalf("status %d accepted", status)
		}
		if len(err.Error()) > 4*maxMessage+100 {
			t.Fatalf("unbounded message: %d bytes", len(err.Error()))
		}
	})
}

// FuzzParseBatch feeds the batched request parser arbitrary bodies: what it accepts re-encodes
// to the same request.
func FuzzParseBatch(f *testing.F) {
	id := RequestID{1, 2, 3}
	f.Add(appendBatchBody(nil, [][]byte{[]byte("s0"), []byte("s1")}, []byte("input")), []byte("200000"))
	f.Add([]byte{0, 0}, []byte("1"))
	f.Add([]byte{1, 0, 255, 255, 'a'}, []byte("5"))
	f.Fuzz(func(t *testing.T, body, budget []byte) {
		b, err := parseBatch(WireRequest{Path: []byte(PathBatch), RequestID: id.appendHex(nil), Budget: budget, Body: body}, 30*time.Second)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrDeadline) {
				t.Fatalf("error %v wraps no sentinel", err)
			}
			return
		}
		if len(b.shards) == 0 || len(b.shards) > MaxBatchShards || b.budget <= 0 || b.budget > 30*time.Second {
			t.Fatalf("accepted %+v", b)
		}
		if again := appendBatchBody(nil, b.shards, b.in); !bytes.Equal(again, body) {
			t.Fatalf("round trip: %x, want %x", again, body)
		}
	})
}

func TestHasFeature(t *testing.T) {
	for v, want := range map[string]bool{"batch": true, "x, batch": true, "batch ,y": true, "": false, "batches": false, "x,": false} {
		if got := hasFeature([]byte(v), FeatureBatch); got != want {
			t.Errorf("%q: %v, want %v", v, got, want)
		}
	}
}
