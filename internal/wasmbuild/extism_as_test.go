package wasmbuild

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/tetratelabs/wazero"
)

func TestExtismAssemblyScriptPlugin(t *testing.T) {
	if testing.Short() {
		t.Skip("builds an AssemblyScript plugin")
	}
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "plugins", "extism-as")
	p := ExtismAssemblyScript(t, dir)
	if ExtismAssemblyScript(t, dir) != p {
		t.Error("second build must hit the cache")
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	rt := wazero.NewRuntime(ctx)
	defer rt.Close(ctx)
	cm, err := rt.CompileModule(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range cm.ImportedFunctions() {
		if ns, name, _ := d.Import(); ns != "extism:host/env" {
			t.Errorf("imports %s.%s; an Extism plugin should import only extism:host/env", ns, name)
		}
	}
	for _, fn := range []string{"leaf", "merge", "handle", "noop"} {
		if _, ok := cm.ExportedFunctions()[fn]; !ok {
			t.Errorf("does not export %s", fn)
		}
	}
}

func TestExtismAssemblyScriptBuildError(t *testing.T) {
	RequireTool(t, "node")
	RequireTool(t, "npm")
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, f := range []string{"package.json", "package-lock.json"} {
		b, err := os.ReadFile(filepath.Join(root, "plugins", "extism-as", f))
		if err != nil {
			t.Fatal(err)
		}
		writeTestFile(t, filepath.Join(dir, f), string(b))
	}
	writeTestFile(t, filepath.Join(dir, "assembly", "index.ts"), "export function leaf(): i32 { return nope; }\n")
	if err := BuildExtismAssemblyScript(dir, filepath.Join(t.TempDir(), "x.wasm")); err == nil {
		t.Fatal("a plugin that does not compile built")
	}
}
