package runtime

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/wasmpod/wasmpod/internal/sparedirs"
	"github.com/wasmpod/wasmpod/internal/wasmbuild"
)

// runDirCommand loads the command test guest with its own WorkDir and the given cleaner hooks.
func runDirCommand(t *testing.T, before func(string), after func(string, bool)) (*Command, string) {
	t.Helper()
	c := testCommand(t, Config{DisableImages: true}, readTestFile(t, wasmbuild.GoCommand(t, "testdata/cmdguest")))
	c.dirs.beforeClean, c.dirs.afterClean = before, after
	return c, c.cfg.WorkDir
}

// runFiles runs the command on inputs (name -> content, each in its own host file) and returns
// the output directory.
func runFiles(t *testing.T, c *Command, output string, inputs ...string) string {
	t.Helper()
	src := t.TempDir()
	var ins []CommandInput
	for _, n := range inputs {
		p := filepath.Join(src, strings.ReplaceAll(n, "/", "_"))
		if err := os.WriteFile(p, []byte("content of "+n), 0o644); err != nil {
			t.Fatal(err)
		}
		ins = append(ins, CommandInput{Name: n, Path: p})
	}
	out := t.TempDir()
	if res, err := c.RunInputs(context.Background(), ins, output, out); err != nil {
		t.Fatalf("run %s: %v (stderr %q)", output, err, res.Stderr)
	}
	return out
}

func runDirsIn(t *testing.T, workDir string) []string {
	t.Helper()
	ents, err := os.ReadDir(workDir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// A reused run directory shows a later run nothing of an earlier one: not the earlier inputs,
// nor the directories, files and symbolic links left below /out.
func TestCommandRunDirReuseIsEmpty(t *testing.T) {
	cleaned := make(chan bool, 1)
	plant := func(work string) {
		// What a guest may leave that is not moved out: a failed run's files, symbolic links.
		for p, content := range map[string]string{"out/left.txt": "left", "out/d/e/f.txt": "f"} {
			p = filepath.Join(work, filepath.FromSlash(p))
			if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
				t.Error(err)
			}
			if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
				t.Error(err)
			}
		}
		if err := os.Symlink(filepath.Join(work, "in"), filepath.Join(work, "out", "sym")); err != nil {
			t.Error(err)
		}
	}
	c, workDir := runDirCommand(t, plant, func(_ string, kept bool) { cleaned <- kept })

	runFiles(t, c, "deep/dir/split.txt", "a/b/x.txt", "y.txt")
	if !<-cleaned {
		t.Fatal("emptied run directory not kept")
	}
	first := runDirsIn(t, workDir)
	if len(first) != 1 {
		t.Fatalf("work dir holds %q, want one run directory", first)
	}

	out := runFiles(t, c, "list.txt", "list.txt")
	want := "argv: cmdguest /in/list.txt /out/list.txt\n/in/\n/in/list.txt 19\n/out/\n"
	if got, _ := os.ReadFile(filepath.Join(out, "list.txt")); string(got) != want {
		t.Fatalf("second run sees\n%s\nwant\n%s", got, want)
	}
	if !<-cleaned {
		t.Fatal("emptied run directory not kept")
	}
	if again := runDirsIn(t, workDir); len(again) != 1 || again[0] != first[0] {
		t.Fatalf("work dir holds %q, want the reused %q", again, first)
	}
	if err := c.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if left := runDirsIn(t, workDir); len(left) != 0 {
		t.Fatalf("Close left %q", left)
	}
}

