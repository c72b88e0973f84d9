package wasmbuild

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// This file also holds the checks shared by the C, Rust and AssemblyScript builder tests.

const (
	i32 = api.ValueTypeI32
	i64 = api.ValueTypeI64
	f64 = api.ValueTypeF64
)

type signature struct{ params, results []api.ValueType }

// guestABIExports are the signatures of every function export guest-sdk/ABI.md defines.
var guestABIExports = map[string]signature{
	"_initialize":         {nil, nil},
	"wasmpod_abi_version": {nil, []api.ValueType{i32}},
	"wasmpod_buffer":      {[]api.ValueType{i32}, []api.ValueType{i32}},
	"wasmpod_handle":      {[]api.ValueType{i32}, []api.ValueType{i64}},
	"wasmpod_leaf":        {[]api.ValueType{i32}, []api.ValueType{i64}},
	"wasmpod_merge":       {[]api.ValueType{i32}, []api.ValueType{i64}},
	"wasmpod_http":        {[]api.ValueType{i32}, []api.ValueType{i64}},
	"wasmpod_stage":       {[]api.ValueType{i32}, []api.ValueType{i64}},
	"wasmpod_start":       {nil, []api.ValueType{i32}},
	"wasmpod_restore":     {[]api.ValueType{i32}, []api.ValueType{i32}},
	"wasmpod_health":      {nil, []api.ValueType{i32}},
	"wasmpod_tick":        {[]api.ValueType{i64}, []api.ValueType{i32}},
	"wasmpod_snapshot":    {nil, []api.ValueType{i64}},
	"wasmpod_stop":        {[]api.ValueType{i64}, []api.ValueType{i32}},
}

// guestABIImports are the signatures of the host functions in module "wasmpod".
var guestABIImports = map[string]signature{
	"log":           {[]api.ValueType{i32, i32, i32}, nil},
	"error":         {[]api.ValueType{i32, i32}, nil},
	"config_get":    {[]api.ValueType{i32, i32, i32, i32}, []api.ValueType{i32}},
	"metric_define": {[]api.ValueType{i32, i32, i32, i32, i32}, []api.ValueType{i32}},
	"metric_record": {[]api.ValueType{i32, f64}, nil},
	"scale":         {[]api.ValueType{i32}, []api.ValueType{i32}},
}

// guestExamples are the example plugins each SDK has, by kind (plugins/LANG-KIND), and the
// ABI exports each must have besides memory, _initialize, wasmpod_abi_version and
// wasmpod_buffer. They must export no other ABI function.
var guestExamples = map[string][]string{
	"leaf":  {"wasmpod_handle", "wasmpod_leaf"},
	"merge": {"wasmpod_handle", "wasmpod_merge"},
	"lifecycle": {"wasmpod_handle", "wasmpod_start", "wasmpod_stop", "wasmpod_health",
		"wasmpod_tick", "wasmpod_snapshot", "wasmpod_restore"},
}

// testGuestExamples builds plugins/LANG-KIND for every kind with build and checks the modules.
func testGuestExamples(t *testing.T, lang string, build func(testing.TB, string) string) {
	if testing.Short() {
		t.Skipf("builds %s guests", lang)
	}
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	for kind, roles := range guestExamples {
		name := lang + "-" + kind
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(root, "plugins", name)
			p := build(t, dir)
			checkGuestModule(t, p, roles)
			if build(t, dir) != p {
				t.Error("second build must hit the cache")
			}
		})
	}
}

