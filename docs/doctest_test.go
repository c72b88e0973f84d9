// Package docs holds the project's reference documents and the tests that keep them true: every
// command block of README.md, guest-sdk/*/README.md and examples/*/README.md is run as written
// (or marked not runnable here, with the reason), and so is the README of every plugin `wasmpod
// init` scaffolds, in a directory outside this repository.
package docs

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/internal/doctest"
	"github.com/wasmpod/wasmpod/internal/wasmbuild"
)

var binDir string // holds the wasmpod binary, first on the blocks' PATH

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "wasmpod-doctest-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if out, err := exec.Command("go", "build", "-o", filepath.Join(dir, "wasmpod"), "../host/cmd/wasmpod").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build wasmpod: %v\n%s", err, out)
		return 1
	}
	binDir = dir
	return m.Run()
}

func env(t *testing.T, base string) doctest.Env {
	return doctest.Env{
		Base:    base,
		Vars:    []string{"PATH=" + binDir + string(os.PathListSeparator) + os.Getenv("PATH")},
		Timeout: 10 * time.Minute,
		Log:     t.Logf,
	}
}

// runFile runs every block of a Markdown file in order, each as a subtest.
func runFile(t *testing.T, e doctest.Env, file string) {
	md, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	blocks, err := doctest.Parse(file, md)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range blocks {
		t.Run(fmt.Sprintf("line%d", b.Line), func(t *testing.T) {
			switch b.Mode {
			case "skip":
				t.Skipf("not runnable here: %s", b.Reason)
			case "output":
				return
			}
			for _, tool := range b.Needs {
				wasmbuild.RequireTool(t, tool)
			}
			if err := e.Run(context.Background(), b); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestREADMECommands runs the command blocks of the repository's READMEs, in the repository
// (as a reader who cloned it would), one at a time: the hosts they start listen on the
// README's ports.
func TestREADMECommands(t *testing.T) {
	if testing.Short() {
		t.Skip("runs every README's commands")
	}
	root, err := wasmbuild.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	files := []string{filepath.Join(root, "README.md")}
	for _, pattern := range []string{"guest-sdk/*/README.md", "examples/*/README.md"} {
		m, _ := filepath.Glob(filepath.Join(root, pattern))
		files = append(files, m...)
	}
	for _, f := range files {
		rel, _ := filepath.Rel(root, f)
		t.Run(strings.ReplaceAll(rel, "/", "_"), func(t *testing.T) { runFile(t, env(t, root), f) })
	}
}

// TestScaffolds: for each language and role, `wasmpod init` writes a plugin into a directory outside
// this repository, and its README's commands (build, test, validate, serve through ingress and
// ask it) work as written there.
func TestScaffolds(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a plugin in every language")
	}
	root, err := wasmbuild.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	needs := map[string][]string{
		"go":             {"go"},
		"c":              {"clang"},
		"rust":           {"/usr/bin/cargo", "/usr/bin/rustc"},
		"assemblyscript": {"npm", "node"},
		"extism-go":      {"go"},
		"extism-as":      {"npm", "node"},
	}
	help, err := exec.Command(filepath.Join(binDir, "wasmpod"), "init", "--help").CombinedOutput()
	if err != nil || !strings.Contains(string(help), "Languages: go, c, rust, assemblyscript, extism-go, extism-as.") {
		t.Fatalf("wasmpod init --help does not list the languages tested here: %v\n%s", err, help)
	}
	if !strings.Contains(string(help), "Roles: main, sidecar, ambassador, adapter, leaf, merge, stage.") {
		t.Fatalf("wasmpod init --help does not list the roles tested here:\n%s", help)
	}
	// Every language in every role except merge: `init ... merge` writes the very files of
	// `init ... leaf` (a leaf that is also the merge), as the fast test in host/internal/scaffold
	// checks byte for byte.
	var cases []struct{ lang, role string }
	for _, role := range []string{"main", "leaf", "stage", "sidecar", "ambassador", "adapter"} {
		for _, lang := range []string{"go", "c", "rust", "assemblyscript", "extism-go", "extism-as"} {
			cases = append(cases, struct{ lang, role string }{lang, role})
		}
	}
	for _, c := range cases {
		lang := c.lang
		t.Run(lang+"/"+c.role, func(t *testing.T) {
			for _, tool := range needs[lang] {
				wasmbuild.RequireTool(t, tool)
			}
			parent, err := os.MkdirTemp("", "wasmpod-scaffold-*")
			if err != nil {
				t.Fatal(err)
			}
			defer os.RemoveAll(parent)
			if strings.HasPrefix(parent, root+string(filepath.Separator)) {
				t.Fatalf("the scaffold must be built outside the repository, not in %s", parent)
			}
			dir := filepath.Join(parent, "hello-"+lang)
			cmd := exec.Command(filepath.Join(binDir, "wasmpod"), "init", "--lang", lang, c.role, dir)
			cmd.Dir = parent
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("wasmpod init: %v\n%s", err, out)
			}
			e := env(t, dir)
			// No go.work or GOFLAGS of this repository may help the build.
			e.Vars = append(e.Vars, "GOWORK=off", "GOFLAGS=")
			runFile(t, e, filepath.Join(dir, "README.md"))
			if _, err := os.Stat(filepath.Join(dir, "plugin.wasm")); err != nil {
				t.Fatalf("the README's commands built no plugin.wasm: %v", err)
			}
		})
	}
}
