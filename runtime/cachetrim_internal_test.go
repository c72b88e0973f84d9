package runtime

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/internal/wasmbuild"
)

// cacheFile makes a file of size bytes at dir/name, last modified mod ago and last read acc ago.
func cacheFile(t *testing.T, dir, name string, size int, mod, acc time.Duration) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, make([]byte, size), 0o600); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if err := os.Chtimes(p, now.Add(-acc), now.Add(-mod)); err != nil {
		t.Fatal(err)
	}
	return p
}

// key is a cache entry's name: 64 hex digits.
func key(i int) string { return fmt.Sprintf("%064x", i) }

// TestTrimCache: the compilation cache is trimmed least recently used first (by access time,
// or modification time when later) to three quarters of its bound once over it; entries used in
// the last minute, files that are not entries and other directories stay; temporary files of
// writes that died are removed whatever the bound.
func TestTrimCache(t *testing.T) {
	day := 24 * time.Hour
	for _, tc := range []struct {
		name string
		max  int64
		// survivors among e1..e5 (100 bytes each: last used 5, 4, 3 and 2 days ago, and 10 s
		// ago) and e6 (written 6 days ago, read an hour ago)
		want []string
	}{
		// 700 bytes with the old release's entry, the oldest: down to at most 300
		{"over the bound", 400, []string{"e4", "e5", "e6"}},
		{"within the bound", 700, []string{"e1", "e2", "e3", "e4", "e5", "e6"}},
		{"unbounded", -1, []string{"e1", "e2", "e3", "e4", "e5", "e6"}},
		{"a bound of nothing keeps what is in use", 0, []string{"e5"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			w := filepath.Join(dir, "wazero-dev-amd64-linux")
			names := map[string]string{
				cacheFile(t, w, key(1), 100, 5*day, 5*day):                   "e1",
				cacheFile(t, w, key(2), 100, 4*day, 4*day):                   "e2",
				cacheFile(t, w, key(3), 100, 3*day, 3*day):                   "e3",
				cacheFile(t, w, key(4), 100, 2*day, 2*day):                   "e4",
				cacheFile(t, w, key(5), 100, 10*time.Second, 10*time.Second): "e5",
				cacheFile(t, w, key(6), 100, 6*day, time.Hour):               "e6",
			}
			staleTmp := cacheFile(t, w, key(7)+".123.tmp", 50, 2*time.Hour, 2*time.Hour)
			freshTmp := cacheFile(t, w, key(8)+".456.tmp", 50, time.Minute, time.Minute)
			other := cacheFile(t, w, "notes.txt", 1000, 9*day, 9*day)
			foreign := cacheFile(t, filepath.Join(dir, "mine"), key(9), 1000, 9*day, 9*day)
			oldRelease := filepath.Join(dir, "wazero-v1.0.0-amd64-linux")
			cacheFile(t, oldRelease, key(10), 100, 30*day, 30*day)

			r, err := trimCache(dir, tc.max, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			var kept []string
			for p, n := range names {
				if _, err := os.Stat(p); err == nil {
					kept = append(kept, n)
				}
			}
			slices.Sort(kept)
			if !slices.Equal(kept, tc.want) {
				t.Errorf("kept %v, want %v", kept, tc.want)
			}
			for _, p := range []string{freshTmp, other, foreign} {
				if _, err := os.Stat(p); err != nil {
					t.Errorf("%s was removed: %v", filepath.Base(p), err)
				}
			}
			if _, err := os.Stat(staleTmp); err == nil {
				t.Error("a stale temporary file was kept")
			}
			oldEntry := filepath.Join(oldRelease, key(10))
			_, err = os.Stat(oldEntry)
			oldKept, wantOld := err == nil, tc.max < 0 || tc.max >= 700
			if oldKept != wantOld {
				t.Errorf("an old release's entry kept: %v, want %v", oldKept, wantOld)
			}
			// What it reports: the entries kept (100 bytes each), and the files removed (the
			// entries gone of the 7, and the stale temporary file of 50 bytes).
			wantKept := len(tc.want)
			if wantOld {
				wantKept++
			}
			if r.entries != wantKept || r.bytes != int64(100*wantKept) || r.removed != 7-wantKept+1 || r.freed != int64(100*(7-wantKept)+50) {
				t.Errorf("reported %+v, want %d entries of %d bytes kept, %d files of %d bytes removed", r, wantKept, 100*wantKept, 7-wantKept+1, 100*(7-wantKept)+50)
			}
			if _, err := os.Stat(w); err != nil {
				t.Errorf("the cache's directory was removed: %v", err)
			}
		})
	}
}

// TestCacheTrimmedOnCompile: an engine keeps its cache directory within CacheMaxBytes as it
// compiles, removing an entry no load has used for days (its module compiles again when
// loaded), and keeps the one it just wrote.
func TestCacheTrimmedOnCompile(t *testing.T) {
	dir := t.TempDir()
	mod := func(n int) []byte {
		return readTestFile(t, wasmbuild.WATString(t, fmt.Sprintf(`(module
  (memory (export "memory") 2)
  (func (export "wasmpod_abi_version") (result i32) (i32.const 1))
  (func (export "wasmpod_buffer") (param i32) (result i32) (i32.const 1024))
  (func (export "wasmpod_handle") (param i32) (result i64) (i64.const %d)))`, n)))
	}
	entries := func() map[string]time.Duration {
		out := map[string]time.Duration{}
		subs, _ := filepath.Glob(filepath.Join(dir, "wazero-*", "*"))
		for _, p := range subs {
			if fi, err := os.Stat(p); err == nil && !strings.HasSuffix(p, ".tmp") {
				out[p] = time.Since(fi.ModTime())
			}
		}
		return out
	}
	e, err := NewEngine(context.Background(), Config{CacheDir: dir, CacheMaxBytes: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(context.Background())
	m1, err := e.Load(context.Background(), mod(1), DefaultModuleConfig("one"))
	if err != nil {
		t.Fatal(err)
	}
	m1.Close(context.Background())
	first := entries()
	if len(first) == 0 {
		all, _ := filepath.Glob(filepath.Join(dir, "*", "*"))
		t.Fatalf("the compile wrote no cache entry: %v", all)
	}
	old := time.Now().Add(-48 * time.Hour)
	for p := range first {
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
	}
	v, _ := cacheDirs.Load(e.rt)
	v.(*cacheTrim).last = time.Time{} // as if a minute had passed
	m2, err := e.Load(context.Background(), mod(2), DefaultModuleConfig("two"))
	if err != nil {
		t.Fatal(err)
	}
	m2.Close(context.Background())
	after := entries()
	st := e.CacheStats()
	if st.Dir != dir || st.MaxBytes != 1 || st.Removed < uint64(len(first)) || st.RemovedBytes == 0 || st.Entries != len(after) || st.Bytes == 0 || st.LastWalk.IsZero() || st.LastError != "" {
		t.Errorf("CacheStats %+v: want the walk's %d entries removed and %d kept", st, len(first), len(after))
	}
	for p := range first {
		if _, ok := after[p]; ok {
			t.Errorf("the entry unused for two days is still there: %s", filepath.Base(p))
		}
	}
	if len(after) == 0 {
		t.Error("the entry just written was removed")
	}
	// The trimmed module loads again (compiled afresh).
	m1, err = e.Load(context.Background(), mod(1), DefaultModuleConfig("one-again"))
	if err != nil {
		t.Fatal(err)
	}
	m1.Close(context.Background())
}

// TestCacheStatsRefresh: an engine's CacheStats counts the entries compiled since its last
// walk once that walk is more than cacheStatsEvery old, and never counts temporary files.
func TestCacheStatsRefresh(t *testing.T) {
	dir := t.TempDir()
	e, err := NewEngine(context.Background(), Config{CacheDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(context.Background())
	st := e.CacheStats()
	if st.Entries != 0 || st.Bytes != 0 || st.LastWalk.IsZero() || st.MaxBytes != DefaultConfig().CacheMaxBytes {
		t.Fatalf("a new cache: %+v", st)
	}
	m, err := e.Load(context.Background(), readTestFile(t, wasmbuild.WATString(t, `(module
  (memory (export "memory") 2)
  (func (export "wasmpod_abi_version") (result i32) (i32.const 1))
  (func (export "wasmpod_buffer") (param i32) (result i32) (i32.const 1024))
  (func (export "wasmpod_handle") (param i32) (result i64) (i64.const 7)))`)), DefaultModuleConfig("m"))
	if err != nil {
		t.Fatal(err)
	}
	m.Close(context.Background())
	v, _ := cacheDirs.Load(e.rt)
	tr := v.(*cacheTrim)
	tr.mu.Lock()
	tr.last = tr.last.Add(-cacheStatsEvery - time.Second)
	tr.mu.Unlock()
	st = e.CacheStats()
	var files int64
	paths, _ := filepath.Glob(filepath.Join(dir, "wazero-*", "*"))
	for _, p := range paths {
		if fi, err := os.Stat(p); err == nil && isCacheKey(filepath.Base(p)) {
			files += fi.Size()
		}
	}
	if st.Entries < 1 || st.Bytes != files || st.Removed != 0 {
		t.Fatalf("after a compile and %s: %+v; want the entries' %d bytes", cacheStatsEvery, st, files)
	}
}
