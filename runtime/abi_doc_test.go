package runtime_test

import (
	"bytes"
	"context"
	"regexp"
	"testing"

	"github.com/wasmpod/wasmpod/internal/wasmbuild"
	"github.com/wasmpod/wasmpod/runtime"
)

// TestABIDocWATExample keeps guest-sdk/ABI.md section 7 and guest-sdk/examples/smallest-leaf.wat
// the same, and runs the example through the runtime.
func TestABIDocWATExample(t *testing.T) {
	doc := readFile(t, "../guest-sdk/ABI.md")
	m := regexp.MustCompile("(?s)## 7\\. The smallest plugin, in WAT\n.*?```wat\n(.*?)```").FindSubmatch(doc)
	if m == nil {
		t.Fatal("ABI.md has no WAT code block in section 7")
	}
	file := readFile(t, "../guest-sdk/examples/smallest-leaf.wat")
	if !bytes.Equal(m[1], file) {
		t.Fatalf("ABI.md section 7 and guest-sdk/examples/smallest-leaf.wat differ:\n--- ABI.md\n%s\n--- file\n%s", m[1], file)
	}
	wasm := readFile(t, wasmbuild.WAT(t, "../guest-sdk/examples/smallest-leaf.wat"))
	if a, err := runtime.DetectABI(wasm); err != nil || a != runtime.ABINative {
		t.Fatalf("DetectABI: %s %v", a, err)
	}
	e := newEngine(t, runtime.DefaultConfig())
	mod := started(t, e, wasm, runtime.DefaultModuleConfig("smallest"))
	ctx := context.Background()
	for _, in := range []string{"", "hello", string(make([]byte, 65536))} {
		out, err := mod.Call(ctx, runtime.RoleLeaf, []byte(in), nil)
		if err != nil || string(out) != in {
			t.Fatalf("leaf of %d bytes: %d bytes, %v", len(in), len(out), err)
		}
	}
	if _, err := mod.Call(ctx, runtime.RoleLeaf, make([]byte, 65537), nil); err == nil {
		t.Fatal("an input over the example's buffer was accepted")
	}
}
