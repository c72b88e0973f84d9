package wasmbuild

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
)

// cFlags are the clang flags of BuildC besides --sysroot, -I, -o and the sources: a WASI
// reactor (wasi-libc's _initialize runs the constructors; there is no main), debug info dropped
// but the name section kept for readable traps.
var cFlags = []string{
	"--target=wasm32-wasi", "-O2", "-std=c11", "-Wall", "-Wextra", "-Werror",
	"-mexec-model=reactor", "-Wl,--strip-debug",
}

// C builds the C guest module in dir and returns the .wasm path: every .c file directly in dir,
// compiled together with the C SDK (guest-sdk/c/wasmpod.c, whose folder is on the include path)
// by clang as a wasm32-wasi reactor against wasi-libc (see WASISysroot).
//
// The cache key covers dir, guest-sdk/c, the flags, `clang --version` and the wasi-libc and
// compiler-rt archives. Without clang, wasm-ld, wasi-libc or compiler-rt's wasm32 builtins the
// test is skipped (failed under WASMPOD_REQUIRE_TOOLS=1).
func C(tb testing.TB, dir string) string {
	tb.Helper()
	RequireTool(tb, "clang")
	RequireTool(tb, "wasm-ld")
	if _, err := cToolchain(); err != nil {
		toolMissing(tb, err.Error())
	}
	return buildCached(tb, dir, CKey, BuildC)
}

// CKey returns the cache key of the C guest module in dir (see C).
func CKey(dir string) (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	tc, err := cToolchain()
	if err != nil {
		return "", err
	}
	extra := "c\x00" + strings.Join(cFlags, " ") + "\x00" + tc.fingerprint
	h, err := HashFiles(extra, dir, filepath.Join(root, "guest-sdk", "c"))
	if err != nil {
		return "", err
	}
	return "c-" + h[:32], nil
}

// BuildC compiles the C guest module in dir to the file out, without a cache. On failure the
// error carries the compiler output.
func BuildC(dir, out string) error {
	root, err := RepoRoot()
	if err != nil {
		return err
	}
	tc, err := cToolchain()
	if err != nil {
		return err
	}
	absOut, err := filepath.Abs(out)
	if err != nil {
		return err
	}
	srcs, err := filepath.Glob(filepath.Join(dir, "*.c"))
	if err != nil {
		return err
	}
	if len(srcs) == 0 {
		return fmt.Errorf("%s has no .c files", dir)
	}
	sort.Strings(srcs)
	sdk := filepath.Join(root, "guest-sdk", "c")
	args := append([]string{}, cFlags...)
	args = append(args, "--sysroot="+tc.sysroot, "-I", sdk, "-I", dir, "-o", absOut)
	args = append(args, srcs...)
	args = append(args, filepath.Join(sdk, "wasmpod.c"))
	cmd := exec.Command(tc.clang, args...)
	cmd.Dir = dir
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("clang %s: %v\n%s", strings.Join(args, " "), err, b)
	}
	return nil
}

// WASISysroot returns the wasi-libc sysroot the C builder uses: $WASI_SYSROOT if set, else
// /usr when Debian's wasi-libc package is installed (headers in /usr/include/wasm32-wasi,
// libraries in /usr/lib/wasm32-wasi), else a wasi-sdk at /opt/wasi-sdk.
func WASISysroot() (string, error) {
	if d := os.Getenv("WASI_SYSROOT"); d != "" {
		if _, err := wasiLibc(d); err != nil {
			return "", fmt.Errorf("WASI_SYSROOT=%s: %w", d, err)
		}
		return d, nil
	}
	for _, d := range []string{"/usr", "/opt/wasi-sdk/share/wasi-sysroot"} {
		if _, err := wasiLibc(d); err == nil {
			return d, nil
		}
	}
	return "", errors.New("wasi-libc not found (apt-get install wasi-libc, or set WASI_SYSROOT)")
}

// wasiLibc returns the path of libc.a in sysroot if its headers and library are there.
func wasiLibc(sysroot string) (string, error) {
	for _, triple := range []string{"wasm32-wasi", "wasm32-wasip1"} {
		lib := filepath.Join(sysroot, "lib", triple, "libc.a")
		_, errLib := os.Stat(lib)
		_, errInc := os.Stat(filepath.Join(sysroot, "include", triple, "stdlib.h"))
		if errLib == nil && errInc == nil {
			return lib, nil
		}
	}
	return "", fmt.Errorf("no wasi-libc under %s", sysroot)
}

type cTools struct {
	clang       string
	sysroot     string
	fingerprint string // clang --version, plus hashes of libc.a and the builtins archive
}

var cToolsOnce struct {
	sync.Once
	tc  cTools
	err error
}

func cToolchain() (cTools, error) {
	cToolsOnce.Do(func() { cToolsOnce.tc, cToolsOnce.err = findCToolchain() })
	return cToolsOnce.tc, cToolsOnce.err
}

func findCToolchain() (cTools, error) {
	clang, err := exec.LookPath("clang")
	if err != nil {
		return cTools{}, errors.New("clang not found (apt-get install clang lld)")
	}
	sysroot, err := WASISysroot()
	if err != nil {
		return cTools{}, err
	}
	libc, err := wasiLibc(sysroot)
	if err != nil {
		return cTools{}, err
	}
	ver, err := toolVersion(clang, "--version")
	if err != nil {
		return cTools{}, err
	}
	b, err := exec.Command(clang, "--target=wasm32-wasi", "--sysroot="+sysroot, "-print-libgcc-file-name").Output()
	if err != nil {
		return cTools{}, fmt.Errorf("clang -print-libgcc-file-name: %v", err)
	}
	builtins := strings.TrimSpace(string(b))
	if _, err := os.Stat(builtins); err != nil {
		return cTools{}, fmt.Errorf("compiler-rt builtins for wasm32 not found at %s (Debian: apt-get install libclang-rt-%s-dev-wasm32)", builtins, clangMajor(ver))
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00", ver, sysroot)
	for _, f := range []string{libc, builtins} {
		if err := hashFile(h, f); err != nil {
			return cTools{}, err
		}
	}
	return cTools{clang: clang, sysroot: sysroot, fingerprint: hex.EncodeToString(h.Sum(nil))}, nil
}

// clangMajor extracts the major version from `clang --version` output ("?" if not found).
func clangMajor(version string) string {
	f := strings.Fields(version)
	for i, w := range f {
		if w == "version" && i+1 < len(f) {
			if maj, _, ok := strings.Cut(f[i+1], "."); ok {
				return maj
			}
		}
	}
	return "?"
}

func hashFile(w io.Writer, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(w, f)
	return err
}

// toolMissing skips tb because a build prerequisite is missing, or fails it under
// WASMPOD_REQUIRE_TOOLS=1 (as RequireTool does for a missing command).
func toolMissing(tb testing.TB, msg string) {
	tb.Helper()
	if os.Getenv("WASMPOD_REQUIRE_TOOLS") == "1" {
		tb.Fatalf("wasmbuild: %s; WASMPOD_REQUIRE_TOOLS=1 makes this a failure", msg)
	}
	tb.Skipf("wasmbuild: %s", msg)
}
