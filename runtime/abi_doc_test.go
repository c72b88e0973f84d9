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

// TestABIDocExtismTable: guest-sdk/ABI.md section 8 says what wasmpod does with every host
// function extism go-sdk defines in extism:host/env and every manifest field; a function or
// field missing from the table fails.
func TestABIDocExtismTable(t *testing.T) {
	doc := readFile(t, "../guest-sdk/ABI.md")
	sec := regexp.MustCompile("(?s)## 8\\. Extism plugins\n(.*?)\n## 9\\.").FindSubmatch(doc)
	if sec == nil {
		t.Fatal("ABI.md has no section 8 followed by section 9")
	}
	// The host functions of extism go-sdk v1.7.1's env module (host.go, instantiateEnvModule).
	hostFns := []string{"alloc", "free", "load_u8", "input_load_u8", "store_u64", "store_u8", "input_set", "output_set",
		"input_length", "input_offset", "output_length", "output_offset", "length", "length_unsafe", "reset",
		"error_set", "error_get", "memory_bytes", "input_load_u64", "load_u64", "config_get", "var_get", "var_set",
		"http_request", "http_status_code", "http_headers", "get_log_level", "log_trace", "log_debug", "log_info", "log_warn", "log_error"}
	// The fields of extism go-sdk's Manifest (JSON names).
	fields := []string{"wasm[].path", "wasm[].hash", "wasm[].url", "wasm[].data", "wasm[].name", "memory.max_pages",
		"memory.max_http_response_bytes", "memory.max_var_bytes", "config", "allowed_hosts", "allowed_paths", "timeout_ms"}
	for _, name := range append(hostFns, fields...) {
		if !regexp.MustCompile("(?m)^\\|[^\\n]*`" + regexp.QuoteMeta(name) + "`").Match(sec[1]) {
			t.Errorf("ABI.md section 8 has no table row for %s", name)
		}
	}
}
