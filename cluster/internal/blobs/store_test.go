package blobs

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func content(n int, seed uint64) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16)}))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func shaOf(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func openStore(t testing.TB, maxSize int64) *Store {
	t.Helper()
	s, err := Open(t.TempDir(), maxSize)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// tmpEmpty fails the test if the store's temp directory holds anything.
func tmpEmpty(t testing.TB, s *Store) {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(s.Dir(), tmpDirName))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		t.Errorf("left in tmp: %s", e.Name())
	}
}

// blobCount counts the stored blobs.
func blobCount(t testing.TB, s *Store) int {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(s.Dir(), "??", strings.Repeat("?", 64)))
	if err != nil {
		t.Fatal(err)
	}
	return len(m)
}

func readBlob(t testing.TB, s *Store, sha string) []byte {
	t.Helper()
	f, size, err := s.Open(sha)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(b)) != size {
		t.Fatalf("Open size %d, read %d", size, len(b))
	}
	return b
}

func TestValidSHA(t *testing.T) {
	good := shaOf([]byte("x"))
	for _, tc := range []struct {
		sha string
		ok  bool
	}{
		{good, true},
		{strings.Repeat("0", 64), true},
		{"", false},
		{good[:63], false},
		{good + "0", false},
		{strings.ToUpper(good), false},
		{strings.Repeat("g", 64), false},
		{"../" + good[3:], false},
		{strings.Repeat("é", 32), false},
	} {
		err := ValidSHA(tc.sha)
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrInvalid)) {
			t.Errorf("ValidSHA(%q) = %v, want ok=%v", tc.sha, err, tc.ok)
		}
	}
}

func TestPutDedupHasOpen(t *testing.T) {
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"small", []byte("hello, blobs")},
		{"1MiB+1", content(1<<20+1, 1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openStore(t, 0)
			want := shaOf(tc.data)
			if s.Has(want) {
				t.Fatal("Has before Put")
			}
			for round := range 2 { // the second Put deduplicates
				sha, size, err := s.Put(bytes.NewReader(tc.data))
				if err != nil {
					t.Fatal(err)
				}
				if sha != want || size != int64(len(tc.data)) {
					t.Fatalf("round %d: Put = %s, %d; want %s, %d", round, sha, size, want, len(tc.data))
				}
			}
			if !s.Has(want) {
				t.Fatal("Has after Put = false")
			}
			if n := blobCount(t, s); n != 1 {
				t.Fatalf("%d blobs stored, want 1", n)
			}
			tmpEmpty(t, s)
			p, err := s.Path(want)
			if err != nil {
				t.Fatal(err)
			}
			if wantP := filepath.Join(s.Dir(), want[:2], want); p != wantP {
				t.Fatalf("Path = %s, want %s", p, wantP)
			}
			st, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode().Perm() != 0o644 {
				t.Errorf("mode %v, want 0644", st.Mode().Perm())
			}
			if got := readBlob(t, s, want); !bytes.Equal(got, tc.data) {
				t.Fatal("content differs")
			}
			if sz, err := s.Size(want); err != nil || sz != int64(len(tc.data)) {
				t.Fatalf("Size = %d, %v", sz, err)
			}
		})
	}
}

func TestLookupErrors(t *testing.T) {
	s := openStore(t, 0)
	missing := shaOf([]byte("missing"))
	for _, tc := range []struct {
		sha  string
		want error
	}{
		{missing, ErrNotFound},
		{"nope", ErrInvalid},
		{strings.ToUpper(missing), ErrInvalid},
	} {
		if s.Has(tc.sha) {
			t.Errorf("Has(%q) = true", tc.sha)
		}
		if _, err := s.Path(tc.sha); !errors.Is(err, tc.want) {
			t.Errorf("Path(%q) = %v, want %v", tc.sha, err, tc.want)
		}
		if f, _, err := s.Open(tc.sha); !errors.Is(err, tc.want) {
			if f != nil {
				f.Close()
			}
			t.Errorf("Open(%q) = %v, want %v", tc.sha, err, tc.want)
		}
		if _, err := s.Size(tc.sha); !errors.Is(err, tc.want) {
			t.Errorf("Size(%q) = %v, want %v", tc.sha, err, tc.want)
		}
	}
}

