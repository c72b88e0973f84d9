package main

import (
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Saver rotates an access log and archives the rotated files, gzipped, each line exactly once.
//
// Every tick:
//
//  1. Archive: every rotated file "<log>.<unix-ms>.rotated" older than Settle is compressed to
//     "<archive>/<base>-<unix-ms>.log.gz" (written to a temporary name, synced and renamed,
//     so an archive either exists whole or not at all), then the rotated file is removed. If
//     the archive already exists (a crash between the rename and the removal), the rotated
//     file is only removed: nothing is archived twice.
//  2. Rotate: a non-empty log is renamed to "<log>.<unix-ms>.rotated". The writer opens the
//     log for every line, so its next line creates a fresh log; a line whose writer had opened
//     the old file before the rename lands in the rotated file, within the writer's call
//     deadline, which is why archiving waits Settle (set it above main's timeout).
type Saver struct {
	Log     string        // the log file, e.g. /logs/access.log
	Archive string        // the archive directory, e.g. /logs/archive
	Settle  time.Duration // how long a rotated file rests before it is archived
}

// Stats counts what one tick did.
type Stats struct {
	Rotated, Archived, Lines int
}

// Tick runs one rotation and archive pass at now.
func (s *Saver) Tick(now time.Time) (Stats, error) {
	var st Stats
	if err := os.MkdirAll(s.Archive, 0o755); err != nil {
		return st, fmt.Errorf("archive dir: %w", err)
	}
	rotated, err := s.rotatedFiles()
	if err != nil {
		return st, err
	}
	var errs []error
	for _, r := range rotated {
		if now.Sub(time.UnixMilli(r.ms)) < s.Settle {
			continue
		}
		n, err := s.archive(r)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		st.Archived++
		st.Lines += n
	}
	fi, err := os.Stat(s.Log)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		errs = append(errs, err)
	case fi.Size() > 0:
		ms := now.UnixMilli()
		for _, r := range rotated { // one rotation per millisecond, names stay unique
			if r.ms >= ms {
				ms = r.ms + 1
			}
		}
		if err := os.Rename(s.Log, fmt.Sprintf("%s.%d.rotated", s.Log, ms)); err != nil {
			errs = append(errs, fmt.Errorf("rotate: %w", err))
		} else {
			st.Rotated++
		}
	}
	return st, errors.Join(errs...)
}

type rotatedFile struct {
	path string
	ms   int64
}

// rotatedFiles lists the rotated files, oldest first.
func (s *Saver) rotatedFiles() ([]rotatedFile, error) {
	dir, base := filepath.Split(s.Log)
	ents, err := os.ReadDir(filepath.Clean(dir))
	if err != nil {
		return nil, fmt.Errorf("log dir: %w", err)
	}
	var out []rotatedFile
	for _, e := range ents {
		rest, ok := strings.CutPrefix(e.Name(), base+".")
		if !ok {
			continue
		}
		msStr, ok := strings.CutSuffix(rest, ".rotated")
		if !ok {
			continue
		}
		ms, err := strconv.ParseInt(msStr, 10, 64)
		if err != nil {
			continue
		}
		out = append(out, rotatedFile{filepath.Join(dir, e.Name()), ms})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ms < out[j].ms })
	return out, nil
}

// ArchiveName is the archive of a file rotated at unix-ms ms.
func (s *Saver) ArchiveName(ms int64) string {
	base := strings.TrimSuffix(filepath.Base(s.Log), filepath.Ext(s.Log))
	return filepath.Join(s.Archive, fmt.Sprintf("%s-%d.log.gz", base, ms))
}

// archive compresses one rotated file and removes it; it returns the number of lines.
func (s *Saver) archive(r rotatedFile) (int, error) {
	dst := s.ArchiveName(r.ms)
	if _, err := os.Stat(dst); err == nil {
		return 0, os.Remove(r.path) // archived before a crash: only the removal was missing
	}
	src, err := os.ReadFile(r.path)
	if err != nil {
		return 0, err
	}
	tmp := dst + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return 0, err
	}
	zw := gzip.NewWriter(f)
	_, err = zw.Write(src)
	if err == nil {
		err = zw.Close()
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, dst)
	}
	if err != nil {
		os.Remove(tmp)
		return 0, fmt.Errorf("archive %s: %w", r.path, err)
	}
	return strings.Count(string(src), "\n"), os.Remove(r.path)
}

// ReadArchive returns the lines of every archive in dir, in archive order (for tests and tools).
func ReadArchive(dir string) ([]string, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.log.gz"))
	if err != nil {
		return nil, err
	}
	sort.Strings(paths)
	var lines []string
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return nil, err
		}
		zr, err := gzip.NewReader(f)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		b, err := io.ReadAll(zr)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		for _, l := range strings.SplitAfter(string(b), "\n") {
			if l != "" {
				lines = append(lines, strings.TrimSuffix(l, "\n"))
			}
		}
	}
	return lines, nil
}
