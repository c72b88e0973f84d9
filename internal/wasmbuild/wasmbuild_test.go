package wasmbuild

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

func TestRepoRoot(t *testing.T) {
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil || modulePath(b) != RepoModule {
		t.Fatalf("RepoRoot %s: go.mod %v", root, err)
	}
	if _, err := os.Stat(filepath.Join(root, "guest-sdk", "ABI.md")); err != nil {
		t.Fatal(err)
	}
}

func TestModulePath(t *testing.T) {
	for in, want := range map[string]string{
		"module github.com/wasmpod/wasmpod\n\ngo 1.26\n":    RepoModule,
		"// comment\nmodule \"github.com/wasmpod/wasmpod\"": RepoModule,
		"module github.com/wasmpod/wasmpod // trailing":     RepoModule,
		"module github.com/wasmpod/wasmpod/guest-sdk/go":    "github.com/wasmpod/wasmpod/guest-sdk/go",
		"modulex foo\n": "",
		"go 1.26\n":     "",
	} {
		if got := modulePath([]byte(in)); got != want {
			t.Errorf("modulePath(%q) = %q, want %q", in, got, want)
		}
	}
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func mustHash(t *testing.T, extra string, roots ...string) string {
	t.Helper()
	h, err := HashFiles(extra, roots...)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestHashFiles(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "a.go"), "package a")
	write(t, filepath.Join(dir, "sub", "b.txt"), "b")
	h0 := mustHash(t, "v1", dir)
	if len(h0) != 64 || mustHash(t, "v1", dir) != h0 {
		t.Fatal("hash must be a stable sha256")
	}
	if mustHash(t, "v2", dir) == h0 {
		t.Fatal("extra must count")
	}
	// Skipped paths do not count.
	write(t, filepath.Join(dir, ".git", "HEAD"), "x")
	write(t, filepath.Join(dir, "node_modules", "m", "i.js"), "x")
	write(t, filepath.Join(dir, "sub", "target", "debug", "o"), "x")
	write(t, filepath.Join(dir, "out.wasm"), "x")
	if mustHash(t, "v1", dir) != h0 {
		t.Fatal(".git, node_modules, target and *.wasm must be skipped")
	}
	// The same tree elsewhere hashes the same.
	other := t.TempDir()
	write(t, filepath.Join(other, "a.go"), "package a")
	write(t, filepath.Join(other, "sub", "b.txt"), "b")
	if mustHash(t, "v1", other) != h0 {
		t.Fatal("absolute location must not count")
	}
	// Content, names and root boundaries count.
	write(t, filepath.Join(other, "sub", "b.txt"), "B")
	if mustHash(t, "v1", other) == h0 {
		t.Fatal("content must count")
	}
	write(t, filepath.Join(other, "sub", "b.txt"), "b")
	if err := os.Rename(filepath.Join(other, "a.go"), filepath.Join(other, "c.go")); err != nil {
		t.Fatal(err)
	}
	if mustHash(t, "v1", other) == h0 {
		t.Fatal("names must count")
	}
	if mustHash(t, "v1", dir, other) == mustHash(t, "v1", other, dir) {
		t.Fatal("root order must count")
	}
	// A file root works.
	if mustHash(t, "", filepath.Join(dir, "a.go")) == mustHash(t, "", filepath.Join(dir, "sub", "b.txt")) {
		t.Fatal("file roots must hash their content")
	}
	if _, err := HashFiles("", filepath.Join(dir, "nope")); err == nil {
		t.Fatal("missing root must fail")
	}
}

func TestCacheDir(t *testing.T) {
	t.Setenv("WASMPOD_WASM_CACHE", "/some/where")
	if CacheDir() != "/some/where" {
		t.Fatal("WASMPOD_WASM_CACHE must win")
	}
	t.Setenv("WASMPOD_WASM_CACHE", "")
	if !strings.HasSuffix(CacheDir(), filepath.Join("wasmpod", "wasm")) && !strings.HasSuffix(CacheDir(), "wasmpod-wasm") {
		t.Fatalf("default CacheDir %s", CacheDir())
	}
}

var fakeWasm = []byte("\x00asm\x01\x00\x00\x00")

