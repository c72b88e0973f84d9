// Package wasmbuild builds guest modules from source for tests and benchmarks, caching the result by content hash.
//
// Every builder hashes its inputs (sources plus toolchain version) into a key and stores the
// module at CacheDir()/key/name.wasm. A module is built at most once per key: concurrent test
// processes may race to build it, but each writes a private temporary file and renames it into
// place, so a reader never sees a partial module.
package wasmbuild

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
)

// RepoModule is the module path RepoRoot looks for.
const RepoModule = "github.com/wasmpod/wasmpod"

// Go builds the Go guest module whose main package is in dir (a directory with its own go.mod)
// with GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared, and returns the .wasm path.
//
// The cache key covers dir, the Go guest SDK (guest-sdk/go, which guests reach through a
// replace directive) and the `go version` output.
func Go(tb testing.TB, dir string) string {
	tb.Helper()
	RequireTool(tb, "go")
	return buildCached(tb, dir, GoKey, BuildGo)
}

// buildCached builds the guest in dir with build, once per cache key (see Cached); key computes
// the key from the absolute directory. The builders of every language share it.
func buildCached(tb testing.TB, dir string, key func(string) (string, error), build Builder) string {
	tb.Helper()
	abs, err := filepath.Abs(dir)
	if err != nil {
		tb.Fatalf("wasmbuild: %v", err)
	}
	k, err := key(abs)
	if err != nil {
		tb.Fatalf("wasmbuild: %v", err)
	}
	return Cached(tb, k, filepath.Base(abs), func(out string) error { return build(abs, out) })
}

// GoKey returns the cache key of the Go guest module in dir (see Go).
func GoKey(dir string) (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	ver, err := goVersion()
	if err != nil {
		return "", err
	}
	h, err := HashFiles("go\x00"+strings.Join(goBuildFlags, " ")+"\x00"+ver, dir, filepath.Join(root, "guest-sdk", "go"))
	if err != nil {
		return "", err
	}
	return "go-" + h[:32], nil
}

var goBuildFlags = []string{"build", "-buildmode=c-shared", "-trimpath"}

// GoWith is Go for the module in dir with extra source files added to its main package (file
// name -> content), through `go build -overlay`: dir is not written to. A name that is already
// a file of dir replaces that file in the build. It is cached by Go's key and the extra files.
// The benchmarks use it to build one guest in several code layouts.
func GoWith(tb testing.TB, dir string, extra map[string]string) string {
	tb.Helper()
	RequireTool(tb, "go")
	names := make([]string, 0, len(extra))
	for name := range extra {
		if name != filepath.Base(name) || !strings.HasSuffix(name, ".go") {
			tb.Fatalf("wasmbuild: extra file %q: want a .go file name without a directory", name)
		}
		names = append(names, name)
	}
	sort.Strings(names)
	key := func(abs string) (string, error) {
		base, err := GoKey(abs)
		if err != nil {
			return "", err
		}
		h := sha256.New()
		io.WriteString(h, base)
		for _, name := range names {
			fmt.Fprintf(h, "\x00%s\x00%d\x00%s", name, len(extra[name]), extra[name])
		}
		return "go-with-" + hex.EncodeToString(h.Sum(nil))[:32], nil
	}
	build := func(abs, out string) error {
		tmp, err := os.MkdirTemp("", "wasmbuild-overlay-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		overlay := map[string]map[string]string{"Replace": {}}
		for _, name := range names {
			p := filepath.Join(tmp, name)
			if err := os.WriteFile(p, []byte(extra[name]), 0o644); err != nil {
				return err
			}
			overlay["Replace"][filepath.Join(abs, name)] = p
		}
		j, err := json.Marshal(overlay)
		if err != nil {
			return err
		}
		jp := filepath.Join(tmp, "overlay.json")
		if err := os.WriteFile(jp, j, 0o644); err != nil {
			return err
		}
		return goBuild(abs, out, append(append([]string{}, goBuildFlags...), "-overlay", jp))
	}
	return buildCached(tb, dir, key, build)
}

// BuildGo compiles the Go guest module in dir to the file out, without a cache. It ignores any
// go.work (GOWORK=off) and uses only the versions the guest's go.mod and go.sum pin (-mod=readonly):
// guests that reach the SDK through a replace directive need no network; guests with
// dependencies (Extism's go-pdk) fetch them once through the module proxy, as any Go build
// does. On failure the error carries the compiler output.
func BuildGo(dir, out string) error { return goBuild(dir, out, goBuildFlags) }

// goBuild runs `go <flags> -o out .` in dir for GOOS=wasip1 GOARCH=wasm (see BuildGo).
func goBuild(dir, out string, flags []string) error {
	absOut, err := filepath.Abs(out)
	if err != nil {
		return err
	}
	args := append(append([]string{}, flags...), "-o", absOut, ".")
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "GOWORK=off", "GOFLAGS=-mod=readonly")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("GOOS=wasip1 GOARCH=wasm go %s (in %s): %v\n%s", strings.Join(args, " "), dir, err, b)
	}
	return nil
}

