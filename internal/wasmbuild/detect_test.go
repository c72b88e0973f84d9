package wasmbuild

import (
	"path/filepath"
	"testing"
)

func TestDetect(t *testing.T) {
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct{ dir, lang string }{
		{"plugins/echo", "go"},                // guest SDK: c-shared reactor
		{"plugins/extism-go", "go"},           // Extism PDK: c-shared reactor
		{"plugins/pipeline-wc", "go-command"}, // plain main: WASI command
		{"runtime/testdata/cmdguest", "go-command"},
		{"plugins/c-leaf", "c"},
		{"plugins/rust-leaf", "rust"},
		{"plugins/as-leaf", "assemblyscript"},
	}
	for _, c := range cases {
		lang, build, err := Detect(filepath.Join(root, c.dir))
		if err != nil || lang != c.lang || build == nil {
			t.Errorf("Detect(%s) = %q, %v; want %q", c.dir, lang, err, c.lang)
		}
	}
	if _, _, err := Detect(filepath.Join(root, "docs-that-do-not-exist")); err == nil {
		t.Error("Detect of a missing dir: no error")
	}
}
