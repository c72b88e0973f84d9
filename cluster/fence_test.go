package cluster

import (
	"errors"
	"testing"
)

func TestFence(t *testing.T) {
	tests := []struct {
		name  string
		lease string
		token uint64
		err   error
	}{
		{"first write", "a", 5, nil},
		{"same term again", "a", 5, nil},
		{"newer leader", "a", 9, nil},
		{"old leader after takeover", "a", 5, ErrStaleToken},
		{"other lease is independent", "b", 1, nil},
		{"zero token", "a", 0, ErrInvalid},
	}
	var f Fence
	for _, tt := range tests { // sequential: each step sees the previous ones
		if err := f.Admit(tt.lease, tt.token); !errors.Is(err, tt.err) {
			t.Fatalf("%s: Admit(%s, %d) = %v, want %v", tt.name, tt.lease, tt.token, err, tt.err)
		}
	}
	if f.Highest("a") != 9 {
		t.Fatalf("highest = %d", f.Highest("a"))
	}
}
