package abicheck

import "testing"

func TestCheckHTTPResponse(t *testing.T) {
	ok := []byte{200, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 'a', 1, 0, 0, 0, 'b', 2, 0, 0, 0, 'h', 'i'}
	if err := checkHTTPResponse(ok); err != nil {
		t.Fatal(err)
	}
	for _, bad := range [][]byte{nil, ok[:len(ok)-1], append(append([]byte{}, ok...), 0), {1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}} {
		if err := checkHTTPResponse(bad); err == nil {
			t.Errorf("%x accepted", bad)
		}
	}
}

// FuzzCheckHTTPResponse: guest output is untrusted; the check never panics.
func FuzzCheckHTTPResponse(f *testing.F) {
	f.Add([]byte{200, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{200, 0, 0, 0, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) { _ = checkHTTPResponse(b) })
}
