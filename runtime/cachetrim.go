package runtime

import (
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// The compilation cache (Config.CacheDir) gains an entry for every module version compiled,
// and wazero never removes one: a host that is upgraded or hot-loads plugins for months would
// fill its disk. So the engine trims it to Config.CacheMaxBytes, least recently used first.
const (
	// cacheTrimEvery: the directory is walked when the engine starts and then at most once a
	// minute, after a compile: a walk stats every entry (a few hundred at most).
	cacheTrimEvery = time.Minute
	// cacheStatsEvery: CacheStats walks (and trims) the directory again when its figures are
	// older than this, so that a scrape sees the entries compiled since the last walk.
	cacheStatsEvery = 10 * time.Second
	// cacheTmpStale: wazero writes an entry to a temporary file and renames it; one older
	// than an hour was left by a process that died while writing.
	cacheTmpStale = time.Hour
)

// cacheTrim bounds one engine's compilation cache directory.
type cacheTrim struct {
	dir string
	max int64 // < 0: unbounded (stale temporary files are still removed)

	mu   sync.Mutex
	last time.Time // the last walk

	// What the walks found and did, for CacheStats (under statsMu: a read never waits for a
	// walk).
	statsMu sync.Mutex
	stats   CacheStats
}

// CacheStats describes an engine's compilation cache (Config.CacheDir), as of the engine's
// last walk of it (when it started, at most once a minute after a compile, and when
// Engine.CacheStats finds the figures more than 10 s old).
type CacheStats struct {
	// Dir is the cache directory; MaxBytes its bound (Config.CacheMaxBytes; < 0: none).
	Dir      string
	MaxBytes int64
	// Entries and Bytes are the complete entries the last walk kept (one per module version
	// compiled) and their size.
	Entries int
	Bytes   int64
	// Removed and RemovedBytes count the files the walks removed since the engine started:
	// least recently used entries over the bound, and temporary files of writes that died.
	Removed      uint64
	RemovedBytes uint64
	// LastWalk is when the last walk ran; LastError what it could not do ("" if nothing).
	LastWalk  time.Time
	LastError string
}

// maybe trims the directory if the last walk is at least every old; it never waits for
// another's walk.
func (c *cacheTrim) maybe(every time.Duration) {
	if !c.mu.TryLock() {
		return
	}
	defer c.mu.Unlock()
	if time.Since(c.last) < every {
		return
	}
	c.last = time.Now()
	r, err := trimCache(c.dir, c.max, c.last) // best effort: a compile must not fail for it
	c.statsMu.Lock()
	defer c.statsMu.Unlock()
	st := &c.stats
	st.Dir, st.MaxBytes, st.LastWalk = c.dir, c.max, c.last
	if r.walked {
		st.Entries, st.Bytes = r.entries, r.bytes
	} // else the directory could not be listed: the last figures stand
	st.Removed += uint64(r.removed)
	st.RemovedBytes += uint64(r.freed)
	st.LastError = ""
	if err != nil {
		st.LastError = err.Error()
	}
}

// snapshot returns the stats of the walks so far.
func (c *cacheTrim) snapshot() CacheStats {
	c.statsMu.Lock()
	defer c.statsMu.Unlock()
	return c.stats
}

// cacheEntry is one compiled module in the cache.
type cacheEntry struct {
	path    string
	size    int64
	lastUse time.Time
}

// trimCache removes from dir's wazero cache directories (wazero-*) the temporary files of
// writes that died (cacheTmpStale) and, while the complete entries hold more than max bytes,
// the least recently used entries until they hold at most three quarters of max (so that the
// next compiles do not trim again at once). An entry used in the last cacheTrimEvery is kept:
// it belongs to a load under way. It returns what it removed and what it kept.
func trimCache(dir string, max int64, now time.Time) (r trimResult, err error) {
	top, err := os.ReadDir(dir)
	if err != nil {
		return r, err
	}
	r.walked = true
	var subs []string
	for _, de := range top {
		if de.IsDir() && strings.HasPrefix(de.Name(), "wazero-") {
			subs = append(subs, filepath.Join(dir, de.Name()))
		}
	}
	var entries []cacheEntry
	var total int64
	var errs []error
	remove := func(path string, size int64) bool {
		switch err := os.Remove(path); {
		case errors.Is(err, fs.ErrNotExist):
			return true // gone already (another process sharing the directory): not counted
		case err != nil:
			errs = append(errs, err)
			return false
		}
		r.removed++
		r.freed += size
		return true
	}
	for _, sub := range subs {
		des, err := os.ReadDir(sub)
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
			continue
		}
		for _, de := range des {
			if !de.Type().IsRegular() {
				continue
			}
			fi, err := de.Info()
			if err != nil {
				continue // removed meanwhile
			}
			path := filepath.Join(sub, de.Name())
			switch {
			case isCacheKey(de.Name()):
				entries = append(entries, cacheEntry{path: path, size: fi.Size(), lastUse: lastUse(fi)})
				total += fi.Size()
			case strings.HasSuffix(de.Name(), ".tmp") && now.Sub(fi.ModTime()) > cacheTmpStale:
				remove(path, fi.Size())
			}
		}
	}
	kept := len(entries)
	if max >= 0 && total > max {
		slices.SortFunc(entries, func(a, b cacheEntry) int { return a.lastUse.Compare(b.lastUse) })
		for _, e := range entries {
			if total <= max/4*3 {
				break
			}
			if now.Sub(e.lastUse) < cacheTrimEvery {
				break // every later entry is as recent
			}
			if remove(e.path, e.size) {
				total -= e.size
				kept--
			}
		}
	}
	r.entries, r.bytes = kept, total
	// Directories stay, even emptied: wazero makes its own when the engine starts and writes
	// into it without making it again.
	return r, errors.Join(errs...)
}

// trimResult is what trimCache did: files removed (entries and stale temporary files) and
// their bytes, and the complete entries kept and their bytes (walked: the directory was
// listed, so entries and bytes are figures).
type trimResult struct {
	removed, entries int
	freed, bytes     int64
	walked           bool
}

// isCacheKey reports whether name is a complete entry's: the hex of a 32-byte key.
func isCacheKey(name string) bool {
	if len(name) != 64 {
		return false
	}
	_, err := hex.DecodeString(name)
	return err == nil
}
