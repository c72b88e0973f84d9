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

// customSection appends a custom section (id 0) named name with payload to a module.
func customSection(wasm []byte, name string, payload []byte) []byte {
	var body []byte
	body = appendULEB(body, uint32(len(name)))
	body = append(body, name...)
	body = append(body, payload...)
	out := append(append([]byte{}, wasm...), 0)
	out = appendULEB(out, uint32(len(body)))
	return append(out, body...)
}

// producers is the payload of a "producers" section naming one language, as compilers write it.
func producers(language string) []byte {
	var b []byte
	str := func(s string) { b = appendULEB(b, uint32(len(s))); b = append(b, s...) }
	b = appendULEB(b, 1) // one field
	str("language")
	b = appendULEB(b, 1) // one value
	str(language)
	str("")
	return b
}

func appendULEB(b []byte, v uint32) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v == 0 {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

// TestCommandHint: a native module built as a WASI command (it exports _start) is warned about
// with the fix for the language it was written in. A Go plugin built without
// -buildmode=c-shared, the likeliest such mistake, used to be told to use clang.
func TestCommandHint(t *testing.T) {
	command := `(module (memory (export "memory") 4)
  (func (export "wasmpod_abi_version") (result i32) (i32.const 1))
  (func (export "wasmpod_buffer") (param i32) (result i32) (i32.const 65536))
  (func (export "wasmpod_handle") (param i32) (result i64) (i64.const 0))
  (func (export "_start")))`
	wat := func(tb testing.TB) []byte {
		b, err := os.ReadFile(wasmbuild.WATString(tb, command))
		if err != nil {
			tb.Fatal(err)
		}
		return b
	}
	for _, tc := range []struct {
		name      string
		wasm      func(testing.TB) []byte
		want, not string
	}{
		{"unknown language", wat, "clang -mexec-model=reactor", ""},
		{"C", func(tb testing.TB) []byte { return customSection(wat(tb), "producers", producers("C99")) }, "clang -mexec-model=reactor", "cdylib"},
		{"Rust", func(tb testing.TB) []byte { return customSection(wat(tb), "producers", producers("Rust")) }, `crate-type = ["cdylib"]`, "clang"},
		{"Go, built as a command", func(tb testing.TB) []byte {
			if testing.Short() {
				tb.Skip("builds a Go plugin")
			}
			b, err := os.ReadFile(wasmbuild.GoCommand(tb, root+"plugins/echo"))
			if err != nil {
				tb.Fatal(err)
			}
			return b
		}, "-buildmode=c-shared", "clang"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			if _, err := abicheck.RunWith(context.Background(), tc.wasm(t), &out, abicheck.Options{LargeInput: 70000}); err != nil {
				t.Fatal(err)
			}
			var warn string
			for _, line := range strings.Split(out.String(), "\n") {
				if strings.Contains(line, "WARN  exports _start") {
					warn = line
				}
			}
			if warn == "" || !strings.Contains(warn, tc.want) || (tc.not != "" && strings.Contains(warn, tc.not)) {
				t.Fatalf("want a warning about _start that says %q (and not %q):\n%s", tc.want, tc.not, out.String())
			}
		})
	}
}
