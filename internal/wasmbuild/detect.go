package wasmbuild

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Builder builds the guest in dir to the file out.
type Builder func(dir, out string) error

// Detect tells which language the guest in dir is written in, by its files: a go.mod is Go (a
// "go-command", built as a WASI command with _start, when the module uses neither the wasmpod
// guest SDK nor the Extism PDK and exports nothing with //go:wasmexport), a
// package.json is AssemblyScript, a Cargo.toml or src/lib.rs is Rust, a .c file is C.
func Detect(dir string) (lang string, build Builder, err error) {
	has := func(pattern string) bool {
		m, _ := filepath.Glob(filepath.Join(dir, pattern))
		return len(m) > 0
	}
	switch {
	case has("go.mod"):
		if isGoCommand(dir) {
			return "go-command", BuildGoCommand, nil
		}
		return "go", BuildGo, nil
	case has("package.json"):
		return "assemblyscript", BuildAssemblyScript, nil
	case has("Cargo.toml"), has("src/lib.rs"), has("*.rs"):
		return "rust", BuildRust, nil
	case has("*.c"):
		return "c", BuildC, nil
	}
	if _, err := os.Stat(dir); err != nil {
		return "", nil, err
	}
	return "", nil, fmt.Errorf("wasmbuild: %s: no go.mod, package.json, Cargo.toml or .c file: language unknown", dir)
}

// isGoCommand reports whether the Go guest in dir is a plain WASI command: no SDK in go.mod and
// no //go:wasmexport in its sources.
func isGoCommand(dir string) bool {
	mod, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil || strings.Contains(string(mod), "guest-sdk") || strings.Contains(string(mod), "go-pdk") {
		return false
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.go"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil || strings.Contains(string(b), "go:wasmexport") {
			return false
		}
	}
	return len(files) > 0
}