var goVersionOnce struct {
	sync.Once
	v   string
	err error
}

func goVersion() (string, error) {
	goVersionOnce.Do(func() {
		b, err := exec.Command("go", "version").CombinedOutput()
		if err != nil {
			goVersionOnce.err = fmt.Errorf("go version: %v\n%s", err, b)
			return
		}
		goVersionOnce.v = strings.TrimSpace(string(b))
	})
	return goVersionOnce.v, goVersionOnce.err
}

// WAT assembles a .wat file with wabt's wat2wasm and returns the .wasm path.
func WAT(tb testing.TB, watFile string) string {
	tb.Helper()
	src, err := os.ReadFile(watFile)
	if err != nil {
		tb.Fatalf("wasmbuild: %v", err)
	}
	name := strings.TrimSuffix(filepath.Base(watFile), filepath.Ext(watFile))
	return watBuild(tb, name, src)
}

// WATString is WAT for inline source text (tests embed small modules).
func WATString(tb testing.TB, src string) string {
	tb.Helper()
	return watBuild(tb, "inline", []byte(src))
}

func watBuild(tb testing.TB, name string, src []byte) string {
	tb.Helper()
	tool := RequireTool(tb, "wat2wasm")
	ver, err := toolVersion(tool, "--version")
	if err != nil {
		tb.Fatalf("wasmbuild: %v", err)
	}
	h := sha256.New()
	fmt.Fprintf(h, "wat\x00%s\x00", ver)
	h.Write(src)
	key := "wat-" + hex.EncodeToString(h.Sum(nil))[:32]
	return Cached(tb, key, name, func(out string) error {
		in := out + ".wat"
		if err := os.WriteFile(in, src, 0o644); err != nil {
			return err
		}
		defer os.Remove(in)
		cmd := exec.Command(tool, in, "-o", out)
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("wat2wasm %s: %v\n%s", name, err, b)
		}
		return nil
	})
}

var toolVersions sync.Map // "tool\x00arg" -> string

func toolVersion(tool string, args ...string) (string, error) {
	k := tool + "\x00" + strings.Join(args, "\x00")
	if v, ok := toolVersions.Load(k); ok {
		return v.(string), nil
	}
	b, err := exec.Command(tool, args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s %s: %v\n%s", tool, strings.Join(args, " "), err, b)
	}
	v := strings.TrimSpace(string(b))
	toolVersions.Store(k, v)
	return v, nil
}

// CacheDir returns where built modules are kept: $WASMPOD_WASM_CACHE, else
// os.UserCacheDir()/wasmpod/wasm (os.TempDir()/wasmpod-wasm if there is no user cache dir).
func CacheDir() string {
	if d := os.Getenv("WASMPOD_WASM_CACHE"); d != "" {
		return d
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "wasmpod", "wasm")
	}
	return filepath.Join(os.TempDir(), "wasmpod-wasm")
}

