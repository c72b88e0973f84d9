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

// TestCompileBudget: a native leaf that declares a table of 134M entries (1 GiB per instance)
// fails abi-check on the compile budget, named, before anything compiles or instantiates it.
func TestCompileBudget(t *testing.T) {
	wasm, err := os.ReadFile(wasmbuild.WATString(t, `(module
  (memory (export "memory") 2)
  (table 134000000 funcref)
  (func (export "wasmpod_abi_version") (result i32) (i32.const 1))
  (func (export "wasmpod_buffer") (param i32) (result i32) (i32.const 1024))
  (func (export "wasmpod_leaf") (param i32) (result i64) (i64.const 0)))`))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	start := time.Now()
	ok, err := abicheck.RunWith(context.Background(), wasm, &out, abicheck.Options{CallTimeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if ok || !strings.Contains(out.String(), "FAIL  compile budget:") || !strings.Contains(out.String(), "MaxTableEntries") {
		t.Fatalf("ok=%v after %v, output:\n%s", ok, time.Since(start), out.String())
	}
}
