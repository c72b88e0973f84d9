package abicheck_test

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"

	"github.com/wasmpod/wasmpod/host/internal/abicheck"
	"github.com/wasmpod/wasmpod/internal/wasmbuild"
)

// TestAssemblyScriptEnvImports: an AssemblyScript module built without the SDK's asconfig.json
// imports env.abort (and env.trace, env.seed, env.Date.now), which the host refuses; the report
// says how to build it instead of only naming the import.
func TestAssemblyScriptEnvImports(t *testing.T) {
	const exports = `(memory (export "memory") 4)
  (func (export "wasmpod_abi_version") (result i32) (i32.const 1))
  (func (export "wasmpod_buffer") (param i32) (result i32) (i32.const 65536))
  (func (export "wasmpod_leaf") (param i32) (result i64) (i64.const 0))`
	for _, tc := range []struct {
		name, imports string
		want          []string
	}{
		{"abort", `(import "env" "abort" (func (param i32 i32 i32 i32)))`, []string{"FAIL", "env.abort", "asconfig.json"}},
		{"Date.now", `(import "env" "Date.now" (func (result f64)))`, []string{"FAIL", "env.Date.now", "nowUnixMs"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wasm, err := os.ReadFile(wasmbuild.WATString(t, "(module "+tc.imports+"\n  "+exports+")"))
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			ok, err := abicheck.RunWith(context.Background(), wasm, &out, abicheck.Options{LargeInput: 70000})
			if err != nil || ok {
				t.Fatalf("ok=%t err=%v, want a violation:\n%s", ok, err, out.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(out.String(), w) {
					t.Fatalf("report lacks %q:\n%s", w, out.String())
				}
			}
		})
	}
}
