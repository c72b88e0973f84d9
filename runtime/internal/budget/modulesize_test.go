package budget_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/wasmpod/wasmpod/runtime/internal/budget"
	"github.com/wasmpod/wasmpod/runtime/internal/budget/corpus"
)

// TestMaxModuleBytes: a module over MaxModuleBytes is refused first, before any other limit and
// even when too malformed to measure, with an error naming the limit; one at it passes.
func TestMaxModuleBytes(t *testing.T) {
	wasm := corpus.Functions(10)
	n := uint64(len(wasm))
	cases := []struct {
		name  string
		wasm  []byte
		l     budget.Limits
		limit string // "" = must pass
	}{
		{"a byte over", wasm, budget.Limits{MaxModuleBytes: n - 1}, "MaxModuleBytes"},
		{"at the limit", wasm, budget.Limits{MaxModuleBytes: n}, ""},
		{"zero: no limit", wasm, budget.Limits{}, ""},
		{"over it and over MaxFunctions", wasm, budget.Limits{MaxModuleBytes: n - 1, MaxFunctions: 1}, "MaxModuleBytes"},
		{"over it and no wasm at all", make([]byte, 100), budget.Limits{MaxModuleBytes: 99}, "MaxModuleBytes"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := budget.Check(c.wasm, c.l)
			if c.limit == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var be *budget.Error
			if !errors.As(err, &be) || be.Limit != c.limit || !errors.Is(err, budget.ErrExceeded) {
				t.Fatalf("got %v, want %s", err, c.limit)
			}
			want := fmt.Sprintf("module of %d bytes (limit MaxModuleBytes=%d)", len(c.wasm), c.l.MaxModuleBytes)
			if !strings.Contains(err.Error(), want) {
				t.Fatalf("message %q does not say %q", err, want)
			}
		})
	}
	if budget.Default().MaxModuleBytes == 0 {
		t.Fatal("the default budget has no MaxModuleBytes")
	}
}
