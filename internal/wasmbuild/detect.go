package wasmbuild

import (
	"fmt"
	"os"
	"path/filepath"
)

// Builder builds the guest in dir to the file out.
type Builder func(dir, out string) error

// Detect tells which language the guest in dir is written in, by its files: a go.mod is Go, a
// package.json is AssemblyScript, a Cargo.toml or src/lib.rs is Rust, a .c file is C.
func Detect(dir string) (lang string, build Builder, err error) {
	has := func(pattern string) bool {
		m, _ := filepath.Glob(filepath.Join(dir, pattern))
		return len(m) > 0
	}
	switch {
	case has("go.mod"):
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