func TestCached(t *testing.T) {
	t.Setenv("WASMPOD_WASM_CACHE", t.TempDir())
	var builds atomic.Int32
	build := func(out string) error {
		builds.Add(1)
		return os.WriteFile(out, fakeWasm, 0o644)
	}
	var wg sync.WaitGroup
	paths := make([]string, 8)
	for i := range paths {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, err := CachedPath("k1", "mod", build)
			if err != nil {
				t.Error(err)
			}
			paths[i] = p
		}()
	}
	wg.Wait()
	if builds.Load() != 1 {
		t.Fatalf("built %d times, want 1", builds.Load())
	}
	want := filepath.Join(CacheDir(), "k1", "mod.wasm")
	for _, p := range paths {
		if p != want {
			t.Fatalf("path %s, want %s", p, want)
		}
	}
	if p := Cached(t, "k1", "mod", build); p != want || builds.Load() != 1 {
		t.Fatal("a cached module must not be rebuilt")
	}
	entries, _ := os.ReadDir(filepath.Dir(want))
	if len(entries) != 1 {
		t.Fatalf("temporary files left: %v", entries)
	}
}

func TestCachedErrors(t *testing.T) {
	t.Setenv("WASMPOD_WASM_CACHE", t.TempDir())
	_, err := CachedPath("k", "bad", func(string) error { return errors.New("compiler said no") })
	if err == nil || !strings.Contains(err.Error(), "compiler said no") {
		t.Fatalf("build error lost: %v", err)
	}
	_, err = CachedPath("k", "notwasm", func(out string) error { return os.WriteFile(out, []byte("hello"), 0o644) })
	if err == nil {
		t.Fatal("a non-wasm output must be refused")
	}
	entries, _ := os.ReadDir(filepath.Join(CacheDir(), "k"))
	if len(entries) != 0 {
		t.Fatalf("failed builds left files: %v", entries)
	}
	for _, bad := range [][2]string{{"", "n"}, {"a/b", "n"}, {"..", "n"}, {"k", ""}, {"k", "x/y"}} {
		if _, err := CachedPath(bad[0], bad[1], func(string) error { return nil }); err == nil {
			t.Errorf("CachedPath(%q, %q) accepted", bad[0], bad[1])
		}
	}
	if msg := fatalOf(t, func(tb testing.TB) {
		Cached(tb, "k", "x", func(string) error { return errors.New("boom") })
	}); !strings.Contains(msg, "boom") {
		t.Fatalf("Cached must fail tb with the build error, got %q", msg)
	}
}

