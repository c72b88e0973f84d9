package runtime_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/wasmpod/wasmpod/runtime"
)

// TestOversizedOutputIsTheGuests: an output over MaxOutputBytes fails with ErrOutput, not
// ErrInput: the caller's request was fine, so hosts must not answer 400 (issue 14).
func TestOversizedOutputIsTheGuests(t *testing.T) {
	cfg := runtime.DefaultConfig()
	cfg.MaxOutputBytes = 64
	e := newEngine(t, cfg)
	m := started(t, e, kit(t), kitConfig("big-output"))
	_, err := m.Call(context.Background(), runtime.RoleHandle, []byte("echo:"+strings.Repeat("x", 100)), nil)
	if !errors.Is(err, runtime.ErrOutput) || errors.Is(err, runtime.ErrInput) {
		t.Fatalf("got %v, want ErrOutput (and not ErrInput)", err)
	}
}