// RunInputs returns while its directory still waits for the cleaner; past the cleaner's
// backlog a run empties its own directory; Close waits for the cleaner and removes everything.
func TestCommandRunDirCleanedOffPath(t *testing.T) {
	queued, unblock := make(chan string), make(chan struct{})
	c, workDir := runDirCommand(t, func(work string) {
		queued <- work
		<-unblock
	}, nil)

	runFiles(t, c, "deep/dir/split.txt", "a/b/x.txt")
	work := <-queued // RunInputs has returned; the cleaner holds the directory
	for _, left := range []string{"out/deep/dir", "out/a/b", "in/a/b/x.txt"} {
		if _, err := os.Lstat(filepath.Join(work, filepath.FromSlash(left))); err != nil {
			t.Fatalf("directory emptied before the cleaner got it: %v", err)
		}
	}
	// The cleaner is stuck: the next runs fill its backlog, then empty their own.
	for range maxDirtyRunDirs + 2 {
		runFiles(t, c, "z.txt", "z.txt")
	}
	if n := len(runDirsIn(t, workDir)); n != 1+maxDirtyRunDirs+1 {
		t.Fatalf("%d run directories, want %d (1 held, %d queued, 1 idle)", n, 1+maxDirtyRunDirs+1, maxDirtyRunDirs)
	}
	go func() {
		for range queued {
		}
	}()
	close(unblock)
	if err := c.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	close(queued)
	if left := runDirsIn(t, workDir); len(left) != 0 {
		t.Fatalf("Close left %q", left)
	}
	in := filepath.Join(t.TempDir(), "z.txt")
	if err := os.WriteFile(in, []byte("z"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := c.RunInputs(context.Background(), []CommandInput{{Name: "z.txt", Path: in}}, "z.txt", t.TempDir()); err == nil {
		t.Fatal("run after Close succeeded")
	}
	if left := runDirsIn(t, workDir); len(left) != 0 {
		t.Fatalf("run after Close left %q", left)
	}
}

// spares returns the inode numbers of the spare directories of the one run directory in
// workDir, failing unless each is an empty private directory.
func spares(t *testing.T, workDir string) map[uint64]bool {
	t.Helper()
	runs := runDirsIn(t, workDir)
	if len(runs) != 1 {
		t.Fatalf("work dir holds %q, want one run directory", runs)
	}
	dir := filepath.Join(workDir, runs[0], "spare")
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	inodes := map[uint64]bool{}
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		if err := sparedirs.Private(p); err != nil {
			t.Fatalf("spare: %v", err)
		}
		if in, err := os.ReadDir(p); err != nil || len(in) != 0 {
			t.Fatalf("spare %s holds %d entries (%v)", e.Name(), len(in), err)
		}
		st, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		inodes[st.Sys().(*syscall.Stat_t).Ino] = true
	}
	return inodes
}

// The directories a run's names imply (in/r1 for the input "r1/t1", out/r1 for the output) are
// kept as spares and renamed into place for the next run's names: no directory is made or
// removed per run once a run directory has its spares. What a guest leaves is kept only as an
// emptied private directory, up to maxSpareDirs; the later run still sees only its own inputs.
func TestCommandRunDirSpares(t *testing.T) {
	cleaned := make(chan bool, 1)
	var plant func(work string)
	c, workDir := runDirCommand(t, func(work string) {
		if plant != nil {
			plant(work)
		}
	}, func(_ string, kept bool) { cleaned <- kept })

	runFiles(t, c, "r1/t1", "r1/t1")
	<-cleaned
	first := spares(t, workDir)
	if len(first) != 2 {
		t.Fatalf("%d spares after a run with in/r1 and out/r1, want 2", len(first))
	}
	for _, name := range []string{"r2/t2", "r3/t3"} {
		runFiles(t, c, name, name)
		<-cleaned
		if got := spares(t, workDir); !maps.Equal(got, first) {
			t.Fatalf("spares after %s: inodes %v, want the same directories %v", name, got, first)
		}
	}

	// Left by a guest: a public directory, a directory holding a symbolic link and a file, and
	// more nested private directories than are kept.
	plant = func(work string) {
		out := filepath.Join(work, "out")
		if err := os.Mkdir(filepath.Join(out, "public"), 0o755); err != nil {
			t.Error(err)
		}
		if err := os.MkdirAll(filepath.Join(out, "x"), 0o700); err != nil {
			t.Error(err)
		}
		if err := os.Symlink("/etc", filepath.Join(out, "x", "sym")); err != nil {
			t.Error(err)
		}
		if err := os.WriteFile(filepath.Join(out, "x", "f"), []byte("f"), 0o600); err != nil {
			t.Error(err)
		}
		deep := out
		for i := range 2 * maxSpareDirs {
			deep = filepath.Join(deep, fmt.Sprint("d", i))
		}
		if err := os.MkdirAll(deep, 0o700); err != nil {
			t.Error(err)
		}
	}
	runFiles(t, c, "r4/t4", "r4/t4")
	if !<-cleaned {
		t.Fatal("run directory not kept")
	}
	plant = nil
	if got := spares(t, workDir); len(got) != maxSpareDirs {
		t.Fatalf("%d spares, want %d (the bound)", len(got), maxSpareDirs)
	}
	out := runFiles(t, c, "list.txt", "a/b/list.txt")
	want := "argv: cmdguest /in/a/b/list.txt /out/list.txt\n/in/\n/in/a/\n/in/a/b/\n/in/a/b/list.txt 23\n/out/\n"
	if got, _ := os.ReadFile(filepath.Join(out, "list.txt")); string(got) != want {
		t.Fatalf("run after the planted one sees\n%s\nwant\n%s", got, want)
	}
}
