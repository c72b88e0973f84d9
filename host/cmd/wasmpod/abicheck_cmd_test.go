package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestABICheckCLI(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.wasm")
	if err := os.WriteFile(bad, []byte("\x00asm\x01\x00\x00\x00"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, path string
		exit       int
		want       string
	}{
		{"conforming plugin", guests["echo"], 0, "0 violations, 0 warnings: OK"},
		{"no ABI at all", bad, 1, "speaks neither the wasmpod nor the Extism ABI"},
		{"missing file", filepath.Join(t.TempDir(), "nope.wasm"), 2, "no such file"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := exec.Command(binary, "abi-check", tc.path).CombinedOutput()
			code := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tc.exit || !strings.Contains(string(out), tc.want) {
				t.Fatalf("exit %d, want %d; output lacks %q:\n%s", code, tc.exit, tc.want, out)
			}
		})
	}
}
