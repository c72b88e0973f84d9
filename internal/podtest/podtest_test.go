package podtest

import "testing"

// TestFreePortNeverRepeats: ports handed out and not yet bound are never handed out again,
// even though the kernel is free to offer them to the next listener on port 0.
func TestFreePortNeverRepeats(t *testing.T) {
	seen := map[int]bool{}
	for range 300 {
		p := FreePort(t)
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
	}
}