// TestCachedAcrossProcesses races several test processes building the same key.
func TestCachedAcrossProcesses(t *testing.T) {
	if os.Getenv("WASMBUILD_HELPER") == "1" {
		p, err := CachedPath("shared", "mod", func(out string) error {
			if err := os.WriteFile(out, append(append([]byte{}, fakeWasm...), bytes.Repeat([]byte{1}, 1<<20)...), 0o644); err != nil {
				return err
			}
			f, err := os.OpenFile(filepath.Join(CacheDir(), "builds.log"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = f.WriteString("build\n")
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		fmt.Println("PATH=" + p)
		return
	}
	cache := t.TempDir()
	var wg sync.WaitGroup
	outs := make([][]byte, 4)
	errs := make([]error, 4)
	for i := range outs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.Command(os.Args[0], "-test.run=^TestCachedAcrossProcesses$", "-test.count=1")
			cmd.Env = append(os.Environ(), "WASMBUILD_HELPER=1", "WASMPOD_WASM_CACHE="+cache)
			outs[i], errs[i] = cmd.CombinedOutput()
		}()
	}
	wg.Wait()
	want := "PATH=" + filepath.Join(cache, "shared", "mod.wasm")
	for i := range outs {
		if errs[i] != nil || !strings.Contains(string(outs[i]), want) {
			t.Fatalf("helper %d: %v\n%s", i, errs[i], outs[i])
		}
	}
	b, err := os.ReadFile(filepath.Join(cache, "shared", "mod.wasm"))
	if err != nil || len(b) != len(fakeWasm)+1<<20 {
		t.Fatalf("final module: %d bytes, %v", len(b), err)
	}
	entries, _ := os.ReadDir(filepath.Join(cache, "shared"))
	if len(entries) != 1 {
		t.Fatalf("temporary files left: %v", entries)
	}
}

// fatalTB records the first Fatalf or Skipf and stops the function like testing does.
type fatalTB struct {
	testing.TB
	msg string
}

type stopped struct{}

func (f *fatalTB) Helper() {}
func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = "FATAL " + fmt.Sprintf(format, args...)
	panic(stopped{})
}
func (f *fatalTB) Skipf(format string, args ...any) {
	f.msg = "SKIP " + fmt.Sprintf(format, args...)
	panic(stopped{})
}

func fatalOf(t *testing.T, fn func(testing.TB)) (msg string) {
	t.Helper()
	ftb := &fatalTB{TB: t}
	defer func() {
		if v := recover(); v != nil {
			if _, ok := v.(stopped); !ok {
				panic(v)
			}
			msg = ftb.msg
		}
	}()
	fn(ftb)
	return ""
}

func TestRequireTool(t *testing.T) {
	if p := RequireTool(t, "go"); p == "" {
		t.Fatal("go must be found")
	}
	t.Setenv("WASMPOD_REQUIRE_TOOLS", "")
	if msg := fatalOf(t, func(tb testing.TB) { RequireTool(tb, "wat2wasm-not-here") }); !strings.HasPrefix(msg, "SKIP") {
		t.Fatalf("missing tool should skip: %q", msg)
	}
	t.Setenv("PATH", t.TempDir())
	if msg := fatalOf(t, func(tb testing.TB) { RequireTool(tb, "wat2wasm") }); !strings.HasPrefix(msg, "SKIP") || !strings.Contains(msg, "wabt") {
		t.Fatalf("skip should name the Debian package: %q", msg)
	}
	t.Setenv("WASMPOD_REQUIRE_TOOLS", "1")
	if msg := fatalOf(t, func(tb testing.TB) { RequireTool(tb, "wat2wasm") }); !strings.HasPrefix(msg, "FATAL") {
		t.Fatalf("WASMPOD_REQUIRE_TOOLS=1 should fail: %q", msg)
	}
}

// The smallest plugin of guest-sdk/ABI.md, section 7.
const smallestPlugin = `(module
  (memory (export "memory") 2)
  (func (export "wasmpod_abi_version") (result i32) (i32.const 1))
  (func (export "wasmpod_buffer") (param $size i32) (result i32)
    (if (result i32) (i32.le_u (local.get $size) (i32.const 65536))
      (then (i32.const 65536)) (else (i32.const 0))))
  (func (export "wasmpod_leaf") (param $len i32) (result i64)
    (i64.or (i64.shl (i64.extend_i32_u (local.get $len)) (i64.const 32))
            (i64.const 65536))))`

func TestWAT(t *testing.T) {
	t.Setenv("WASMPOD_WASM_CACHE", t.TempDir())
	p := WATString(t, smallestPlugin)
	exports := readExports(t, p)
	for _, name := range []string{"memory", "wasmpod_abi_version", "wasmpod_buffer", "wasmpod_leaf"} {
		if !exports[name] {
			t.Fatalf("%s lacks export %s: %v", p, name, exports)
		}
	}
	if WATString(t, smallestPlugin) != p {
		t.Fatal("same source must hit the cache")
	}
	file := filepath.Join(t.TempDir(), "small.wat")
	write(t, file, smallestPlugin)
	fp := WAT(t, file)
	if filepath.Base(fp) != "small.wasm" || !readExports(t, fp)["wasmpod_leaf"] {
		t.Fatalf("WAT(file) = %s", fp)
	}
	msg := fatalOf(t, func(tb testing.TB) { WATString(tb, "(module (func (export \"f\") (result i32)))") })
	if !strings.Contains(msg, "FATAL") || !strings.Contains(msg, "error") {
		t.Fatalf("a bad module must fail with wat2wasm's message, got %q", msg)
	}
}

func TestGoBuildError(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "go.mod"), "module broken\n\ngo 1.24\n")
	write(t, filepath.Join(dir, "main.go"), "package main\n\nfunc main() { undefinedThing() }\n")
	err := BuildGo(dir, filepath.Join(t.TempDir(), "x.wasm"))
	if err == nil || !strings.Contains(err.Error(), "undefinedThing") || !strings.Contains(err.Error(), "main.go:3") {
		t.Fatalf("build error must show the compiler output, got %v", err)
	}
}

