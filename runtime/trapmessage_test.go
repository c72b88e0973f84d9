package runtime_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/wasmpod/wasmpod/runtime"
)

// TestTrapKeepsGuestMessage: what a guest passes to the error import before it traps (the SDKs'
// panic and abort messages: ABI section 4, "attaches a message to the current call's failure")
// is the trap's Message and is in its error text; the host keeps at most 4 KiB of it, cut where
// no UTF-8 character is split. Before, a trap carried only wazero's text, and the message was cut
// at 4,096 bytes exactly.
func TestTrapKeepsGuestMessage(t *testing.T) {
	e := newEngine(t, runtime.Config{})
	cfg := runtime.DefaultModuleConfig("said")
	cfg.MaxConcurrency = 1
	m := started(t, e, trapkit(t), cfg)
	long := strings.Repeat("a", 4095) + "€ and more"
	cases := []struct {
		name, said, want string
	}{
		{"a panic message", "panicked at 'boom ✓'", "panicked at 'boom ✓'"},
		{"4 KiB cut before a split character", long, strings.Repeat("a", 4095)},
		{"no message", "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := m.Call(context.Background(), runtime.RoleHandle, append([]byte{0xEE}, c.said...), nil)
			var te *runtime.TrapError
			if !errors.As(err, &te) || te.Kind != "unreachable" {
				t.Fatalf("err %v, want an unreachable trap", err)
			}
			if te.Message != c.want || !utf8.ValidString(te.Message) {
				t.Fatalf("Message %q (%d bytes), want %q (%d bytes)", te.Message, len(te.Message), c.want, len(c.want))
			}
			if c.want != "" && !strings.Contains(err.Error(), c.want) {
				t.Fatalf("the error text does not carry the guest's message: %v", err)
			}
		})
	}
	// A call after the trap that passed a message does not inherit it.
	_, err := m.Call(context.Background(), runtime.RoleHandle, []byte{0}, nil)
	var te *runtime.TrapError
	if !errors.As(err, &te) || te.Message != "" {
		t.Fatalf("a later trap: %v (Message %q), want none", err, te.Message)
	}
}
