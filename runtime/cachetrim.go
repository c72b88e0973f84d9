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
}

// maybe trims the directory if the last walk is cacheTrimEvery old; it never blocks a compile
// behind another's walk.
func (c *cacheTrim) maybe() {
	if !c.mu.TryLock() {
		return
	}
	defer c.mu.Unlock()
	if time.Since(c.last) < cacheTrimEvery {
		return
	}
	c.last = time.Now()
	_, _, _ = trimCache(c.dir, c.max, c.last) // best effort: a compile must not fail for it
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
// it belongs to a load under way. It returns how many files it removed and their bytes.
func trimCache(dir string, max int64, now time.Time) (removed int, freed int64, err error) {
	top, err := os.ReadDir(dir)
	if err != nil {
		return 0, 0, err
	}
	var subs []string
	for _, de := range top {
		if de.IsDir() && strings.HasPrefix(de.Name(), "wazero-") {
			subs = append(subs, filepath.Join(dir, de.Name()))
		}
	}
	var entries []cacheEntry
	var total int64
	var errs []error
	remove := func(path string, size int64) {
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
			return
		}
		removed++
		freed += size
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
	if max >= 0 && total > max {
		slices.SortFunc(entries, func(a, b cacheEntry) int { return a.lastUse.Compare(b.lastUse) })
		for _, e := range entries {
			if total <= max/4*3 {
				break
			}
			if now.Sub(e.lastUse) < cacheTrimEvery {
				break // every later entry is as recent
			}
			remove(e.path, e.size)
			total -= e.size
		}
	}
	// Directories stay, even emptied: wazero makes its own when the engine starts and writes
	// into it without making it again.
	return removed, freed, errors.Join(errs...)
}

// isCacheKey reports whether name is a complete entry's: the hex of a 32-byte key.
func isCacheKey(name string) bool {
	if len(name) != 64 {
		return false
	}
	_, err := hex.DecodeString(name)
	return err == nil
}
