package sparedirs_test

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/wasmpod/wasmpod/internal/sparedirs"
)

func inode(t *testing.T, p string) uint64 {
	t.Helper()
	st, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return st.Sys().(*syscall.Stat_t).Ino
}

func mkdir(t *testing.T, p string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(p, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

func write(t *testing.T, p string) {
	t.Helper()
	if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
}

// setup returns a work directory and Dirs keeping at most max in a private spare directory.
func setup(t *testing.T, max int) (string, *sparedirs.Dirs) {
	t.Helper()
	base := t.TempDir()
	work, spare := filepath.Join(base, "work"), filepath.Join(base, "spare")
	mkdir(t, work, 0o700)
	mkdir(t, spare, 0o700)
	return work, sparedirs.New(spare, max)
}

// Directories emptied from a work directory are renamed into place for the next names: the
// same inodes come back, none is made.
func TestReuse(t *testing.T) {
	work, d := setup(t, 8)
	if err := d.MakeAll(work, "r1/deep"); err != nil {
		t.Fatal(err)
	}
	if err := sparedirs.Private(filepath.Join(work, "r1", "deep")); err != nil {
		t.Fatal(err)
	}
	made := map[uint64]bool{inode(t, filepath.Join(work, "r1")): true, inode(t, filepath.Join(work, "r1", "deep")): true}
	write(t, filepath.Join(work, "r1", "deep", "out"))
	if err := d.Empty(work); err != nil {
		t.Fatal(err)
	}
	if d.Len() != 2 {
		t.Fatalf("%d kept, want 2", d.Len())
	}
	if err := d.MakeAll(work, "r2/x"); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"r2", "r2/x"} {
		if ino := inode(t, filepath.Join(work, p)); !made[ino] {
			t.Fatalf("%s is a new directory, want a kept one", p)
		}
		if ents, _ := os.ReadDir(filepath.Join(work, p)); p == "r2/x" && len(ents) != 0 {
			t.Fatalf("reused directory holds %d entries", len(ents))
		}
	}
	if d.Len() != 0 {
		t.Fatalf("%d still kept", d.Len())
	}
	if err := d.MakeAll(work, "."); err != nil {
		t.Fatal(err)
	}
}

// What Empty meets below a work directory, as a stage may leave it.
func TestEmpty(t *testing.T) {
	for _, tc := range []struct {
		name  string
		plant func(t *testing.T, work, outside string)
		kept  int
	}{
		{"files", func(t *testing.T, work, _ string) { write(t, filepath.Join(work, "f")) }, 0},
		{"a symbolic link to a directory outside: removed, not followed", func(t *testing.T, work, outside string) {
			if err := os.Symlink(outside, filepath.Join(work, "link")); err != nil {
				t.Fatal(err)
			}
		}, 0},
		{"a public directory: removed", func(t *testing.T, work, _ string) {
			mkdir(t, filepath.Join(work, "pub", "in"), 0o755)
			write(t, filepath.Join(work, "pub", "in", "f"))
		}, 0},
		{"private directories holding links and files: emptied and kept", func(t *testing.T, work, outside string) {
			mkdir(t, filepath.Join(work, "a", "b"), 0o700)
			write(t, filepath.Join(work, "a", "b", "f"))
			if err := os.Symlink(outside, filepath.Join(work, "a", "link")); err != nil {
				t.Fatal(err)
			}
		}, 2},
		{"more private directories than are kept", func(t *testing.T, work, _ string) {
			mkdir(t, filepath.Join(work, "1", "2", "3", "4", "5", "6"), 0o700)
		}, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			work, d := setup(t, 4)
			outside := t.TempDir()
			write(t, filepath.Join(outside, "keep"))
			tc.plant(t, work, outside)
			if err := d.Empty(work); err != nil {
				t.Fatal(err)
			}
			if ents, _ := os.ReadDir(work); len(ents) != 0 {
				t.Fatalf("work holds %d entries after Empty", len(ents))
			}
			if d.Len() != tc.kept {
				t.Fatalf("%d kept, want %d", d.Len(), tc.kept)
			}
			if _, err := os.Stat(filepath.Join(outside, "keep")); err != nil {
				t.Fatalf("a file outside the work directory: %v", err)
			}
			// What is kept is empty and private, and serves MakeAll.
			if err := d.MakeAll(work, "x/y/z/w/v"); err != nil {
				t.Fatal(err)
			}
			if err := d.Empty(work); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// MakeAll refuses to make a directory through a file or a symbolic link, and makes nothing
// where one leads.
func TestMakeAllRefuses(t *testing.T) {
	for _, tc := range []struct {
		name  string
		plant func(t *testing.T, work, outside string)
	}{
		{"file", func(t *testing.T, work, _ string) { write(t, filepath.Join(work, "a")) }},
		{"symbolic link", func(t *testing.T, work, outside string) {
			if err := os.Symlink(outside, filepath.Join(work, "a")); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			work, d := setup(t, 4)
			outside := t.TempDir()
			tc.plant(t, work, outside)
			err := d.MakeAll(work, "a/b")
			if err == nil || !strings.Contains(err.Error(), "is not a directory") {
				t.Fatalf("err = %v, want one saying a is not a directory", err)
			}
			if ents, _ := os.ReadDir(outside); len(ents) != 0 {
				t.Fatalf("made %d entries through the %s", len(ents), tc.name)
			}
		})
	}
}
