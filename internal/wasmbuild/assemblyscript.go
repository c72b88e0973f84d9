package wasmbuild

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// AssemblyScriptSDKPackage is the package name under which AssemblyScript plugins import the
// SDK (guest-sdk/assemblyscript): `import { input, ok } from "wasmpod-sdk"`.
const AssemblyScriptSDKPackage = "wasmpod-sdk"

// AssemblyScript builds the AssemblyScript guest module in dir and returns the .wasm path. The
// entry file is dir/assembly/index.ts; it imports the SDK as "wasmpod-sdk", and the compiler
// options are the SDK's asconfig.json (incremental runtime, start function exported as
// _initialize, abort/trace/seed routed to the SDK so that only wasmpod and WASI are imported).
//
// The compiler is the assemblyscript version pinned by the SDK's package.json and
// package-lock.json, installed once with `npm ci` into the cache (see AssemblyScriptCompiler),
// not into dir. If dir has a package.json that names assemblyscript, it must pin that same
// version.
//
// The cache key covers dir, guest-sdk/assemblyscript (without node_modules) and `node
// --version`. Without node and npm the test is skipped (failed under WASMPOD_REQUIRE_TOOLS=1);
// a failing install (e.g. no registry) fails it.
func AssemblyScript(tb testing.TB, dir string) string {
	tb.Helper()
	RequireTool(tb, "node")
	RequireTool(tb, "npm")
	return buildCached(tb, dir, AssemblyScriptKey, BuildAssemblyScript)
}

// AssemblyScriptKey returns the cache key of the AssemblyScript guest module in dir (see
// AssemblyScript).
func AssemblyScriptKey(dir string) (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	node, err := exec.LookPath("node")
	if err != nil {
		return "", errors.New("node not found (apt-get install nodejs)")
	}
	ver, err := toolVersion(node, "--version")
	if err != nil {
		return "", err
	}
	h, err := HashFiles("assemblyscript\x00"+ver, dir, filepath.Join(root, "guest-sdk", "assemblyscript"))
	if err != nil {
		return "", err
	}
	return "as-" + h[:32], nil
}

// BuildAssemblyScript compiles the AssemblyScript guest module in dir to the file out, without
// a module cache (the compiler itself is installed once, see AssemblyScriptCompiler). On failure
// the error carries the compiler output.
func BuildAssemblyScript(dir, out string) error {
	root, err := RepoRoot()
	if err != nil {
		return err
	}
	sdk := filepath.Join(root, "guest-sdk", "assemblyscript")
	want, err := pinnedAssemblyScript(filepath.Join(sdk, "package.json"))
	if err != nil {
		return err
	}
	got, err := pinnedAssemblyScript(filepath.Join(dir, "package.json"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	} else if err == nil && got != want {
		return fmt.Errorf("%s pins assemblyscript %s, the SDK %s", filepath.Join(dir, "package.json"), got, want)
	}
	asc, err := AssemblyScriptCompiler()
	if err != nil {
		return err
	}
	entry := filepath.Join(dir, "assembly", "index.ts")
	if _, err := os.Stat(entry); err != nil {
		return fmt.Errorf("%s is not an AssemblyScript guest: %w", dir, err)
	}
	absOut, err := filepath.Abs(out)
	if err != nil {
		return err
	}
	// asc resolves the package "wasmpod-sdk" in the folders given with --path: a private folder
	// beside out with a link to this checkout's SDK.
	pkgs, err := os.MkdirTemp(filepath.Dir(absOut), "as-path-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(pkgs)
	if err := os.Symlink(sdk, filepath.Join(pkgs, AssemblyScriptSDKPackage)); err != nil {
		return err
	}
	args := []string{asc, entry, "--config", filepath.Join(sdk, "asconfig.json"), "--path", pkgs, "--noColors", "-o", absOut}
	cmd := exec.Command("node", args...)
	cmd.Dir = dir
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("node %s: %v\n%s", strings.Join(args, " "), err, b)
	}
	return nil
}

var ascOnce struct {
	sync.Once
	path string
	err  error
}

// AssemblyScriptCompiler returns the path of asc.js of the assemblyscript version pinned by
// guest-sdk/assemblyscript/package.json and package-lock.json. The first call in a cache
// installs it with `npm ci` into CacheDir()/asc-HASH (HASH of those two files); later calls,
// also from other processes and checkouts, reuse it. Run it with node.
func AssemblyScriptCompiler() (string, error) {
	ascOnce.Do(func() { ascOnce.path, ascOnce.err = installAssemblyScript() })
	return ascOnce.path, ascOnce.err
}

func installAssemblyScript() (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	sdk := filepath.Join(root, "guest-sdk", "assemblyscript")
	files := []string{"package.json", "package-lock.json"}
	h, err := HashFiles("asc-install", filepath.Join(sdk, files[0]), filepath.Join(sdk, files[1]))
	if err != nil {
		return "", err
	}
	return npmInstallOnce(sdk, "asc", h, []string{"--include=dev"}, filepath.Join("node_modules", "assemblyscript", "bin", "asc.js"))
}

// pinnedAssemblyScript returns the assemblyscript version a package.json names in
// devDependencies or dependencies; fs.ErrNotExist if it has none (or there is no file).
func pinnedAssemblyScript(packageJSON string) (string, error) {
	b, err := os.ReadFile(packageJSON)
	if err != nil {
		return "", err
	}
	var pkg struct {
		Dependencies    map[string]string `json:"dependencies"`
		DevDependencies map[string]string `json:"devDependencies"`
	}
	if err := json.Unmarshal(b, &pkg); err != nil {
		return "", fmt.Errorf("%s: %w", packageJSON, err)
	}
	for _, deps := range []map[string]string{pkg.DevDependencies, pkg.Dependencies} {
		if v, ok := deps["assemblyscript"]; ok {
			return v, nil
		}
	}
	return "", fmt.Errorf("%s names no assemblyscript: %w", packageJSON, fs.ErrNotExist)
}