// checkGuestModule compiles the module at path with wazero and checks it against the ABI: the
// memory export, the required exports and roles with their signatures, no ABI export beyond
// them, and imports only from "wasmpod" (with the ABI signatures) and
// "wasi_snapshot_preview1".
func checkGuestModule(t *testing.T, path string, roles []string) {
	t.Helper()
	code, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	defer rt.Close(ctx)
	cm, err := rt.CompileModule(ctx, code)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if _, ok := cm.ExportedMemories()["memory"]; !ok {
		t.Errorf("%s exports no memory", path)
	}
	if len(cm.ImportedMemories()) != 0 {
		t.Errorf("%s imports a memory", path)
	}
	want := append([]string{"_initialize", "wasmpod_abi_version", "wasmpod_buffer"}, roles...)
	exports := cm.ExportedFunctions()
	for _, name := range want {
		f, ok := exports[name]
		if !ok {
			t.Errorf("%s lacks export %s", path, name)
			continue
		}
		checkSignature(t, path+" export "+name, f, guestABIExports[name])
	}
	for name := range exports {
		if _, isABI := guestABIExports[name]; isABI && !containsString(want, name) {
			t.Errorf("%s exports %s, which it should not", path, name)
		}
	}
	for _, f := range cm.ImportedFunctions() {
		mod, name, _ := f.Import()
		switch mod {
		case "wasi_snapshot_preview1":
		case "wasmpod":
			sig, ok := guestABIImports[name]
			if !ok {
				t.Errorf("%s imports wasmpod.%s, which the ABI does not define", path, name)
				continue
			}
			checkSignature(t, path+" import wasmpod."+name, f, sig)
		default:
			t.Errorf("%s imports %s.%s: only wasmpod and wasi_snapshot_preview1 are allowed", path, mod, name)
		}
	}
}

func checkSignature(t *testing.T, what string, f api.FunctionDefinition, want signature) {
	t.Helper()
	if !sameTypes(f.ParamTypes(), want.params) || !sameTypes(f.ResultTypes(), want.results) {
		t.Errorf("%s has signature %v -> %v, want %v -> %v", what, f.ParamTypes(), f.ResultTypes(), want.params, want.results)
	}
}

func sameTypes(a, b []api.ValueType) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func writeTestFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestCGuests builds plugins/c-* with the C SDK and checks them against the ABI.
func TestCGuests(t *testing.T) {
	testGuestExamples(t, "c", C)
}

func requireCToolchain(t *testing.T) {
	t.Helper()
	RequireTool(t, "clang")
	RequireTool(t, "wasm-ld")
	if _, err := cToolchain(); err != nil {
		toolMissing(t, err.Error())
	}
}

func TestCBuildError(t *testing.T) {
	requireCToolchain(t)
	dir := t.TempDir()
	writeTestFile(t, filepath.Join(dir, "broken.c"), "#include \"wasmpod.h\"\nint32_t f(void) { return undefined_thing; }\n")
	err := BuildC(dir, filepath.Join(t.TempDir(), "x.wasm"))
	if err == nil || !strings.Contains(err.Error(), "undefined_thing") || !strings.Contains(err.Error(), "broken.c:2") {
		t.Fatalf("build error must show the compiler output, got %v", err)
	}
	if err := BuildC(t.TempDir(), filepath.Join(t.TempDir(), "x.wasm")); err == nil || !strings.Contains(err.Error(), "no .c files") {
		t.Fatalf("a folder without sources must fail clearly, got %v", err)
	}
}

func TestCKey(t *testing.T) {
	requireCToolchain(t)
	dir := t.TempDir()
	writeTestFile(t, filepath.Join(dir, "a.c"), "int x;\n")
	k1, err := CKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	writeTestFile(t, filepath.Join(dir, "a.c"), "int y;\n")
	k2, err := CKey(dir)
	if err != nil || k1 == k2 || !strings.HasPrefix(k1, "c-") {
		t.Fatalf("CKey must follow the guest sources: %s %s %v", k1, k2, err)
	}
}

func TestClangMajor(t *testing.T) {
	for in, want := range map[string]string{
		"Debian clang version 14.0.6\nTarget: x86_64-pc-linux-gnu": "14",
		"clang version 18.1.8 (Fedora 18.1.8-1.fc40)":              "18",
		"no version here": "?",
	} {
		if got := clangMajor(in); got != want {
			t.Errorf("clangMajor(%q) = %q, want %q", in, got, want)
		}
	}
}
