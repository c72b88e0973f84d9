package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/wasmpod/wasmpod/internal/wasmbuild"
)

func TestRun(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a Go guest")
	}
	wasmbuild.RequireTool(t, "go")
	root, err := wasmbuild.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	notGo := t.TempDir() // a guest in another language: skipped
	out := filepath.Join(t.TempDir(), "plugins")
	if err := run(out, []string{filepath.Join(root, "plugins", "echo"), notGo}); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(out)
	if err != nil || len(entries) != 1 || entries[0].Name() != "echo.wasm" {
		t.Fatalf("output dir: %v %v", entries, err)
	}
	b, err := os.ReadFile(filepath.Join(out, "echo.wasm"))
	if err != nil || len(b) < 8 || string(b[:4]) != "\x00asm" {
		t.Fatalf("echo.wasm is not a module: %v", err)
	}
	if err := run(out, []string{filepath.Join(root, "no-such-dir")}); err == nil {
		t.Fatal("a missing directory must fail")
	}
}
