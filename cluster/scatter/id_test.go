package scatter

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// Request ids must not be predictable from the ones an ingress answer shows: an outsider who
// could compute the next ids could send them ahead and have legitimate requests dropped as
// duplicates. No shared prefix, no counter.
func TestRequestIDsUnpredictable(t *testing.T) {
	s, err := newIDSource()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[RequestID]bool{}
	prev := s.next()
	for range 10000 {
		id := s.next()
		if seen[id] {
			t.Fatalf("id %s twice", id)
		}
		seen[id] = true
		if bytes.Equal(id[:8], prev[:8]) {
			t.Fatalf("ids %s and %s share their first 8 bytes", prev, id)
		}
		if d := binary.BigEndian.Uint64(id[8:]) - binary.BigEndian.Uint64(prev[8:]); d < 1<<16 {
			t.Fatalf("ids %s and %s: the second half grows by %d, like a counter", prev, id, d)
		}
		prev = id
	}
	other, _ := newIDSource()
	if a, b := s.next(), other.next(); a == b {
		t.Fatal("two sources gave the same id")
	}
}
