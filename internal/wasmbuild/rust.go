package wasmbuild

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// rustFlags are the rustc codegen flags of BuildRust for the SDK and the plugin. Fat LTO with
// one codegen unit at opt-level 3 gives the smallest modules with Rust's std (smaller than
// opt-level s or z).
var rustFlags = []string{"--edition", "2021", "-C", "opt-level=3", "-C", "codegen-units=1"}

// rustPluginFlags are added for the plugin (the cdylib).
var rustPluginFlags = []string{"-C", "lto", "-C", "strip=debuginfo"}

// Rust builds the Rust guest module in dir and returns the .wasm path. dir holds a crate whose
// root is src/lib.rs and which depends only on the Rust SDK (guest-sdk/rust/wasmpod); both are
// compiled with plain rustc, no cargo and no registry: the SDK as an rlib, the plugin as a
// cdylib for wasm32-wasi (see RustToolchain).
//
// The cache key covers dir, guest-sdk/rust, the flags and `rustc -vV`. Without a rustc that has
// the wasm32 WASI standard library the test is skipped (failed under WASMPOD_REQUIRE_TOOLS=1).
func Rust(tb testing.TB, dir string) string {
	tb.Helper()
	if _, _, err := RustToolchain(); err != nil {
		toolMissing(tb, err.Error())
	}
	return buildCached(tb, dir, RustKey, BuildRust)
}

// RustKey returns the cache key of the Rust guest module in dir (see Rust).
func RustKey(dir string) (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	rustc, target, err := RustToolchain()
	if err != nil {
		return "", err
	}
	ver, err := toolVersion(rustc, "-vV")
	if err != nil {
		return "", err
	}
	extra := "rust\x00" + target + "\x00" + strings.Join(rustFlags, " ") + "\x00" +
		strings.Join(rustPluginFlags, " ") + "\x00" + ver
	h, err := HashFiles(extra, dir, filepath.Join(root, "guest-sdk", "rust"))
	if err != nil {
		return "", err
	}
	return "rust-" + h[:32], nil
}

// BuildRust compiles the Rust guest module in dir to the file out, without a cache. The crate
// name is the directory name with '-' replaced by '_'. On failure the error carries the
// compiler output.
func BuildRust(dir, out string) error {
	root, err := RepoRoot()
	if err != nil {
		return err
	}
	rustc, target, err := RustToolchain()
	if err != nil {
		return err
	}
	absOut, err := filepath.Abs(out)
	if err != nil {
		return err
	}
	src := filepath.Join(dir, "src", "lib.rs")
	if _, err := os.Stat(src); err != nil {
		return fmt.Errorf("%s is not a Rust guest crate: %w", dir, err)
	}
	// The SDK rlib goes to a private directory beside out, removed afterwards.
	deps, err := os.MkdirTemp(filepath.Dir(absOut), "rust-deps-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(deps)
	run := func(args ...string) error {
		cmd := exec.Command(rustc, args...)
		cmd.Dir = dir
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%s %s: %v\n%s", rustc, strings.Join(args, " "), err, b)
		}
		return nil
	}
	rlib := filepath.Join(deps, "libwasmpod.rlib")
	sdk := filepath.Join(root, "guest-sdk", "rust", "wasmpod", "src", "lib.rs")
	args := append([]string{"--crate-type", "rlib", "--crate-name", "wasmpod", "--target", target}, rustFlags...)
	if err := run(append(args, "-o", rlib, sdk)...); err != nil {
		return err
	}
	name := strings.ReplaceAll(filepath.Base(dir), "-", "_")
	args = append([]string{"--crate-type", "cdylib", "--crate-name", name, "--target", target}, rustFlags...)
	args = append(args, rustPluginFlags...)
	args = append(args, "-L", "dependency="+deps, "--extern", "wasmpod="+rlib, "-o", absOut, src)
	return run(args...)
}

var rustToolsOnce struct {
	sync.Once
	rustc, target string
	err           error
}

// RustToolchain returns the rustc the Rust builder uses and its WASI target: the first of
// $WASMPOD_RUSTC, /usr/bin/rustc (Debian's, with libstd-rust-dev-wasm32) and the rustc on PATH
// whose sysroot has the standard library for wasm32-wasip1 or wasm32-wasi.
func RustToolchain() (rustc, target string, err error) {
	rustToolsOnce.Do(func() {
		rustToolsOnce.rustc, rustToolsOnce.target, rustToolsOnce.err = findRustToolchain()
	})
	return rustToolsOnce.rustc, rustToolsOnce.target, rustToolsOnce.err
}

func findRustToolchain() (string, string, error) {
	var candidates []string
	if p := os.Getenv("WASMPOD_RUSTC"); p != "" {
		candidates = append(candidates, p)
	}
	candidates = append(candidates, "/usr/bin/rustc")
	if p, err := exec.LookPath("rustc"); err == nil {
		candidates = append(candidates, p)
	}
	var tried []string
	for _, rustc := range candidates {
		b, err := exec.Command(rustc, "--print", "sysroot").Output()
		if err != nil {
			continue
		}
		sysroot := strings.TrimSpace(string(b))
		for _, target := range []string{"wasm32-wasip1", "wasm32-wasi"} {
			if st, err := os.Stat(filepath.Join(sysroot, "lib", "rustlib", target, "lib")); err == nil && st.IsDir() {
				return rustc, target, nil
			}
		}
		tried = append(tried, rustc)
	}
	if len(tried) == 0 {
		return "", "", errors.New("rustc not found (apt-get install rustc libstd-rust-dev-wasm32)")
	}
	return "", "", fmt.Errorf("no rustc with a wasm32 WASI standard library (tried %s; apt-get install rustc libstd-rust-dev-wasm32, or rustup target add wasm32-wasip1, or set WASMPOD_RUSTC)", strings.Join(tried, ", "))
}
