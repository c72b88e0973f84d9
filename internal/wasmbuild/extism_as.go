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

// ExtismAssemblyScript builds the Extism plugin written in AssemblyScript in dir and returns
// the .wasm path. The entry file is dir/assembly/index.ts; it imports @extism/as-pdk (or other
// npm packages) as dir's package.json and package-lock.json pin them, and exports an abort
// function wired with --use abort=assembly/index/abort, so the module imports only from
// extism:host/env. The compiler is the SDK's pinned assemblyscript (see
// AssemblyScriptCompiler); dir's package.json must pin the same version if it names one.
//
// The dependencies are installed once per lock file with `npm ci --omit=dev` into the cache
// (not into dir). The cache key covers dir and `node --version`. Without node and npm the test
// is skipped (failed under WASMPOD_REQUIRE_TOOLS=1); a failing install fails it.
func ExtismAssemblyScript(tb testing.TB, dir string) string {
	tb.Helper()
	RequireTool(tb, "node")
	RequireTool(tb, "npm")
	return buildCached(tb, dir, ExtismAssemblyScriptKey, BuildExtismAssemblyScript)
}

// extismASFlags are the asc flags besides the entry, --path and -o.
var extismASFlags = []string{"--use", "abort=assembly/index/abort", "--runtime", "incremental", "-O3", "--noColors"}

// ExtismAssemblyScriptKey returns the cache key of the Extism AssemblyScript plugin in dir.
func ExtismAssemblyScriptKey(dir string) (string, error) {
	node, err := exec.LookPath("node")
	if err != nil {
		return "", errors.New("node not found (apt-get install nodejs)")
	}
	ver, err := toolVersion(node, "--version")
	if err != nil {
		return "", err
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	// The compiler is pinned by the SDK's package files: they are part of the key.
	sdk := filepath.Join(root, "guest-sdk", "assemblyscript")
	h, err := HashFiles("extism-as\x00"+ver+"\x00"+strings.Join(extismASFlags, " "), dir, filepath.Join(sdk, "package.json"), filepath.Join(sdk, "package-lock.json"))
	if err != nil {
		return "", err
	}
	return "extism-as-" + h[:32], nil
}

// BuildExtismAssemblyScript compiles the plugin in dir to out, without a module cache. On
// failure the error carries the npm or compiler output.
func BuildExtismAssemblyScript(dir, out string) error {
	root, err := RepoRoot()
	if err != nil {
		return err
	}
	want, err := pinnedAssemblyScript(filepath.Join(root, "guest-sdk", "assemblyscript", "package.json"))
	if err != nil {
		return err
	}
	if got, err := pinnedAssemblyScript(filepath.Join(dir, "package.json")); err == nil && got != want {
		return fmt.Errorf("%s pins assemblyscript %s, the SDK %s", filepath.Join(dir, "package.json"), got, want)
	}
	entry := filepath.Join("assembly", "index.ts")
	if _, err := os.Stat(filepath.Join(dir, entry)); err != nil {
		return fmt.Errorf("%s is not an AssemblyScript plugin: %w", dir, err)
	}
	deps, err := npmDependencies(dir)
	if err != nil {
		return err
	}
	asc, err := AssemblyScriptCompiler()
	if err != nil {
		return err
	}
	absOut, err := filepath.Abs(out)
	if err != nil {
		return err
	}
	args := append([]string{asc, entry, "--path", deps}, extismASFlags...)
	args = append(args, "-o", absOut)
	cmd := exec.Command("node", args...)
	cmd.Dir = dir
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("node %s (in %s): %v\n%s", strings.Join(args, " "), dir, err, b)
	}
	return nil
}

var npmDeps sync.Map // lock hash -> *npmInstall

type npmInstall struct {
	once sync.Once
	path string
	err  error
}

// npmDependencies installs the runtime dependencies dir's package.json and package-lock.json
// pin (npm ci --omit=dev) into CacheDir()/npm-HASH once per lock file, and returns that
// node_modules folder.
func npmDependencies(dir string) (string, error) {
	files := []string{"package.json", "package-lock.json"}
	h, err := HashFiles("npm-deps", filepath.Join(dir, files[0]), filepath.Join(dir, files[1]))
	if err != nil {
		return "", err
	}
	v, _ := npmDeps.LoadOrStore(h, &npmInstall{})
	in := v.(*npmInstall)
	in.once.Do(func() { in.path, in.err = npmInstallOnce(dir, "npm", h, []string{"--omit=dev"}, "node_modules") })
	return in.path, in.err
}
