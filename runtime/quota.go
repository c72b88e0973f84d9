package runtime

import (
	"io"
	"io/fs"
	"path/filepath"
	"sync"
	"time"

	experimentalsys "github.com/tetratelabs/wazero/experimental/sys"
	"github.com/tetratelabs/wazero/sys"
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
//
// A file removed (unlinked or renamed over) while a handle opened through the quota holds it
// stays on the disk until its last handle closes, so its bytes stay charged until then (and
// writes through those handles are charged as any others): otherwise a guest could write,
// unlink and keep the handle, over and over, and fill the disk past the limit. The walk cannot
// see such a file, so the quota keeps the handles of every regular file (held) and adds the
// sizes of the removed ones to what the walk finds.
type dirQuota struct {
	dir    string
	mu     sync.Mutex
	limit  int64
	used   int64
	synced time.Time
	held   map[fileID]*heldFile
}

// fileID names a file for as long as it exists, whatever its names.
type fileID struct{ dev, ino uint64 }

// heldFile is a regular file with handles open through the quota's file systems.
type heldFile struct {
	handles map[*quotaFile]struct{}
	removed bool // its last name is gone: its bytes are given back when the last handle closes
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
	v, loaded := quotas.LoadOrStore(key, &dirQuota{dir: key, limit: limit, held: map[fileID]*heldFile{}})
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
	for _, h := range q.held {
		if !h.removed {
			continue
		}
		// Its handles see the same file: any one that can stat it gives its size. They are all
		// still open, since a handle leaves held (under mu) before it closes.
		for qf := range h.handles {
			if st, errno := qf.File.Stat(); errno == 0 {
				total += st.Size
				break
			}
		}
	}
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

// hold records qf as a handle of the file id.
func (q *dirQuota) hold(qf *quotaFile, id fileID) {
	q.mu.Lock()
	defer q.mu.Unlock()
	h := q.held[id]
	if h == nil {
		h = &heldFile{handles: map[*quotaFile]struct{}{}}
		q.held[id] = h
	}
	h.handles[qf] = struct{}{}
	qf.id, qf.held = id, true
}

// letGo forgets the handle qf, which is about to close. The last handle of a removed file gives
// the file's bytes back: its size now, which the writes through the handles have kept charged.
func (q *dirQuota) letGo(qf *quotaFile) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !qf.held {
		return // not a regular file, or closed before
	}
	qf.held = false
	h := q.held[qf.id]
	delete(h.handles, qf)
	if len(h.handles) > 0 {
		return
	}
	delete(q.held, qf.id)
	if h.removed {
		// Should the stat fail, the bytes stay charged until the next walk, which no longer
		// finds the file.
		if st, errno := qf.File.Stat(); errno == 0 {
			q.used = max(0, q.used-st.Size)
		}
	}
}

// removed gives back the bytes of a file whose last name was just removed, or, while handles
// still hold it, marks it so that its last handle gives them back.
func (q *dirQuota) removed(v victim) {
	if !v.ok {
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if h := q.held[v.id]; h != nil {
		h.removed = true
		return
	}
	q.used = max(0, q.used-v.size)
}

// quotaFS is a mount's file system with its directory's quota enforced.
type quotaFS struct {
	*mountFS
	q *dirQuota
}

// victim is a regular file that removing a name would free: its last name.
type victim struct {
	id   fileID
	size int64
	ok   bool // false: nothing to free (not a regular file, other links, or none)
}

// victimAt is the file at the resolved path r, as removing r would free it.
func (f *quotaFS) victimAt(r string) victim {
	st, errno := f.dir.Lstat(r)
	if errno != 0 || !fs.FileMode(st.Mode).IsRegular() || st.Nlink > 1 {
		return victim{}
	}
	return victim{id: statID(st), size: st.Size, ok: true}
}

// OpenFile opens through the mount and returns a quotaFile, for every mode: a read-only handle
// keeps a removed file's bytes charged as much as a writable one.
func (f *quotaFS) OpenFile(p string, flag experimentalsys.Oflag, perm fs.FileMode) (experimentalsys.File, experimentalsys.Errno) {
	var freed int64
	if flag&experimentalsys.O_TRUNC != 0 {
		if r, errno := f.resolve(p, flag&experimentalsys.O_NOFOLLOW == 0); errno == 0 {
			freed = f.victimAt(r).size
		}
	}
	file, errno := f.mountFS.OpenFile(p, flag, perm)
	if errno != 0 {
		return nil, errno
	}
	f.q.release(freed)
	// The handle's file, for hold: an fstat, so it names what was opened, not what the path
	// names by now.
	st, errno := file.Stat()
	if errno != 0 {
		// Untracked, a removed file's bytes would be given back while this handle holds them.
		_ = file.Close()
		return nil, errno
	}
	qf := &quotaFile{File: file, q: f.q, writable: flag&(experimentalsys.O_WRONLY|experimentalsys.O_RDWR) != 0}
	if fs.FileMode(st.Mode).IsRegular() {
		f.q.hold(qf, statID(st))
	}
	return qf, 0
}

func statID(st sys.Stat_t) fileID { return fileID{st.Dev, st.Ino} }

func (f *quotaFS) Unlink(p string) experimentalsys.Errno {
	var v victim
	if r, errno := f.resolve(p, false); errno == 0 {
		v = f.victimAt(r)
	}
	if errno := f.mountFS.Unlink(p); errno != 0 {
		return errno
	}
	f.q.removed(v)
	return 0
}

func (f *quotaFS) Rename(from, to string) experimentalsys.Errno {
	var v victim
	if r, errno := f.resolve(to, false); errno == 0 {
		v = f.victimAt(r)
	}
	if errno := f.mountFS.Rename(from, to); errno != 0 {
		return errno
	}
	f.q.removed(v)
	return 0
}

// quotaFile reserves the bytes a write or truncate adds to the file before doing it, and keeps
// the file held (dirQuota.held) while it is open.
type quotaFile struct {
	experimentalsys.File
	q        *dirQuota
	writable bool
	// Under q.mu: the file this handle holds, if held.
	id   fileID
	held bool
}

func (f *quotaFile) Close() experimentalsys.Errno {
	f.q.letGo(f)
	return f.File.Close()
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
	if !f.writable {
		return do() // fails: not open for writing
	}
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
	if !f.writable {
		return f.File.Truncate(size) // fails: not open for writing
	}
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
