package lifecycle

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestStack(t *testing.T) {
	errBoom := errors.New("boom")
	for _, tc := range []struct {
		name     string
		parts    []string
		failing  map[string]bool
		wantErrs []string
	}{
		{"empty", nil, nil, nil},
		{"reverse order", []string{"node", "supervisor", "admin"}, nil, nil},
		{"every part stops though one fails", []string{"node", "supervisor", "admin"}, map[string]bool{"supervisor": true}, []string{"supervisor: boom"}},
		{"errors joined, last started first", []string{"a", "b"}, map[string]bool{"a": true, "b": true}, []string{"b: boom", "a: boom"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var s Stack
			var stopped []string
			for _, p := range tc.parts {
				s.Push(p, func(context.Context) error {
					stopped = append(stopped, p)
					if tc.failing[p] {
						return errBoom
					}
					return nil
				})
			}
			if s.Len() != len(tc.parts) {
				t.Fatalf("Len %d, want %d", s.Len(), len(tc.parts))
			}
			err := s.Stop(context.Background())
			want := slices.Clone(tc.parts)
			slices.Reverse(want)
			if !slices.Equal(stopped, want) {
				t.Errorf("stopped %v, want %v", stopped, want)
			}
			if (err != nil) != (len(tc.wantErrs) > 0) || (err != nil && !errors.Is(err, errBoom)) {
				t.Fatalf("err %v, want %v", err, tc.wantErrs)
			}
			if err != nil && err.Error() != strings.Join(tc.wantErrs, "\n") {
				t.Errorf("err %q, want %q", err, strings.Join(tc.wantErrs, "\n"))
			}
			stopped = nil
			if err := s.Stop(context.Background()); err != nil || len(stopped) != 0 || s.Len() != 0 {
				t.Errorf("second Stop: %v, stopped %v", err, stopped)
			}
		})
	}
}

func TestPushFunc(t *testing.T) {
	var s Stack
	n := 0
	s.PushFunc("loop", func() { n++ })
	if err := s.Stop(context.Background()); err != nil || n != 1 {
		t.Fatalf("Stop: %v, %d calls", err, n)
	}
}

// TestStopSurvivesAPanic: a stop function that panics does not keep the parts started before it
// from stopping (the supervisor, whose stop saves the modules' snapshots, is pushed before the
// listeners); the panic comes back as that part's error, with its stack.
func TestStopSurvivesAPanic(t *testing.T) {
	var s Stack
	var stopped []string
	s.PushFunc("supervisor", func() { stopped = append(stopped, "supervisor") })
	s.PushFunc("ingress", func() { panic("listener already closed") })
	s.PushFunc("admin", func() { stopped = append(stopped, "admin") })
	err := s.Stop(context.Background())
	if !slices.Equal(stopped, []string{"admin", "supervisor"}) {
		t.Fatalf("stopped %v, want admin and supervisor", stopped)
	}
	if err == nil || !strings.HasPrefix(err.Error(), "ingress: panic: listener already closed") || !strings.Contains(err.Error(), "lifecycle_test.go") {
		t.Fatalf("err %v, want ingress's panic with its stack", err)
	}
}
