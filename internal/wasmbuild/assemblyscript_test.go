package wasmbuild

import (
	"errors"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
)

// TestAssemblyScriptGuests builds plugins/as-* with the AssemblyScript SDK and checks them
// against the ABI.
func TestAssemblyScriptGuests(t *testing.T) {
	testGuestExamples(t, "as", AssemblyScript)
}

func TestAssemblyScriptBuildError(t *testing.T) {
	if testing.Short() {
		t.Skip("installs the AssemblyScript compiler")
	}
	RequireTool(t, "node")
	RequireTool(t, "npm")
	dir := t.TempDir()
	writeTestFile(t, filepath.Join(dir, "assembly", "index.ts"),
		"export { wasmpod_abi_version, wasmpod_buffer } from \"wasmpod-sdk\";\nexport function wasmpod_leaf(len: i32): i64 { return undefinedThing(len); }\n")
	err := BuildAssemblyScript(dir, filepath.Join(t.TempDir(), "x.wasm"))
	if err == nil || !strings.Contains(err.Error(), "undefinedThing") {
		t.Fatalf("build error must show the compiler output, got %v", err)
	}
}

func TestAssemblyScriptVersionPin(t *testing.T) {
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	want, err := pinnedAssemblyScript(filepath.Join(root, "guest-sdk", "assemblyscript", "package.json"))
	if err != nil || want == "" || strings.ContainsAny(want, "^~*>< ") {
		t.Fatalf("the SDK must pin an exact assemblyscript version, got %q %v", want, err)
	}
	dir := t.TempDir()
	if _, err := pinnedAssemblyScript(filepath.Join(dir, "package.json")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("no package.json: %v", err)
	}
	writeTestFile(t, filepath.Join(dir, "package.json"), `{"devDependencies": {"assemblyscript": "0.0.1"}}`)
	writeTestFile(t, filepath.Join(dir, "assembly", "index.ts"), "\n")
	err = BuildAssemblyScript(dir, filepath.Join(t.TempDir(), "x.wasm"))
	if err == nil || !strings.Contains(err.Error(), "pins assemblyscript 0.0.1") {
		t.Fatalf("a plugin pinning another compiler version must fail, got %v", err)
	}
	for _, kind := range []string{"leaf", "merge", "lifecycle"} {
		got, err := pinnedAssemblyScript(filepath.Join(root, "plugins", "as-"+kind, "package.json"))
		if err != nil || got != want {
			t.Errorf("plugins/as-%s pins assemblyscript %q (%v), the SDK %q", kind, got, err, want)
		}
	}
}

func TestAssemblyScriptKey(t *testing.T) {
	RequireTool(t, "node")
	dir := t.TempDir()
	writeTestFile(t, filepath.Join(dir, "assembly", "index.ts"), "\n")
	k1, err := AssemblyScriptKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	writeTestFile(t, filepath.Join(dir, "assembly", "index.ts"), "//\n")
	k2, err := AssemblyScriptKey(dir)
	if err != nil || k1 == k2 || !strings.HasPrefix(k1, "as-") {
		t.Fatalf("AssemblyScriptKey must follow the guest sources: %s %s %v", k1, k2, err)
	}
}
