package scaffold

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
	if _, err := Write(Options{Lang: "c", Role: "sidecar", Dir: t.TempDir()}); err == nil {
		t.Fatal("an unsupported role was scaffolded")
	}
	for _, lang := range Languages {
		for _, role := range Roles {
			if _, err := Write(Options{Lang: lang, Role: role, Dir: filepath.Join(t.TempDir(), lang)}); err != nil {
				t.Errorf("%s %s: %v", lang, role, err)
			}
		}
	}
}
