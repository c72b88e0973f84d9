package blobs

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// durability records, through the syncFile and syncDir hooks, what a store makes durable and
// checks the order a crash-safe commit needs: a blob's content is fsynced while it is still a
// temporary file (never after it appears at its address), and its address directory is
// fsynced after the rename. It fails the test when a blob is reported stored without both.
type durability struct {
	t  *testing.T
	s  *Store
	mu sync.Mutex
	// synced: sha -> its content was fsynced before any rename; dirSynced: sha -> its
	// directory was fsynced while the blob was at its address.
	synced, dirSynced map[string]bool
	files, dirs       int
}

func watchDurability(t *testing.T, s *Store) *durability {
	d := &durability{t: t, s: s, synced: map[string]bool{}, dirSynced: map[string]bool{}}
	oldFile, oldDir := syncFile, syncDir
	t.Cleanup(func() { syncFile, syncDir = oldFile, oldDir })
	syncFile = func(path string) error {
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		sha := shaOf(b)
		d.mu.Lock()
		defer d.mu.Unlock()
		d.files++
		if filepath.Dir(path) != s.tmp {
			d.t.Errorf("fsynced %s, not a temporary file", path)
		}
		if _, err := os.Lstat(s.path(sha)); err == nil && !d.synced[sha] {
			d.t.Errorf("blob %s was at its address before its content was fsynced", sha[:12])
		}
		d.synced[sha] = true
		return oldFile(path)
	}
	syncDir = func(dir string) error {
		d.mu.Lock()
		defer d.mu.Unlock()
		d.dirs++
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			d.dirSynced[e.Name()] = true
		}
		return oldDir(dir)
	}
	return d
}

// durable fails unless sha is stored, its content was fsynced before the rename and its
// directory after.
func (d *durability) durable(sha string) {
	d.t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.s.Has(sha) {
		d.t.Errorf("blob %s is not stored", sha[:12])
	}
	if !d.synced[sha] {
		d.t.Errorf("blob %s: content never fsynced before it was acknowledged", sha[:12])
	}
	if !d.dirSynced[sha] {
		d.t.Errorf("blob %s: its directory was not fsynced after the rename", sha[:12])
	}
}

// TestCommitDurableOrder: every way into the store (Put, Import, staged blobs committed
// together, concurrent Puts sharing a group commit) makes the content durable before the
// rename and the rename durable before it returns; a blob committed as a batch costs one
// fsync of its content and one per distinct directory.
func TestCommitDurableOrder(t *testing.T) {
	s := openStore(t, 0)
	d := watchDurability(t, s)

	sha, _, err := s.Put(bytes.NewReader(content(100, 1)))
	if err != nil {
		t.Fatal(err)
	}
	d.durable(sha)

	src := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(src, content(200, 2), 0o644); err != nil {
		t.Fatal(err)
	}
	sha, _, err = s.Import(src)
	if err != nil {
		t.Fatal(err)
	}
	d.durable(sha)

	// A batch: n staged files, one Commit.
	const n = 20
	var staged []Staged
	dirs := map[string]bool{}
	for i := range n {
		f := filepath.Join(t.TempDir(), fmt.Sprint(i))
		if err := os.WriteFile(f, content(300, uint64(10+i)), 0o644); err != nil {
			t.Fatal(err)
		}
		p, err := s.StageFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if s.Has(p.SHA256) {
			t.Fatalf("staged blob %s is at its address before Commit", p.SHA256[:12])
		}
		staged = append(staged, p)
		dirs[p.SHA256[:2]] = true
	}
	d.mu.Lock()
	files0, dirs0 := d.files, d.dirs
	d.mu.Unlock()
	if err := s.Commit(staged...); err != nil {
		t.Fatal(err)
	}
	for _, p := range staged {
		d.durable(p.SHA256)
	}
	if got := d.files - files0; got != n {
		t.Errorf("batch of %d: %d file fsyncs, want %d", n, got, n)
	}
	if got := d.dirs - dirs0; got != len(dirs) {
		t.Errorf("batch of %d in %d directories: %d directory fsyncs", n, len(dirs), got)
	}

	// Concurrent Puts: each acknowledged one is durable, whoever ran its commit.
	var wg sync.WaitGroup
	shas := make([]string, 16)
	for i := range shas {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sha, _, err := s.Put(bytes.NewReader(content(50, uint64(100+i))))
			if err != nil {
				t.Error(err)
			}
			shas[i] = sha
		}()
	}
	wg.Wait()
	for _, sha := range shas {
		d.durable(sha)
	}
	tmpEmpty(t, s)
}