func TestPutExpect(t *testing.T) {
	data := content(100<<10, 2)
	other := []byte("something else")
	for _, tc := range []struct {
		name   string
		sha    string
		data   []byte
		want   error
		stored bool
	}{
		{"match", shaOf(data), data, nil, true},
		{"mismatch", shaOf(data), other, ErrCorrupt, false},
		{"truncated", shaOf(data), data[:len(data)-1], ErrCorrupt, false},
		{"bad sha", "xyz", data, ErrInvalid, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openStore(t, 0)
			size, err := s.PutExpect(tc.sha, bytes.NewReader(tc.data))
			if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
				t.Fatalf("PutExpect = %d, %v; want %v", size, err, tc.want)
			}
			if err == nil && size != int64(len(tc.data)) {
				t.Fatalf("size %d, want %d", size, len(tc.data))
			}
			if got := s.Has(tc.sha); got != tc.stored {
				t.Fatalf("Has = %v, want %v", got, tc.stored)
			}
			want := 0
			if tc.stored {
				want = 1
			}
			if n := blobCount(t, s); n != want {
				t.Fatalf("%d blobs stored, want %d", n, want)
			}
			tmpEmpty(t, s)
		})
	}
}

func TestTooLarge(t *testing.T) {
	const limit = 1000
	for _, tc := range []struct {
		size int
		want error
	}{
		{0, nil},
		{limit, nil},
		{limit + 1, ErrTooLarge},
		{10 * limit, ErrTooLarge},
	} {
		s := openStore(t, limit)
		data := content(tc.size, 3)
		_, _, err := s.Put(bytes.NewReader(data))
		if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
			t.Errorf("Put(%d bytes) = %v, want %v", tc.size, err, tc.want)
		}
		_, err = s.PutExpect(shaOf(data), bytes.NewReader(data))
		if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
			t.Errorf("PutExpect(%d bytes) = %v, want %v", tc.size, err, tc.want)
		}
		p := filepath.Join(t.TempDir(), "f")
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		_, _, err = s.Import(p)
		if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
			t.Errorf("Import(%d bytes) = %v, want %v", tc.size, err, tc.want)
		}
		if got := s.Has(shaOf(data)); got != (tc.want == nil) {
			t.Errorf("%d bytes: Has = %v", tc.size, got)
		}
		tmpEmpty(t, s)
	}
}

func TestImport(t *testing.T) {
	s := openStore(t, 0)
	data := content(300<<10, 4)
	p := filepath.Join(t.TempDir(), "in.bin")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	sha, size, err := s.Import(p)
	if err != nil {
		t.Fatal(err)
	}
	if sha != shaOf(data) || size != int64(len(data)) {
		t.Fatalf("Import = %s, %d", sha, size)
	}
	if !bytes.Equal(readBlob(t, s, sha), data) {
		t.Fatal("content differs")
	}
	for _, bad := range []struct {
		path string
		want error
	}{
		{filepath.Join(t.TempDir(), "absent"), os.ErrNotExist},
		{t.TempDir(), ErrInvalid},
	} {
		if _, _, err := s.Import(bad.path); !errors.Is(err, bad.want) {
			t.Errorf("Import(%s) = %v, want %v", bad.path, err, bad.want)
		}
	}
}

