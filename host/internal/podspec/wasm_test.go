package podspec

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/runtime"
)

// testModule encodes a module whose functions are all () -> (i32): one import per entry of
// imports ("module name"), then one defined function per export name.
func testModule(imports []string, exports ...string) []byte {
	sec := func(id byte, body []byte) []byte {
		return append(append([]byte{id}, uleb(len(body))...), body...)
	}
	str := func(s string) []byte { return append(uleb(len(s)), s...) }
	out := []byte("\x00asm\x01\x00\x00\x00")
	out = append(out, sec(1, []byte{1, 0x60, 0, 1, 0x7f})...)
	if len(imports) > 0 {
		body := uleb(len(imports))
		for _, imp := range imports {
			mod, name, _ := strings.Cut(imp, " ")
			body = append(append(append(body, str(mod)...), str(name)...), 0, 0)
		}
		out = append(out, sec(2, body)...)
	}
	fns := uleb(len(exports))
	for range exports {
		fns = append(fns, 0)
	}
	out = append(out, sec(3, fns)...)
	ex := uleb(len(exports))
	code := uleb(len(exports))
	for i, name := range exports {
		ex = append(append(append(ex, str(name)...), 0), uleb(len(imports)+i)...)
		code = append(code, 4, 0, 0x41, 0, 0x0b)
	}
	out = append(out, sec(7, ex)...)
	return append(out, sec(10, code)...)
}

func uleb(n int) []byte {
	var b []byte
	for {
		c := byte(n & 0x7f)
		n >>= 7
		if n != 0 {
			b = append(b, c|0x80)
			continue
		}
		return append(b, c)
	}
}

// nativeWasm is a native module serving main (wasmpod_handle).
var nativeWasm = string(testModule(nil, "wasmpod_abi_version", "wasmpod_buffer", "wasmpod_handle"))

// extismWasm is an Extism plugin exporting count_vowels and run_test.
var extismWasm = string(testModule([]string{"extism:host/env input_length"}, "count_vowels", "run_test"))

// TestCheckWasm: validate (Load) checks that the file plays the module's part, with the same
// rules run uses: the ABI it speaks, and the export or Extism function its role calls.
func TestCheckWasm(t *testing.T) {
	plain := string(testModule(nil, "count_vowels"))
	command := string(testModule(nil, "_start"))
	tests := []struct {
		name, wasm, module string
		want               string // "" for valid
	}{
		{"native main", nativeWasm, "", ""},
		{"native leaf without wasmpod_leaf", nativeWasm, "      role: leaf\n", "spec.modules[0].wasm: $DIR/web.wasm: export not found: role leaf needs export wasmpod_leaf"},
		{"native helper needs nothing", nativeWasm, "      role: sidecar\n    - {name: m, wasm: web.wasm}\n", ""},
		{"an Extism plugin without abi: extism", extismWasm, "", "this is an Extism plugin (it imports from extism:host/env): set abi: extism"},
		{"a native module with abi: extism", nativeWasm, "      abi: extism\n", "this is a native wasmpod module (it exports wasmpod_abi_version), not an Extism plugin: remove abi: extism"},
		{"extism function exists", extismWasm, "      abi: extism\n      extism: {function: count_vowels}\n", ""},
		{"extism function missing", extismWasm, "      abi: extism\n      extism: {function: count_consonants}\n",
			`spec.modules[0].extism.function: $DIR/web.wasm: export not found: no function "count_consonants" (Extism functions: count_vowels, run_test)`},
		{"extism main without a function named for it", extismWasm, "      abi: extism\n",
			"export not found: an Extism module of role main is served by its function http or handle, or the one extism.function names; its functions are count_vowels, run_test (e.g. extism: {function: count_vowels})"},
		{"extism plugin with no imports", plain, "      abi: extism\n      extism: {function: count_vowels}\n", ""},
		{"no imports, native claimed", plain, "", "if it is an Extism plugin that uses no host function, set abi: extism (functions: count_vowels)"},
		{"a command stage", command, "      role: stage\n", ""},
		{"a command as main", command, "", "it exports no wasmpod_abi_version"},
		{"not wasm", "hello", "", "not a WebAssembly module"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFiles(t, dir, map[string]string{"web.wasm": tt.wasm, "pod.yaml": header + "  modules:\n    - name: web\n      wasm: web.wasm\n" + tt.module})
			_, err := Load(filepath.Join(dir, "pod.yaml"))
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Load: %v", err)
			case tt.want == "":
			case err == nil:
				t.Fatalf("Load succeeded, want %q", tt.want)
			case !strings.Contains(err.Error(), strings.ReplaceAll(tt.want, "$DIR", dir)):
				t.Fatalf("Load: %v\nwant %q", err, tt.want)
			}
		})
	}
}

