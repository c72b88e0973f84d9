package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wasmpod/wasmpod/internal/wasmbuild"
)

func TestRun(t *testing.T) {
	if testing.Short() {
		t.Skip("builds guests")
	}
	wasmbuild.RequireTool(t, "go")
	wasmbuild.RequireTool(t, "clang")
	root, err := wasmbuild.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "plugins")
	// One Go and one C guest: the language is detected from the directory's files.
	if err := run(out, []string{filepath.Join(root, "plugins", "echo"), filepath.Join(root, "plugins", "c-leaf")}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"echo.wasm", "c-leaf.wasm"} {
		b, err := os.ReadFile(filepath.Join(out, name))
		if err != nil || len(b) < 8 || string(b[:4]) != "\x00asm" {
			t.Fatalf("%s is not a module: %v", name, err)
		}
	}
	for _, tc := range []struct {
		dir, want string
	}{
		{filepath.Join(root, "no-such-dir"), "no such file"},
		{t.TempDir(), "language unknown"},
	} {
		if err := run(out, []string{tc.dir}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("%s: want an error containing %q, got %v", tc.dir, tc.want, err)
		}
	}
}
