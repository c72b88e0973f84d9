package abicheck_test

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/host/internal/abicheck"
	"github.com/wasmpod/wasmpod/internal/wasmbuild"
)

// TestMergeAcceptsMalformed: a merge that answers malformed framing (ABI 2.1: "a guest should
// refuse trailing bytes as malformed") is warned about for each malformed input, not passed
// silently; one that refuses it gets no warning. Neither is a violation.
func TestMergeAcceptsMalformed(t *testing.T) {
	const head = `(memory (export "memory") 4)
  (func (export "wasmpod_abi_version") (result i32) (i32.const 1))
  (func (export "wasmpod_buffer") (param i32) (result i32) (i32.const 65536))`
	for _, tc := range []struct {
		name, wat string
		warnings  int
	}{
		// Answers every input with an empty result.
		{"accepts everything", `(module ` + head + `
  (func (export "wasmpod_merge") (param i32) (result i64) (i64.const 0)))`, 5},
		// Accepts exactly the inputs whose length is 4 + 4*count + the part bytes of abi-check's
		// well-framed inputs: refuses anything shorter than 4 bytes or with a count above 3.
		{"refuses malformed framing", `(module ` + head + `
  (func (export "wasmpod_merge") (param $n i32) (result i64)
    (if (i32.lt_u (local.get $n) (i32.const 4)) (then (return (i64.const -1))))
    (if (i32.gt_u (i32.load (i32.const 65536)) (i32.const 3)) (then (return (i64.const -1))))
    (if (i32.eqz (i32.load (i32.const 65536)))
      (then (return (select (i64.const 0) (i64.const -1) (i32.eq (local.get $n) (i32.const 4))))))
    (if (i32.eq (i32.load (i32.const 65536)) (i32.const 1))
      (then (return (select (i64.const 0) (i64.const -1) (i32.eq (local.get $n) (i32.add (i32.const 8) (i32.load (i32.const 65540))))))))
    (i64.const 0)))`, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wasm, err := os.ReadFile(wasmbuild.WATString(t, tc.wat))
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			ok, err := abicheck.RunWith(context.Background(), wasm, &out, abicheck.Options{CallTimeout: 2 * time.Second, LargeInput: 70000})
			if err != nil || !ok {
				t.Fatalf("ok=%t err=%v, want a conforming module:\n%s", ok, err, out.String())
			}
			if n := strings.Count(out.String(), "WARN  merge: bad framing") + strings.Count(out.String(), "WARN  merge: empty input"); n != tc.warnings {
				t.Fatalf("%d warnings about accepted malformed merge input, want %d:\n%s", n, tc.warnings, out.String())
			}
		})
	}
}