func TestOpenRemovesStaleTemp(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	sha, _, err := s.Put(strings.NewReader("kept"))
	if err != nil {
		t.Fatal(err)
	}
	// What a crash mid-Put leaves behind.
	tmp := filepath.Join(dir, tmpDirName)
	for _, name := range []string{"put-123", "put-456", "junk"} {
		if err := os.WriteFile(filepath.Join(tmp, name), []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(tmp, "sub", "dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	tmpEmpty(t, s2)
	if !s2.Has(sha) {
		t.Fatal("stored blob lost by reopening")
	}
	if _, _, err := s2.Put(strings.NewReader("new")); err != nil {
		t.Fatal(err)
	}
}

func TestOpenErrors(t *testing.T) {
	if _, err := Open("", 0); !errors.Is(err, ErrInvalid) {
		t.Errorf("Open(\"\") = %v", err)
	}
	f := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(f, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(f, 0); err == nil {
		t.Error("Open on a file succeeded")
	}
	s := openStore(t, -5)
	if s.MaxSize() != DefaultMaxSize {
		t.Errorf("MaxSize = %d", s.MaxSize())
	}
}

// errReader fails after some bytes, like a broken upload.
type errReader struct{ n int }

func (e *errReader) Read(p []byte) (int, error) {
	if e.n <= 0 {
		return 0, errors.New("boom")
	}
	m := min(len(p), e.n)
	clear(p[:m])
	e.n -= m
	return m, nil
}

func TestPutReaderError(t *testing.T) {
	s := openStore(t, 0)
	if _, _, err := s.Put(&errReader{n: 100 << 10}); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("Put = %v", err)
	}
	tmpEmpty(t, s)
	if n := blobCount(t, s); n != 0 {
		t.Fatalf("%d blobs stored", n)
	}
}

func TestRemoveWalkAndAge(t *testing.T) {
	s := openStore(t, 0)
	old, _, err := s.Put(strings.NewReader("old"))
	if err != nil {
		t.Fatal(err)
	}
	fresh, _, err := s.Put(strings.NewReader("fresh"))
	if err != nil {
		t.Fatal(err)
	}
	past := time.Now().Add(-2 * time.Hour)
	for _, sha := range []string{old, fresh} {
		if err := os.Chtimes(s.path(sha), past, past); err != nil {
			t.Fatal(err)
		}
	}
	// Storing the same content again makes it fresh: garbage collection gives it a new grace.
	if _, _, err := s.Put(strings.NewReader("fresh")); err != nil {
		t.Fatal(err)
	}
	seen := map[string]time.Time{}
	if err := s.Walk(func(sha string, at time.Time) error { seen[sha] = at; return nil }); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 2 || !seen[old].Before(time.Now().Add(-time.Hour)) || seen[fresh].Before(time.Now().Add(-time.Minute)) {
		t.Fatalf("walk saw %v", seen)
	}
	cutoff := time.Now().Add(-time.Hour)
	cases := []struct {
		sha  string
		want bool
	}{{old, true}, {fresh, false}, {old, false}}
	for _, c := range cases {
		got, err := s.RemoveIfOlder(c.sha, cutoff)
		if err != nil || got != c.want {
			t.Fatalf("RemoveIfOlder(%s) = %v, %v; want %v", c.sha[:8], got, err, c.want)
		}
	}
	if s.Has(old) || !s.Has(fresh) {
		t.Fatalf("after collection: old %v fresh %v", s.Has(old), s.Has(fresh))
	}
	if err := s.Remove(fresh); err != nil || s.Has(fresh) {
		t.Fatalf("Remove: %v", err)
	}
	if err := s.Remove(fresh); err != nil {
		t.Fatalf("Remove of a missing blob: %v", err)
	}
	if err := s.Remove("nope"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Remove of a bad sha: %v", err)
	}
	stop := errors.New("stop")
	if _, _, err := s.Put(strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	if err := s.Walk(func(string, time.Time) error { return stop }); !errors.Is(err, stop) {
		t.Fatalf("Walk did not return fn's error: %v", err)
	}
}

// TestStageMoveMode: a moved file becomes a blob with the blobs' mode (0644, no special bits),
// whatever mode it had, small (its content kept for Pend) or large.
func TestStageMoveMode(t *testing.T) {
	s := openStore(t, 0)
	for _, size := range []int{20, keptContent + 1} {
		for _, mode := range []os.FileMode{0o644, 0o600, 0o755, 0o666, 0o644 | os.ModeSetuid, 0o644 | os.ModeSetgid, 0o444} {
			t.Run(fmt.Sprintf("%d bytes, %v", size, mode), func(t *testing.T) {
				data := bytes.Repeat([]byte(fmt.Sprintf("%v.", mode)), size)[:size]
				src := filepath.Join(t.TempDir(), "out")
				if err := os.WriteFile(src, data, 0o600); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(src, mode); err != nil {
					t.Fatal(err)
				}
				p, err := s.StageMove(src)
				if err != nil {
					t.Fatal(err)
				}
				if err := s.Commit(p); err != nil {
					t.Fatal(err)
				}
				path, err := s.Path(p.SHA256)
				if err != nil {
					t.Fatal(err)
				}
				st, err := os.Lstat(path)
				if err != nil {
					t.Fatal(err)
				}
				if got := st.Mode() & (os.ModePerm | os.ModeSetuid | os.ModeSetgid | os.ModeSticky); got != blobMode {
					t.Fatalf("blob mode %v, want %v", got, os.FileMode(blobMode))
				}
				if got := readBlob(t, s, p.SHA256); !bytes.Equal(got, data) {
					t.Fatal("content differs")
				}
			})
		}
	}
}
