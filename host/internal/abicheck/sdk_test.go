package abicheck_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/wasmpod/wasmpod/internal/wasmbuild"
	"github.com/wasmpod/wasmpod/runtime"
)

// TestLongErrorMessage: every SDK cuts an error message longer than the host keeps (4 KiB) at
// a UTF-8 boundary, so the caller gets valid text: the guests fail with "xy" and 2,000 "€" (3
// bytes each), which the limit would split. Each used to cut at 4,096 bytes exactly.
func TestLongErrorMessage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a guest in every language")
	}
	const dir = "testdata/longerr/"
	want := "xy" + strings.Repeat("€", 1364) // 4,094 bytes
	for _, tc := range []struct {
		lang   string
		build  func(testing.TB) string
		inputs []string // what the guest is called with; the C guest formats with "f"
	}{
		{"go", func(tb testing.TB) string { return wasmbuild.Go(tb, dir+"go") }, []string{"x"}},
		{"c", func(tb testing.TB) string { return wasmbuild.C(tb, dir+"c") }, []string{"x", "f"}},
		{"rust", func(tb testing.TB) string { return wasmbuild.Rust(tb, dir+"rust") }, []string{"x"}},
		{"assemblyscript", func(tb testing.TB) string { return wasmbuild.AssemblyScript(tb, dir+"as") }, []string{"x"}},
	} {
		t.Run(tc.lang, func(t *testing.T) {
			wasm, err := os.ReadFile(tc.build(t))
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			e, err := runtime.NewEngine(ctx, runtime.DefaultConfig())
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close(ctx)
			cfg := runtime.DefaultModuleConfig("longerr")
			cfg.MaxMemoryPages = 1024
			m, err := e.Load(ctx, wasm, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close(ctx)
			if err := m.Start(ctx, runtime.StartOptions{}); err != nil {
				t.Fatal(err)
			}
			for _, in := range tc.inputs {
				_, err = m.Call(ctx, runtime.RoleHandle, []byte(in), nil)
				var ge *runtime.GuestError
				if !errors.As(err, &ge) {
					t.Fatalf("input %q: want a guest error, got %v", in, err)
				}
				if ge.Message != want {
					t.Errorf("input %q: message of %d bytes (valid UTF-8 %t), ends %q; want %d bytes ending %q",
						in, len(ge.Message), utf8.ValidString(ge.Message), tail(ge.Message), len(want), tail(want))
				}
			}
		})
	}
}

func tail(s string) string { return s[max(0, len(s)-8):] }