// HashFiles returns the hex sha256 over the relative paths and contents of all regular files
// under roots (each root a directory or a single file), in lexical order, plus extra (e.g. a
// toolchain version). It skips directories named .git, node_modules and target, and files
// ending in .wasm. Absolute locations do not count, so two checkouts share cache entries.
func HashFiles(extra string, roots ...string) (string, error) {
	h := sha256.New()
	writeField := func(b []byte) {
		var n [8]byte
		binary.LittleEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	writeField([]byte(extra))
	for i, root := range roots {
		writeField([]byte(fmt.Sprintf("root %d", i)))
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				switch d.Name() {
				case ".git", "node_modules", "target":
					if path != root {
						return filepath.SkipDir
					}
				}
				return nil
			}
			if !d.Type().IsRegular() || strings.HasSuffix(d.Name(), ".wasm") {
				return nil
			}
			rel, err := filepath.Rel(root, path)
			if err != nil {
				return err
			}
			f, err := os.Open(path)
			if err != nil {
				return err
			}
			defer f.Close()
			st, err := f.Stat()
			if err != nil {
				return err
			}
			writeField([]byte(filepath.ToSlash(rel)))
			var n [8]byte
			binary.LittleEndian.PutUint64(n[:], uint64(st.Size()))
			h.Write(n[:])
			if c, err := io.Copy(h, f); err != nil {
				return err
			} else if c != st.Size() {
				return fmt.Errorf("%s changed while hashing", path)
			}
			return nil
		})
		if err != nil {
			return "", fmt.Errorf("hash %s: %w", root, err)
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Cached returns CacheDir()/key/name.wasm, building it once: if the file is absent, build is
// called with a temporary path in the same directory to write the module to, which is then
// renamed into place. It is safe for parallel tests and parallel test processes. A build error
// fails tb.
func Cached(tb testing.TB, key, name string, build func(out string) error) string {
	tb.Helper()
	p, err := CachedPath(key, name, build)
	if err != nil {
		tb.Fatalf("wasmbuild: %s: %v", name, err)
	}
	return p
}

var buildLocks sync.Map // final path -> *sync.Mutex

// CachedPath is Cached without testing.TB, for commands.
func CachedPath(key, name string, build func(out string) error) (string, error) {
	if key == "" || strings.ContainsAny(key, `/\`) || key == "." || key == ".." {
		return "", fmt.Errorf("bad cache key %q", key)
	}
	if name == "" || strings.ContainsAny(name, `/\`) {
		return "", fmt.Errorf("bad module name %q", name)
	}
	dir := filepath.Join(CacheDir(), key)
	final := filepath.Join(dir, name+".wasm")
	mu, _ := buildLocks.LoadOrStore(final, new(sync.Mutex))
	mu.(*sync.Mutex).Lock()
	defer mu.(*sync.Mutex).Unlock()
	if st, err := os.Stat(final); err == nil && st.Mode().IsRegular() {
		return final, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(dir, name+".*.tmp")
	if err != nil {
		return "", err
	}
	tmpName := tmp.Name()
	tmp.Close()
	defer os.Remove(tmpName) // no-op after a successful rename
	if err := build(tmpName); err != nil {
		return "", err
	}
	if err := checkWasm(tmpName); err != nil {
		return "", err
	}
	if err := os.Chmod(tmpName, 0o644); err != nil { // CreateTemp made it 0600
		return "", err
	}
	if err := os.Rename(tmpName, final); err != nil {
		return "", err
	}
	return final, nil
}

func checkWasm(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	var magic [4]byte
	if _, err := io.ReadFull(f, magic[:]); err != nil || !bytes.Equal(magic[:], []byte("\x00asm")) {
		return fmt.Errorf("build wrote no wasm module to %s", path)
	}
	return nil
}

// debianPackages names the Debian package that provides each tool the builders use.
var debianPackages = map[string]string{
	"go":           "golang-go",
	"wat2wasm":     "wabt",
	"wasm2wat":     "wabt",
	"clang":        "clang",
	"wasm-ld":      "lld",
	"llvm-ar":      "llvm",
	"cargo":        "cargo",
	"rustc":        "rustc",
	"node":         "nodejs",
	"npm":          "npm",
	"npx":          "npm",
	"wasm-opt":     "binaryen",
	"tinygo":       "tinygo",
	"wasm-objdump": "wabt",
	"memcached":    "memcached",
	"prometheus":   "prometheus",
	"promtool":     "prometheus",
	"wrk":          "wrk",
}

// RequireTool returns the path of tool (exec.LookPath). If it is missing, the test fails when
// WASMPOD_REQUIRE_TOOLS=1 (CI sets it) and is skipped otherwise, naming the Debian package to
// install.
func RequireTool(tb testing.TB, tool string) string {
	tb.Helper()
	p, err := exec.LookPath(tool)
	if err == nil {
		return p
	}
	hint := "install it"
	if pkg, ok := debianPackages[tool]; ok {
		hint = "apt-get install " + pkg
	}
	if os.Getenv("WASMPOD_REQUIRE_TOOLS") == "1" {
		tb.Fatalf("wasmbuild: %s not found (%s); WASMPOD_REQUIRE_TOOLS=1 makes this a failure", tool, hint)
	}
	tb.Skipf("wasmbuild: %s not found (%s)", tool, hint)
	return ""
}

// RepoRoot walks up from the working directory to the directory whose go.mod declares
// module github.com/wasmpod/wasmpod.
func RepoRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := wd; ; {
		b, err := os.ReadFile(filepath.Join(d, "go.mod"))
		if err == nil && modulePath(b) == RepoModule {
			return d, nil
		} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", fmt.Errorf("no go.mod of module %s above %s", RepoModule, wd)
		}
		d = parent
	}
}

// modulePath returns the module path declared by go.mod contents, or "".
func modulePath(gomod []byte) string {
	for _, line := range strings.Split(string(gomod), "\n") {
		if i := strings.Index(line, "//"); i >= 0 {
			line = line[:i]
		}
		line = strings.TrimSpace(line)
		rest, ok := strings.CutPrefix(line, "module")
		if !ok || rest == "" || (rest[0] != ' ' && rest[0] != '\t' && rest[0] != '"') {
			continue
		}
		return strings.Trim(strings.TrimSpace(rest), "\"`")
	}
	return ""
}
