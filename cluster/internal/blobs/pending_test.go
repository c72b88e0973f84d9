package blobs

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// watchFlush records, through the syncAll hook, which pending blobs were in a temporary file
// and which at their address at each sync of a Flush.
type watchFlush struct {
	mu    sync.Mutex
	syncs []map[string]string // sha -> "tmp" or "address", per sync
}

func watchSyncAll(t *testing.T, s *Store) *watchFlush {
	w := &watchFlush{}
	old := syncAll
	t.Cleanup(func() { syncAll = old })
	syncAll = func(st *Store, batch map[string]*pendingBlob) error {
		seen := map[string]string{}
		for sha, b := range batch {
			if _, err := os.Lstat(st.path(sha)); err == nil {
				seen[sha] = "address"
			} else if _, err := os.Lstat(b.tmp); err == nil && filepath.Dir(b.tmp) == st.tmp {
				seen[sha] = "tmp"
			}
		}
		w.mu.Lock()
		w.syncs = append(w.syncs, seen)
		w.mu.Unlock()
		return old(st, batch)
	}
	return w
}

// TestPendingFlush: pending blobs (held in memory, or a staged file handed over with Pend) are
// visible to Has and Size but not at their addresses; Flush syncs their content while they are
// temporary files, renames them, and syncs again (two syncs for the batch); Path and Open of a
// pending blob flush it first; a blob already stored is left as it is.
func TestPendingFlush(t *testing.T) {
	s := openStore(t, 0)
	w := watchSyncAll(t, s)

	mem := []byte("held in memory")
	if err := s.AddPending(shaOf(mem), mem); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(t.TempDir(), "out")
	staged := []byte("a staged output")
	if err := os.WriteFile(src, staged, 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := s.StageMove(src)
	if err != nil {
		t.Fatal(err)
	}
	got, ok, err := s.Pend(p, 64)
	if err != nil || !ok || string(got) != string(staged) {
		t.Fatalf("Pend = %q, %v, %v; want its content", got, ok, err)
	}
	stored := []byte("stored the usual way")
	storedSHA, _, err := s.Put(strings.NewReader(string(stored)))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AddPending(storedSHA, stored); err != nil {
		t.Fatal(err)
	}

	if n, memBytes := s.Pending(); n != 2 || memBytes != int64(len(mem)) {
		t.Fatalf("Pending = %d blobs, %d bytes in memory; want 2, %d", n, memBytes, len(mem))
	}
	for _, b := range [][]byte{mem, staged} {
		sha := shaOf(b)
		if n, err := s.Size(sha); err != nil || n != int64(len(b)) || !s.Has(sha) {
			t.Fatalf("pending %q: Size %d, %v", b, n, err)
		}
		if _, err := os.Lstat(s.path(sha)); err == nil {
			t.Fatalf("pending %q is at its address before any flush", b)
		}
	}

	// Open flushes the whole batch.
	f, n, err := s.Open(shaOf(mem))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(f)
	f.Close()
	if string(b) != string(mem) || n != int64(len(mem)) {
		t.Fatalf("Open = %q (%d bytes)", b, n)
	}
	if len(w.syncs) != 2 {
		t.Fatalf("%d syncs for one flush, want 2", len(w.syncs))
	}
	for _, x := range [][]byte{mem, staged} {
		sha := shaOf(x)
		if w.syncs[0][sha] != "tmp" || w.syncs[1][sha] != "address" {
			t.Fatalf("%q: %q at the first sync, %q at the second; want a temporary file, then its address", x, w.syncs[0][sha], w.syncs[1][sha])
		}
		if pb, err := os.ReadFile(s.path(sha)); err != nil || string(pb) != string(x) {
			t.Fatalf("%q at its address: %q, %v", x, pb, err)
		}
	}
	if n, memBytes := s.Pending(); n != 0 || memBytes != 0 {
		t.Fatalf("after Flush: %d pending, %d bytes", n, memBytes)
	}
	if ents, _ := os.ReadDir(s.tmp); len(ents) != 0 {
		t.Fatalf("temporary files left: %v", ents)
	}
	if err := s.Flush(); err != nil || len(w.syncs) != 2 {
		t.Fatalf("Flush with nothing pending: %v, %d syncs", err, len(w.syncs))
	}

	// Path of a pending blob flushes it too.
	again := []byte("pending again")
	if err := s.AddPending(shaOf(again), again); err != nil {
		t.Fatal(err)
	}
	path, err := s.Path(shaOf(again))
	if err != nil || path != s.path(shaOf(again)) || len(w.syncs) != 4 {
		t.Fatalf("Path = %s, %v after %d syncs; want its address after 4", path, err, len(w.syncs))
	}
}

// TestPendingRefused: content that does not hash to its sha, a malformed sha and content over
// the store's limit are refused and nothing becomes pending; a staged file changed after it
// was hashed is refused by Pend; a staged blob over Pend's limit is left to Commit.
func TestPendingRefused(t *testing.T) {
	s := openStore(t, 32)
	for _, tc := range []struct {
		name    string
		sha     string
		content []byte
		want    error
	}{
		{"wrong sha", shaOf([]byte("other")), []byte("content"), ErrCorrupt},
		{"malformed sha", "abc", []byte("content"), ErrInvalid},
		{"too large", shaOf(make([]byte, 33)), make([]byte, 33), ErrTooLarge},
	} {
		if err := s.AddPending(tc.sha, tc.content); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	if n, _ := s.Pending(); n != 0 {
		t.Fatalf("%d pending after refusals", n)
	}

	src := filepath.Join(t.TempDir(), "out")
	if err := os.WriteFile(src, []byte("twenty bytes, about."), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := s.StageMove(src)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.Pend(p, 10); ok || err != nil {
		t.Fatalf("Pend over its limit: %v, %v; want not taken", ok, err)
	}
	if err := os.WriteFile(p.tmp, []byte("changed after hashing"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.Pend(p, 64); ok || !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Pend of a changed file: %v, %v; want ErrCorrupt", ok, err)
	}
	// Rewritten with as many bytes: its modification time tells it (set apart from the
	// hashing's here, as the file system's clock may not have moved on yet).
	if err := os.WriteFile(src, []byte("twenty bytes, about."), 0o644); err != nil {
		t.Fatal(err)
	}
	if p, err = s.StageMove(src); err != nil {
		t.Fatal(err)
	}
	if p.content == nil {
		t.Fatal("StageMove kept no content of a 20-byte file")
	}
	if err := os.WriteFile(p.tmp, []byte("twenty bytes, other."), 0o644); err != nil {
		t.Fatal(err)
	}
	later := p.stat.ModTime().Add(time.Second)
	if err := os.Chtimes(p.tmp, later, later); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.Pend(p, 64); ok || !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Pend of a file rewritten with as many bytes: %v, %v; want ErrCorrupt", ok, err)
	}
	if n, _ := s.Pending(); n != 0 {
		t.Fatalf("%d pending after refusals", n)
	}
}

// TestPendingLostAtReopen: pending blobs are not durable: a store reopened without a Flush (as
// after a crash) does not have them, and has nothing of them at their addresses or in its
// temporary directory. (Their owner's log gives them back.)
func TestPendingLostAtReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := []byte("only in the log")
	if err := s.AddPending(shaOf(b), b); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(t.TempDir(), "out")
	if err := os.WriteFile(src, []byte("staged, pending"), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := s.StageMove(src)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Pend(p, 64); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s2, err := Open(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	for _, sha := range []string{shaOf(b), p.SHA256} {
		if s2.Has(sha) {
			t.Fatalf("%s survived a reopen without Flush", sha[:12])
		}
	}
	if ents, _ := os.ReadDir(s2.tmp); len(ents) != 0 {
		t.Fatalf("temporary files left: %v", ents)
	}
}

// TestPendingFlushFails: a Flush whose sync fails returns the error and leaves the blobs
// pending, not at their addresses; the next one stores them. A closed store still flushes
// (file by file).
func TestPendingFlushFails(t *testing.T) {
	s := openStore(t, 0)
	b := []byte("flush me twice")
	sha := shaOf(b)
	if err := s.AddPending(sha, b); err != nil {
		t.Fatal(err)
	}
	old := syncAll
	t.Cleanup(func() { syncAll = old })
	boom := errors.New("device error")
	syncAll = func(*Store, map[string]*pendingBlob) error { return boom }
	if err := s.Flush(); !errors.Is(err, boom) {
		t.Fatalf("Flush = %v, want the sync's error", err)
	}
	if _, err := os.Lstat(s.path(sha)); err == nil || !s.Has(sha) {
		t.Fatalf("after a failed flush: at its address %v, pending %v; want pending only", err == nil, s.Has(sha))
	}
	syncAll = old
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(s.path(sha)); err != nil || string(got) != string(b) {
		t.Fatalf("after the second flush: %q, %v", got, err)
	}
}