// TestStagedDiscardAndDuplicate: a discarded staged blob leaves nothing; committing content
// already stored keeps one copy and its temporary file goes.
func TestStagedDiscardAndDuplicate(t *testing.T) {
	s := openStore(t, 0)
	f := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(f, content(64, 7), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := s.StageFile(f)
	if err != nil {
		t.Fatal(err)
	}
	s.Discard(p)
	s.Discard(p)
	if s.Has(p.SHA256) || blobCount(t, s) != 0 {
		t.Fatal("a discarded blob was stored")
	}
	tmpEmpty(t, s)
	a, _ := s.StageFile(f)
	b, _ := s.StageFile(f)
	if err := s.Commit(a, b); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(a); err != nil { // again: already present
		t.Fatal(err)
	}
	if !s.Has(a.SHA256) || blobCount(t, s) != 1 {
		t.Fatalf("want one stored copy, have %d", blobCount(t, s))
	}
	tmpEmpty(t, s)
}

// TestStageMove: a file is moved into the store rather than copied (nothing is left where it
// was, and the stored blob is that very file), committed like a copy; what cannot be a blob is
// refused and left in place.
func TestStageMove(t *testing.T) {
	s := openStore(t, 1000)
	dir := t.TempDir()
	data := content(700, 9)
	f := filepath.Join(dir, "out")
	if err := os.WriteFile(f, data, 0o600); err != nil {
		t.Fatal(err)
	}
	before, err := os.Stat(f)
	if err != nil {
		t.Fatal(err)
	}
	p, err := s.StageMove(f)
	if err != nil {
		t.Fatal(err)
	}
	if p.SHA256 != shaOf(data) || p.Size != int64(len(data)) {
		t.Fatalf("staged %s, %d; want %s, %d", p.SHA256, p.Size, shaOf(data), len(data))
	}
	if _, err := os.Lstat(f); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the file is still where it was: %v", err)
	}
	if err := s.Commit(p); err != nil {
		t.Fatal(err)
	}
	at, err := s.Path(p.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	after, err := os.Stat(at)
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(before, after) {
		t.Fatal("the stored blob is a copy, not the file moved")
	}
	if after.Mode().Perm() != blobMode {
		t.Fatalf("stored with mode %v, want %v", after.Mode().Perm(), os.FileMode(blobMode))
	}
	if !bytes.Equal(readBlob(t, s, p.SHA256), data) {
		t.Fatal("content differs")
	}
	tmpEmpty(t, s)

	// A file with another name is copied, and left as it was.
	shared := filepath.Join(dir, "shared")
	if err := os.WriteFile(shared, data[:100], 0o600); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(dir, "other")
	if err := os.Link(shared, other); err != nil {
		t.Fatal(err)
	}
	p, err = s.StageMove(other)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(p); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(other)
	if err != nil {
		t.Fatalf("a file with two names was moved: %v", err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("the file's mode is now %v, want it left at 0600", st.Mode().Perm())
	}
	at, err = s.Path(p.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if stored, err := os.Stat(at); err != nil || os.SameFile(st, stored) {
		t.Fatalf("the blob shares its file with a name outside the store (%v)", err)
	}
	tmpEmpty(t, s)

	big := filepath.Join(dir, "big")
	if err := os.WriteFile(big, content(1001, 1), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(big, link); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []struct {
		path string
		want error
	}{
		{filepath.Join(dir, "absent"), os.ErrNotExist},
		{dir, ErrInvalid},
		{link, ErrInvalid},
		{big, ErrTooLarge},
	} {
		if _, err := s.StageMove(bad.path); !errors.Is(err, bad.want) {
			t.Errorf("StageMove(%s) = %v, want %v", bad.path, err, bad.want)
		}
		if _, err := os.Lstat(bad.path); bad.want != os.ErrNotExist && err != nil {
			t.Errorf("%s was not left in place: %v", bad.path, err)
		}
	}
	tmpEmpty(t, s)
}

// TestStageMoveSwapped: a file that changes between StageMove's check and its rename (swapped
// for another file, for a symbolic link, for a name of a file with another name, or given a
// second name) is refused once moved and nothing of it stays in the store; the files it was
// swapped with are left as they were. An unchanged file is moved as usual.
func TestStageMoveSwapped(t *testing.T) {
	for _, tc := range []struct {
		name string
		// swap changes the file at path just before the rename; dir holds "orig" (where the
		// checked file may be put aside) and "secret", a file that is not to be stored.
		swap    func(path, dir string) error
		refused bool
	}{
		{"unchanged", func(string, string) error { return nil }, false},
		{"another file", func(path, dir string) error {
			other := filepath.Join(dir, "other")
			if err := os.WriteFile(other, content(300, 3), 0o600); err != nil {
				return err
			}
			if err := os.Rename(path, filepath.Join(dir, "orig")); err != nil {
				return err
			}
			return os.Rename(other, path)
		}, true},
		{"symbolic link", func(path, dir string) error {
			if err := os.Rename(path, filepath.Join(dir, "orig")); err != nil {
				return err
			}
			return os.Symlink(filepath.Join(dir, "secret"), path)
		}, true},
		{"hard link with 2 names", func(path, dir string) error {
			if err := os.Rename(path, filepath.Join(dir, "orig")); err != nil {
				return err
			}
			return os.Link(filepath.Join(dir, "secret"), path)
		}, true},
		{"second name", func(path, dir string) error {
			return os.Link(path, filepath.Join(dir, "alias"))
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openStore(t, 1000)
			dir := t.TempDir()
			data, secret := content(500, 4), content(400, 5)
			path := filepath.Join(dir, "out")
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "secret"), secret, 0o600); err != nil {
				t.Fatal(err)
			}
			old := renameFile
			t.Cleanup(func() { renameFile = old })
			renameFile = func(from, to string) error {
				if err := tc.swap(from, dir); err != nil {
					t.Fatalf("swap: %v", err)
				}
				return old(from, to)
			}
			p, err := s.StageMove(path)
			if !tc.refused {
				if err != nil || p.SHA256 != shaOf(data) {
					t.Fatalf("StageMove = %+v, %v; want %s staged", p, err, shaOf(data)[:12])
				}
				s.Discard(p)
				tmpEmpty(t, s)
				return
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("StageMove = %+v, %v; want %v", p, err, ErrInvalid)
			}
			s.Discard(p)
			tmpEmpty(t, s)
			if n := blobCount(t, s); n != 0 {
				t.Errorf("%d blobs stored", n)
			}
			if b, err := os.ReadFile(filepath.Join(dir, "secret")); err != nil || !bytes.Equal(b, secret) {
				t.Errorf("the secret file changed: %v", err)
			}
			if st, err := os.Lstat(filepath.Join(dir, "secret")); err != nil || st.Mode().Perm() != 0o600 || linkCount(st) != 1 {
				t.Errorf("the secret file is not as it was: %v %v", st, err)
			}
		})
	}
}
