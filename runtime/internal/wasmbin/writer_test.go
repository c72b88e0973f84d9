package wasmbin

import "testing"

// TestLEBRoundTrip: what AppendU64/AppendS64 write, the Reader reads back.
func TestLEBRoundTrip(t *testing.T) {
	for _, v := range []uint64{0, 1, 63, 64, 127, 128, 16383, 16384, 1<<32 - 1, 1<<63 + 5} {
		r := &Reader{B: AppendU64(nil, v)}
		if got := r.Leb(10); got != v || r.Err != nil || !r.Done() {
			t.Errorf("u %d: read %d, %v", v, got, r.Err)
		}
	}
	for _, v := range []int64{0, 1, -1, 63, 64, -64, -65, 1 << 31, -(1 << 31), 1<<33 - 1} {
		b := AppendS64(nil, v)
		r := &Reader{B: b}
		if v >= -(1<<32) && v < 1<<32 { // S33's range
			if got := r.S33(); got != v || r.Err != nil || !r.Done() {
				t.Errorf("s %d (% x): read %d, %v", v, b, got, r.Err)
			}
		}
	}
}
