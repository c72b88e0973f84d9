package scaffold

import (
	"bytes"
	"errors"
	"go/format"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wasmpod/wasmpod/host/internal/podspec"
	"github.com/wasmpod/wasmpod/internal/doctest"
	"github.com/wasmpod/wasmpod/internal/wasmbuild"
)

// TestSDKArchiveCurrent: the SDK sources embedded in the binary are those of guest-sdk/ (run
// go generate ./host/internal/scaffold after changing an SDK).
func TestSDKArchiveCurrent(t *testing.T) {
	root, err := wasmbuild.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	files, err := ReadSDK(root)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(FormatArchive(files), sdkArchive) {
		t.Fatal("host/internal/scaffold/sdk.txt is stale: run go generate ./host/internal/scaffold")
	}
	back, err := parseArchive(sdkArchive)
	if err != nil || len(back) != len(files) {
		t.Fatalf("parse: %d files, %v; want %d", len(back), err, len(files))
	}
	for name, b := range files {
		if !bytes.Equal(back[name], b) && !bytes.Equal(back[name], append(b, '\n')) {
			t.Errorf("%s does not round-trip", name)
		}
	}
}

func TestWrite(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "My Plugin")
	files, err := Write(Options{Lang: "go", Role: "main", Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"go.mod", "main.go", "pod.yaml", "README.md", "test.sh", "wasmpod-sdk/go/go.mod", "wasmpod-sdk/go/handler/handler.go"} {
		if _, err := os.Stat(filepath.Join(dir, want)); err != nil {
			t.Errorf("%s: %v (wrote %v)", want, err, files)
		}
	}
	pod, _ := os.ReadFile(filepath.Join(dir, "pod.yaml"))
	if !strings.Contains(string(pod), "name: my-plugin") {
		t.Fatalf("the name is not a DNS label made of the directory's:\n%s", pod)
	}
	if fi, err := os.Stat(filepath.Join(dir, "test.sh")); err != nil || fi.Mode()&0o100 == 0 {
		t.Fatalf("test.sh is not executable: %v", err)
	}
	if _, err := Write(Options{Lang: "go", Role: "main", Dir: dir}); !errors.Is(err, ErrNotEmpty) {
		t.Fatalf("a second init into the same directory: %v", err)
	}
	if _, err := Write(Options{Lang: "cobol", Role: "main", Dir: t.TempDir()}); err == nil || !strings.Contains(err.Error(), "extism-as") {
		t.Fatalf("unknown language: %v", err)
	}
	if _, err := Write(Options{Lang: "c", Role: "init", Dir: t.TempDir()}); err == nil || !strings.Contains(err.Error(), "stage") {
		t.Fatalf("unknown role: %v", err)
	}
	long := filepath.Join(t.TempDir(), strings.Repeat("a", 80))
	if _, err := Write(Options{Lang: "go", Role: "ambassador", Dir: long}); err != nil {
		t.Fatal(err)
	}
	if _, err := podspec.Parse(must(os.ReadFile(filepath.Join(long, "pod.yaml"))), long); err != nil {
		t.Fatalf("a long directory name gave module names that are not DNS labels: %v", err)
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

// TestEveryCombination: every language and role is scaffolded, with a pod.yaml that podspec
// accepts, a README whose command blocks doctest parses, a test.sh sh can parse and gofmt'd Go
// sources. The docs test builds and serves them (TestScaffolds); this one is fast.
func TestEveryCombination(t *testing.T) {
	wantRoles := map[string]podspec.Role{}
	for _, r := range podspec.Roles() {
		wantRoles[string(r)] = r
	}
	for _, role := range Roles {
		if _, ok := wantRoles[role]; !ok {
			t.Errorf("init offers role %q, which pod specs do not have", role)
		}
		delete(wantRoles, role)
	}
	for r := range wantRoles {
		t.Errorf("init does not scaffold role %s", r)
	}
	for _, lang := range Languages {
		for _, role := range Roles {
			t.Run(lang+"/"+role, func(t *testing.T) {
				dir := filepath.Join(t.TempDir(), "x-"+lang+"-"+role)
				_, err := Write(Options{Lang: lang, Role: role, Dir: dir})
				if err != nil {
					t.Fatal(err)
				}
				pod, err := podspec.Parse(must(os.ReadFile(filepath.Join(dir, "pod.yaml"))), dir)
				if err != nil {
					t.Fatal(err)
				}
				want := podspec.Role(role)
				if role == "merge" {
					want = podspec.RoleMerge
				}
				var found bool
				for _, m := range pod.Spec.Modules {
					found = found || m.Role == want
					if m.Wasm != "plugin.wasm" && (m.Wasm != "main.wasm" || m.Role != podspec.RoleMain || !strings.HasPrefix(lang, "extism-")) {
						t.Errorf("module %s runs %s, not the plugin", m.Name, m.Wasm)
					}
				}
				if !found {
					t.Errorf("pod.yaml has no module of role %s", want)
				}
				switch role {
				case "stage":
					if len(pod.Spec.Pipelines) != 1 || len(pod.Spec.Pipelines[0].Stages) != 1 {
						t.Errorf("pod.yaml defines pipelines %+v, want one of one stage", pod.Spec.Pipelines)
					}
				case "leaf", "merge":
					if pod.Spec.Scatter == nil {
						t.Error("pod.yaml serves no scatter")
					}
				}
				md := filepath.Join(dir, "README.md")
				blocks, err := doctest.Parse(md, must(os.ReadFile(md)))
				if err != nil || len(blocks) < 3 {
					t.Fatalf("README: %d blocks, %v", len(blocks), err)
				}
				if out, err := exec.Command("sh", "-n", filepath.Join(dir, "test.sh")).CombinedOutput(); err != nil {
					t.Fatalf("test.sh: %v\n%s", err, out)
				}
				for _, f := range []string{"main.go", "main_test.go", "main/main.go"} {
					src, err := os.ReadFile(filepath.Join(dir, f))
					if errors.Is(err, fs.ErrNotExist) {
						continue
					}
					if _, err := parser.ParseFile(token.NewFileSet(), f, src, parser.AllErrors); err != nil {
						t.Errorf("%s does not parse: %v\n%s", f, err, src)
					}
					if formatted, err := format.Source(src); err != nil || !bytes.Equal(formatted, src) {
						t.Errorf("%s is not gofmt'd (%v)", f, err)
					}
				}
			})
		}
	}
}

// TestMergeIsLeaf: `init merge` writes exactly the files of `init leaf` (one file plays leaf and
// merge), so the docs test builds only the leaf.
func TestMergeIsLeaf(t *testing.T) {
	for _, lang := range Languages {
		a, b := filepath.Join(t.TempDir(), "p"), filepath.Join(t.TempDir(), "p")
		fa, err := Write(Options{Lang: lang, Role: "leaf", Dir: a})
		if err != nil {
			t.Fatal(err)
		}
		fb, err := Write(Options{Lang: lang, Role: "merge", Dir: b})
		if err != nil {
			t.Fatal(err)
		}
		if strings.Join(fa, " ") != strings.Join(fb, " ") {
			t.Fatalf("%s: leaf wrote %v, merge %v", lang, fa, fb)
		}
		for _, f := range fa {
			if !bytes.Equal(must(os.ReadFile(filepath.Join(a, f))), must(os.ReadFile(filepath.Join(b, f)))) {
				t.Errorf("%s: %s differs between leaf and merge", lang, f)
			}
		}
	}
}