// TestGoWith: the extra file is compiled into the guest (its export is in the module) without
// being written to the guest's directory, each set of extra files is its own cache entry, and
// a file name with a directory is refused.
func TestGoWith(t *testing.T) {
	if testing.Short() {
		t.Skip("builds Go guests")
	}
	t.Setenv("WASMPOD_WASM_CACHE", t.TempDir())
	dir := t.TempDir()
	write(t, filepath.Join(dir, "go.mod"), "module g\n\ngo 1.24\n")
	write(t, filepath.Join(dir, "main.go"), "package main\n\nfunc main() {}\n")
	extra := func(n int) map[string]string {
		return map[string]string{"zz_extra.go": fmt.Sprintf("package main\n\n//go:wasmexport extra_probe\nfunc extraProbe() int32 { return %d }\n", n)}
	}
	plain, one, two := Go(t, dir), GoWith(t, dir, extra(1)), GoWith(t, dir, extra(2))
	if plain == one || one == two {
		t.Fatalf("one cache entry for different sources: %s %s %s", plain, one, two)
	}
	for p, want := range map[string]bool{plain: false, one: true, two: true} {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := bytes.Contains(b, []byte("extra_probe")); got != want {
			t.Errorf("%s: export extra_probe %v, want %v", p, got, want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "zz_extra.go")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the extra file reached the guest's directory: %v", err)
	}
	// Cached: the second call finds the module and does not build it again (a build renames a
	// new file into place).
	before, err := os.Stat(one)
	if err != nil {
		t.Fatal(err)
	}
	again := GoWith(t, dir, extra(1))
	after, err := os.Stat(again)
	if err != nil || again != one || !os.SameFile(before, after) {
		t.Fatalf("not cached: %s then %s (%v)", one, again, err)
	}
	msg := fatalOf(t, func(tb testing.TB) { GoWith(tb, dir, map[string]string{"../x.go": "package main\n"}) })
	if !strings.Contains(msg, "without a directory") {
		t.Fatalf("a file name with a directory: %q", msg)
	}
}

func TestGoKey(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "go.mod"), "module g\n\ngo 1.24\n")
	k1, err := GoKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "main.go"), "package main\n")
	k2, err := GoKey(dir)
	if err != nil || k1 == k2 || !strings.HasPrefix(k1, "go-") {
		t.Fatalf("GoKey must follow the guest sources: %s %s %v", k1, k2, err)
	}
}

// TestGoGuests builds the repo's Go guests and checks they export the ABI and their roles.
func TestGoGuests(t *testing.T) {
	if testing.Short() {
		t.Skip("builds Go guests")
	}
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	required := []string{"memory", "_initialize", "wasmpod_abi_version", "wasmpod_buffer", "wasmpod_start",
		"wasmpod_stop", "wasmpod_health", "wasmpod_tick", "wasmpod_snapshot", "wasmpod_restore"}
	for dir, roles := range map[string][]string{
		"plugins/benchleaf":    {"wasmpod_handle", "wasmpod_leaf", "wasmpod_merge"},
		"plugins/echo":         {"wasmpod_handle", "wasmpod_merge"},
		"runtime/testdata/kit": {"wasmpod_handle", "wasmpod_leaf", "wasmpod_merge", "wasmpod_stage", "wasmpod_http"},
	} {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			p := Go(t, filepath.Join(root, dir))
			exports := readExports(t, p)
			for _, name := range append(required, roles...) {
				if !exports[name] {
					t.Errorf("%s lacks export %s", dir, name)
				}
			}
			all := []string{"wasmpod_handle", "wasmpod_leaf", "wasmpod_merge", "wasmpod_stage", "wasmpod_http"}
			for _, name := range all {
				if exports[name] && !contains(roles, name) {
					t.Errorf("%s exports %s, a role it does not import", dir, name)
				}
			}
			if Go(t, filepath.Join(root, dir)) != p {
				t.Error("second build must hit the cache")
			}
		})
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// readExports returns the export names of a wasm module (a minimal reader of the export section).
func readExports(t *testing.T, path string) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 8 || !bytes.Equal(b[:8], []byte("\x00asm\x01\x00\x00\x00")) {
		t.Fatalf("%s: not a wasm 1 module", path)
	}
	leb := func(p *[]byte) uint32 {
		var v uint32
		for shift := 0; ; shift += 7 {
			if len(*p) == 0 || shift > 28 {
				t.Fatalf("%s: bad LEB128", path)
			}
			c := (*p)[0]
			*p = (*p)[1:]
			v |= uint32(c&0x7f) << shift
			if c&0x80 == 0 {
				return v
			}
		}
	}
	names := map[string]bool{}
	rest := b[8:]
	for len(rest) > 0 {
		id := rest[0]
		rest = rest[1:]
		size := leb(&rest)
		if uint32(len(rest)) < size {
			t.Fatalf("%s: truncated section", path)
		}
		sec := rest[:size]
		rest = rest[size:]
		if id != 7 {
			continue
		}
		for n := leb(&sec); n > 0; n-- {
			l := leb(&sec)
			names[string(sec[:l])] = true
			sec = sec[l+1:]
			leb(&sec)
		}
	}
	return names
}
