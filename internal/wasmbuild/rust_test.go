package wasmbuild

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestRustGuests builds plugins/rust-* with the Rust SDK and checks them against the ABI.
func TestRustGuests(t *testing.T) {
	testGuestExamples(t, "rust", Rust)
}

func TestRustBuildError(t *testing.T) {
	if _, _, err := RustToolchain(); err != nil {
		toolMissing(t, err.Error())
	}
	dir := filepath.Join(t.TempDir(), "rust-broken")
	writeTestFile(t, filepath.Join(dir, "src", "lib.rs"), "wasmpod::leaf!(missing_fn);\n")
	err := BuildRust(dir, filepath.Join(t.TempDir(), "x.wasm"))
	if err == nil || !strings.Contains(err.Error(), "missing_fn") || !strings.Contains(err.Error(), "lib.rs") {
		t.Fatalf("build error must show the compiler output, got %v", err)
	}
	if err := BuildRust(t.TempDir(), filepath.Join(t.TempDir(), "x.wasm")); err == nil || !strings.Contains(err.Error(), "not a Rust guest crate") {
		t.Fatalf("a folder without src/lib.rs must fail clearly, got %v", err)
	}
}

func TestRustKey(t *testing.T) {
	if _, _, err := RustToolchain(); err != nil {
		toolMissing(t, err.Error())
	}
	dir := t.TempDir()
	writeTestFile(t, filepath.Join(dir, "src", "lib.rs"), "\n")
	k1, err := RustKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	writeTestFile(t, filepath.Join(dir, "src", "lib.rs"), "//\n")
	k2, err := RustKey(dir)
	if err != nil || k1 == k2 || !strings.HasPrefix(k1, "rust-") {
		t.Fatalf("RustKey must follow the guest sources: %s %s %v", k1, k2, err)
	}
}