// TestWatchedDirectory: a watched module may name a directory; it runs the newest .wasm file
// in it, skipping hidden and non-.wasm files.
func TestWatchedDirectory(t *testing.T) {
	dir := t.TempDir()
	spec := header + "  modules:\n    - name: web\n      wasm: plugins\n"
	writeFiles(t, dir, map[string]string{"pod.yaml": spec, "plugins/README": "x"})
	if _, err := Load(filepath.Join(dir, "pod.yaml")); err == nil || !strings.Contains(err.Error(), "is a directory; set watch: true") {
		t.Fatalf("a directory without watch: %v", err)
	}
	writeFiles(t, dir, map[string]string{"pod.yaml": spec + "      watch: true\n"})
	if _, err := Load(filepath.Join(dir, "pod.yaml")); err == nil || !strings.Contains(err.Error(), "holds no .wasm file yet") {
		t.Fatalf("an empty directory: %v", err)
	}
	old := time.Now().Add(-time.Hour)
	writeFiles(t, dir, map[string]string{"plugins/a.wasm": nativeWasm, "plugins/b.wasm": nativeWasm, "plugins/.c.wasm": "partial", "plugins/d.wasm.tmp": "partial"})
	if err := os.Chtimes(filepath.Join(dir, "plugins/b.wasm"), old, old); err != nil {
		t.Fatal(err)
	}
	p, err := Load(filepath.Join(dir, "pod.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	f, err := p.WasmFile(p.Module("web"))
	if err != nil || filepath.Base(f) != "a.wasm" {
		t.Fatalf("WasmFile = %s, %v; want the newest, a.wasm", f, err)
	}
	writeFiles(t, dir, map[string]string{"plugins/z.wasm": "broken"})
	if _, err := Load(filepath.Join(dir, "pod.yaml")); err == nil || !strings.Contains(err.Error(), "z.wasm: not a WebAssembly module") {
		t.Fatalf("newest file broken: %v", err)
	}
}

func TestCallRole(t *testing.T) {
	has := func(roles ...runtime.Role) func(runtime.Role) bool {
		return func(r runtime.Role) bool {
			for _, x := range roles {
				if x == r {
					return true
				}
			}
			return false
		}
	}
	for _, tt := range []struct {
		m    Module
		has  func(runtime.Role) bool
		want runtime.Role
		ok   bool
	}{
		{Module{Role: RoleMain}, has(runtime.RoleHTTP, runtime.RoleHandle), runtime.RoleHTTP, true},
		{Module{Role: RoleMain}, has(runtime.RoleHandle), runtime.RoleHandle, true},
		{Module{Role: RoleMain}, has(), runtime.RoleHandle, false},
		{Module{Role: RoleMain, ABI: ABIExtism, Extism: &ExtismOptions{Function: "f"}}, has(runtime.RoleHTTP, runtime.RoleHandle), runtime.RoleHandle, true},
		{Module{Role: RoleLeaf}, has(runtime.RoleLeaf), runtime.RoleLeaf, true},
		{Module{Role: RoleStage}, has(), runtime.RoleStage, false},
		{Module{Role: RoleSidecar}, has(), runtime.RoleHandle, true},
	} {
		r, ok := tt.m.CallRole(tt.has)
		if r != tt.want || ok != tt.ok {
			t.Errorf("%+v: %s %t, want %s %t", tt.m, r, ok, tt.want, tt.ok)
		}
	}
	m := Module{Role: RoleLeaf, ABI: ABIExtism, Extism: &ExtismOptions{Function: "count_vowels"}}
	if got := m.ExtismFunctions(); len(got) != 1 || got[runtime.RoleLeaf] != "count_vowels" {
		t.Fatalf("ExtismFunctions = %v", got)
	}
	if errors.Is(nil, runtime.ErrNoExport) {
		t.Fatal("unreachable")
	}
}
