package doctest

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	md := "# t\n\n<!-- doctest: run in=sub needs=go,clang except \"rm\" (destructive) -->\n    echo a \\\n      b\n    # a comment\n    rm -rf x\n\nText.\n\n<!-- doctest: skip: needs two machines -->\n```sh\nssh x\n```\n\n```go\nfunc main() {}\n```\n\n- a list\n\n      not a block\n\n<!-- doctest: output -->\n    42\n"
	blocks, err := Parse("x.md", []byte(md))
	if err != nil {
		t.Fatal(err)
	}
	if len(blocks) != 3 {
		t.Fatalf("%d blocks: %+v", len(blocks), blocks)
	}
	b := blocks[0]
	if b.Mode != "run" || b.In != "sub" || strings.Join(b.Needs, ",") != "go,clang" || len(b.Except) != 1 || b.Line != 4 {
		t.Fatalf("block 0: %+v", b)
	}
	if got := strings.Join(b.Commands(), "|"); got != "echo a    b|rm -rf x" {
		t.Fatalf("commands %q", got)
	}
	if blocks[1].Mode != "skip" || blocks[1].Reason != "needs two machines" || blocks[2].Mode != "output" {
		t.Fatalf("blocks 1, 2: %+v %+v", blocks[1], blocks[2])
	}
	for _, bad := range []string{
		"    echo unmarked\n",
		"<!-- doctest: skip -->\n    x\n",
		"<!-- doctest: frobnicate -->\n    x\n",
		"<!-- doctest: run -->\n\nprose\n",
	} {
		if _, err := Parse("bad.md", []byte(bad)); err == nil {
			t.Errorf("%q parsed without error", bad)
		}
	}
}

func TestRun(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	env := Env{Base: dir, Log: t.Logf}
	ctx := context.Background()
	run := func(md string) error {
		blocks, err := Parse("t.md", []byte(md))
		if err != nil {
			t.Fatal(err)
		}
		return env.Run(ctx, blocks[0])
	}
	if err := run("<!-- doctest: run in=sub -->\n    echo hi > f\n    cd ..\n    test -f sub/f\n    echo hello world   #=> lo wo\n"); err != nil {
		t.Fatal(err)
	}
	if err := run("<!-- doctest: run -->\n    echo hello   #=> bye\n"); err == nil || !strings.Contains(err.Error(), `want it to contain "bye"`) {
		t.Fatalf("a wrong #=>: %v", err)
	}
	if err := run("<!-- doctest: run -->\n    false\n    echo never\n"); err == nil {
		t.Fatal("a failing command passed")
	}
	if err := run("<!-- doctest: run except \"false\" (skipped) -->\n    false\n"); err != nil {
		t.Fatal(err)
	}
	if err := run("<!-- doctest: run script -->\n    for i in 1 2; do\n      echo $i\n    done | grep -q 2\n"); err != nil {
		t.Fatal(err)
	}
}
