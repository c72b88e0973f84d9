package runtime

import (
	"io"
	"io/fs"
	"path/filepath"
	"sync"
	"time"

	experimentalsys "github.com/tetratelabs/wazero/experimental/sys"
)

// dirQuota bounds the bytes a mounted directory holds (a pod's emptyDir sizeLimit). Every
// instance of every module mounting the same host directory shares one quota, so the limit holds
// for the directory, not per guest.
//
// Accounting is by deltas: a write that extends a file reserves the growth first and fails when
// it does not fit; truncating, unlinking and renaming over a file give its bytes
// back (the failing write gets EIO: see errNoSpace). The starting figure, and any drift from changes made outside the guests (the host
// cleaning the directory), is corrected by walking the directory: when the quota is created,
// and again when a write would not fit (at most once a second, so a guest hammering a full
// directory cannot turn every write into a walk).
type dirQuota struct {
	dir    string
	mu     sync.Mutex
	limit  int64
	used   int64
	synced time.Time
}

// errNoSpace is what a write past the quota returns: EIO, because wazero's WASI layer has no
// ENOSPC to give (it maps only the errnos of experimental/sys).
const errNoSpace = experimentalsys.EIO

// quotaResyncEvery bounds how often a full directory is walked again before refusing a write.
const quotaResyncEvery = time.Second

var quotas sync.Map // cleaned host path -> *dirQuota

// quotaFor returns the shared quota of dir with limit (the latest limit given wins).
func quotaFor(dir string, limit int64) *dirQuota {
	key := filepath.Clean(dir)
	v, loaded := quotas.LoadOrStore(key, &dirQuota{dir: key, limit: limit})
	q := v.(*dirQuota)
	q.mu.Lock()
	q.limit = limit
	if !loaded {
		q.resyncLocked()
	}
	q.mu.Unlock()
	return q
}

func (q *dirQuota) resyncLocked() {
	var total int64
	filepath.WalkDir(q.dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				total += fi.Size()
			}
		}
		return nil
	})
	q.used = total
	q.synced = time.Now()
}

// reserve takes n bytes of the quota, or reports false when they do not fit.
func (q *dirQuota) reserve(n int64) bool {
	if n <= 0 {
		return true
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.used+n > q.limit && time.Since(q.synced) >= quotaResyncEvery {
		q.resyncLocked()
	}
	if q.used+n > q.limit {
		return false
	}
	q.used += n
	return true
}

// release gives n bytes back.
func (q *dirQuota) release(n int64) {
	if n <= 0 {
		return
	}
	q.mu.Lock()
	q.used = max(0, q.used-n)
	q.mu.Unlock()
}

// quotaFS is a mount's file system with its directory's quota enforced.
type quotaFS struct {
	*mountFS
	q *dirQuota
}

// sizeOf is the size of the regular file at the resolved path r that removing it would free
// (0 for other files, or a file with other links).
func (f *quotaFS) sizeOf(r string) int64 {
	st, errno := f.dir.Lstat(r)
	if errno != 0 || !fs.FileMode(st.Mode).IsRegular() || st.Nlink > 1 {
		return 0
	}
	return st.Size
}

func (f *quotaFS) OpenFile(p string, flag experimentalsys.Oflag, perm fs.FileMode) (experimentalsys.File, experimentalsys.Errno) {
	var freed int64
	if flag&experimentalsys.O_TRUNC != 0 {
		if r, errno := f.resolve(p, flag&experimentalsys.O_NOFOLLOW == 0); errno == 0 {
			freed = f.sizeOf(r)
		}
	}
	file, errno := f.mountFS.OpenFile(p, flag, perm)
	if errno != 0 {
		return nil, errno
	}
	f.q.release(freed)
	if flag&(experimentalsys.O_WRONLY|experimentalsys.O_RDWR) == 0 {
		return file, 0
	}
	return &quotaFile{File: file, q: f.q}, 0
}

func (f *quotaFS) Unlink(p string) experimentalsys.Errno {
	var freed int64
	if r, errno := f.resolve(p, false); errno == 0 {
		freed = f.sizeOf(r)
	}
	if errno := f.mountFS.Unlink(p); errno != 0 {
		return errno
	}
	f.q.release(freed)
	return 0
}

func (f *quotaFS) Rename(from, to string) experimentalsys.Errno {
	var freed int64
	if r, errno := f.resolve(to, false); errno == 0 {
		freed = f.sizeOf(r)
	}
	if errno := f.mountFS.Rename(from, to); errno != 0 {
		return errno
	}
	f.q.release(freed)
	return 0
}

// quotaFile reserves the bytes a write or truncate adds to the file before doing it.
type quotaFile struct {
	experimentalsys.File
	q *dirQuota
}

// grow is how many bytes the file grows by if [off, off+n) is written; off < 0 means the
// current offset (or the end, for a file in append mode).
func (f *quotaFile) grow(off int64, n int) (int64, experimentalsys.Errno) {
	st, errno := f.File.Stat()
	if errno != 0 {
		return 0, errno
	}
	if off < 0 {
		if f.File.IsAppend() {
			off = st.Size
		} else if off, errno = f.File.Seek(0, io.SeekCurrent); errno != 0 {
			return 0, errno
		}
	}
	return max(0, off+int64(n)-st.Size), 0
}

func (f *quotaFile) write(off int64, buf []byte, do func() (int, experimentalsys.Errno)) (int, experimentalsys.Errno) {
	g, errno := f.grow(off, len(buf))
	if errno != 0 {
		return 0, errno
	}
	if !f.q.reserve(g) {
		return 0, errNoSpace
	}
	n, errno := do()
	if n < len(buf) {
		// Give back what was reserved and not written.
		f.q.release(min(g, int64(len(buf)-n)))
	}
	return n, errno
}

func (f *quotaFile) Write(buf []byte) (int, experimentalsys.Errno) {
	return f.write(-1, buf, func() (int, experimentalsys.Errno) { return f.File.Write(buf) })
}

func (f *quotaFile) Pwrite(buf []byte, off int64) (int, experimentalsys.Errno) {
	return f.write(off, buf, func() (int, experimentalsys.Errno) { return f.File.Pwrite(buf, off) })
}

func (f *quotaFile) Truncate(size int64) experimentalsys.Errno {
	st, errno := f.File.Stat()
	if errno != 0 {
		return errno
	}
	if size > st.Size {
		if !f.q.reserve(size - st.Size) {
			return errNoSpace
		}
	}
	if errno := f.File.Truncate(size); errno != 0 {
		if size > st.Size {
			f.q.release(size - st.Size)
		}
		return errno
	}
	if size < st.Size {
		f.q.release(st.Size - size)
	}
	return 0
}
