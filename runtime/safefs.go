package runtime

import (
	"io/fs"
	"math"
	"os"
	"path"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/tetratelabs/wazero"
	experimentalsys "github.com/tetratelabs/wazero/experimental/sys"
	"github.com/tetratelabs/wazero/experimental/sysfs"
	"github.com/tetratelabs/wazero/sys"
)

// maxSymlinkHops bounds symlink resolution, like the kernel's ELOOP limit.
const maxSymlinkHops = 40

// mountFS is the file system a guest sees for one mount. It resolves every path itself, one
// component at a time and below the mount's root, so neither ".." nor a symbolic link (one
// already in the host directory, pointing outside it) can reach anything outside the mount.
// The underlying directory file system only ever sees paths without symbolic links.
//
// Guests cannot create symbolic links (Symlink fails with EPERM): resolution happens before the
// open, so a link created between the two by another guest sharing the volume could otherwise
// race it. Host-made links inside the mount work as long as they stay inside it.
//
// Every file it opens takes a slot of the instance's openFiles, given back when the file closes
// (but for the mount's root, see OpenFile).
type mountFS struct {
	host  string // host directory, for Readlink
	dir   experimentalsys.FS
	files *openFiles
	// rootOpen is set while the open of the root outside the instance's cap is held.
	rootOpen atomic.Bool
}

// newInstanceMountFS returns the file system of a mount of one instance: every mount of the
// instance given the same files shares its cap on open files. sizeLimit, when positive, bounds
// the bytes the directory holds (shared by every mount of it; see dirQuota).
func newInstanceMountFS(hostDir string, readOnly bool, sizeLimit int64, files *openFiles) experimentalsys.FS {
	m := &mountFS{host: hostDir, dir: sysfs.DirFS(hostDir), files: files}
	switch {
	case readOnly && sizeLimit > 0:
		// Read-only, yet through the quota: the handles it opens keep the bytes of a file that a
		// writable mount of the directory unlinks charged (see quotaFS.Unlink), so a reader
		// cannot hold on to what the writer frees.
		return &readOnlyFS{sysfs.ReadFS{FS: &quotaFS{mountFS: m, q: quotaFor(hostDir, sizeLimit)}}}
	case readOnly:
		return &readOnlyFS{sysfs.ReadFS{FS: m}}
	case sizeLimit > 0:
		return &quotaFS{mountFS: m, q: quotaFor(hostDir, sizeLimit)}
	}
	return m
}

// readOnlyFS is a read-only mount: wazero's ReadFS, which refuses write access modes but lets
// O_TRUNC and O_CREAT through with read access, and the host's open(2) carries them out: a guest
// emptied a file of a read-only mount with path_open(O_TRUNC) and read rights, and could create
// empty files in it. Both are refused here with EROFS (TestReadOnlyMountOpenFlags).
type readOnlyFS struct{ sysfs.ReadFS }

func (r *readOnlyFS) OpenFile(p string, flag experimentalsys.Oflag, perm fs.FileMode) (experimentalsys.File, experimentalsys.Errno) {
	if flag&(experimentalsys.O_TRUNC|experimentalsys.O_CREAT) != 0 {
		return nil, experimentalsys.EROFS
	}
	return r.ReadFS.OpenFile(p, flag, perm)
}

// maxInstanceFiles caps the files (directories included, the mounts' roots not: see
// mountFS.OpenFile) one instance holds open through its mounts at once; path_open past it fails
// (errTooManyFiles, standing for EMFILE). wazero's descriptor table has no bound and each open
// holds a host descriptor until the guest closes it or the instance is closed, so without a cap
// a guest that opened without closing used up the whole process's RLIMIT_NOFILE within a few
// calls, and the host could accept no connection and open no file. 256 is macOS's default soft
// limit, which portable programs already live within, and four times the 64 network handles an
// instance may hold; it is far more than a handler needs, and small enough that an instance at
// its cap takes a small part of the process's budget (hostFiles).
const maxInstanceFiles = 256

// hostFilesShare is the share of the process's soft RLIMIT_NOFILE that the guests' files may
// take together (hostFiles): half. The other half stays for what the host holds whatever its
// guests do: listeners and client connections, the guests' network handles, the cluster's logs
// and stores, the compilation cache, commands' run directories.
const hostFilesShare = 2

// fallbackNoFile is the soft limit assumed where it cannot be read (no /proc/self/limits: not
// Linux): 1024, the usual starting soft limit, so that the budget errs on the small side.
const fallbackNoFile = 1024

// errTooManyFiles is what an open past the instance's cap (EMFILE) or the process's budget
// (ENFILE) returns: EAGAIN, "resource unavailable, try again". wazero's WASI layer maps only the
// errnos of experimental/sys, which has neither EMFILE nor ENFILE, and gives the guest EIO for
// any other value; EIO is already a full volume's (errNoSpace) and says nothing of a limit. The
// open works again once the guest closes files.
const errTooManyFiles = experimentalsys.EAGAIN

// fileBudget bounds the files all instances in the process hold open through their mounts.
type fileBudget struct {
	limit int64
	used  atomic.Int64
}

// hostFiles is the process's budget, a share of the soft limit as it is when the package is
// initialised (the os package has raised it to the hard limit by then). An atomic pointer only
// so that tests can give instances a budget of their own.
var hostFiles atomic.Pointer[fileBudget]

func init() { hostFiles.Store(&fileBudget{limit: softNoFile() / hostFilesShare}) }

// softNoFile reads the process's soft RLIMIT_NOFILE from /proc/self/limits (a file, unlike
// getrlimit, that the package can read on every platform it builds for).
func softNoFile() int64 {
	b, err := os.ReadFile("/proc/self/limits")
	if err != nil {
		return fallbackNoFile
	}
	for _, line := range strings.Split(string(b), "\n") {
		rest, ok := strings.CutPrefix(line, "Max open files")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			break
		}
		if f[0] == "unlimited" {
			return math.MaxInt64
		}
		if n, err := strconv.ParseInt(f[0], 10, 64); err == nil && n > 0 {
			return n
		}
		break
	}
	return fallbackNoFile
}

func (b *fileBudget) take() bool { return takeBelow(&b.used, b.limit) }

func (b *fileBudget) give() { b.used.Add(-1) }

// takeBelow adds one to n unless that would pass limit. Compare-and-swap rather than add and
// undo: an add that is undone could refuse a concurrent taker while the count was briefly over.
func takeBelow(n *atomic.Int64, limit int64) bool {
	for {
		v := n.Load()
		if v >= limit {
			return false
		}
		if n.CompareAndSwap(v, v+1) {
			return true
		}
	}
}

// openFiles counts the files one instance holds open through its mounts, against
// maxInstanceFiles and the process's budget.
type openFiles struct {
	n    atomic.Int64
	host *fileBudget
}

func newOpenFiles() *openFiles { return &openFiles{host: hostFiles.Load()} }

// take claims a slot for an open: one of the instance's and one of the process's.
func (o *openFiles) take() experimentalsys.Errno {
	if !takeBelow(&o.n, maxInstanceFiles) {
		return errTooManyFiles
	}
	if !o.host.take() {
		o.n.Add(-1)
		return errTooManyFiles
	}
	return 0
}

func (o *openFiles) give() {
	o.n.Add(-1)
	o.host.give()
}

// countedFile gives its open's slot back when it is closed. wazero closes every file still in
// an instance's descriptor table when the instance is closed (its FSContext.Close), so a guest
// that never closes its files gives the slots back with its instance.
type countedFile struct {
	experimentalsys.File
	release func()
	closed  atomic.Bool
}

func (f *countedFile) Close() experimentalsys.Errno {
	errno := f.File.Close()
	// Given back on the first Close even if it failed: close(2) frees the descriptor whatever it
	// reports, and wazero, which keeps a file whose Close failed in its table, closes it again
	// when the instance closes.
	if f.closed.CompareAndSwap(false, true) {
		f.release()
	}
	return errno
}

// resolve turns a guest path (relative to the mount) into one without symbolic links, all of
// whose components lie below the mount's root. With followLast false a final symbolic link is
// left unresolved (for lstat, readlink, unlink, rename).
func (m *mountFS) resolve(p string, followLast bool) (string, experimentalsys.Errno) {
	pending := splitPath(p)
	var done []string
	hops := 0
	for len(pending) > 0 {
		c := pending[0]
		pending = pending[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(done) == 0 {
				return "", experimentalsys.EPERM // above the mount's root
			}
			done = done[:len(done)-1]
			continue
		}
		cur := strings.Join(append(done, c), "/")
		if len(pending) == 0 && !followLast {
			done = append(done, c)
			break
		}
		st, errno := m.dir.Lstat(cur)
		if errno == experimentalsys.ENOENT {
			// Nothing there (yet): the rest cannot be a link, resolve it lexically.
			done = append(done, c)
			continue
		}
		if errno != 0 {
			return "", errno
		}
		if st.Mode&fs.ModeSymlink == 0 {
			done = append(done, c)
			continue
		}
		hops++
		if hops > maxSymlinkHops {
			return "", experimentalsys.ELOOP
		}
		target, errno := m.dir.Readlink(cur)
		if errno != 0 {
			return "", errno
		}
		if path.IsAbs(target) {
			// An absolute target names a host path; it is only reachable if it lies in the mount.
			rel, ok := strings.CutPrefix(path.Clean(target), path.Clean(m.host)+"/")
			if !ok {
				return "", experimentalsys.EPERM
			}
			done = done[:0]
			pending = append(splitPath(rel), pending...)
			continue
		}
		pending = append(splitPath(target), pending...)
	}
	return strings.Join(done, "/"), 0
}

func splitPath(p string) []string { return strings.Split(strings.TrimPrefix(p, "/"), "/") }

func (m *mountFS) OpenFile(p string, flag experimentalsys.Oflag, perm fs.FileMode) (experimentalsys.File, experimentalsys.Errno) {
	r, errno := m.resolve(p, flag&experimentalsys.O_NOFOLLOW == 0)
	if errno != 0 {
		return nil, errno
	}
	release := m.files.give
	if r == "" && flag == experimentalsys.O_RDONLY && m.rootOpen.CompareAndSwap(false, true) {
		// The mount's root, read-only, once at a time: outside the instance's cap, and counted
		// by the process's budget even past it. wazero opens a preopened directory lazily, with
		// exactly this call, on the guest's first use of the mount (every path_open goes through
		// it), keeps it until the instance closes, and panics if the open fails. It is a fixed
		// cost of the mount, like stdout: the guest keeps its whole cap, and an instance whose
		// process budget other instances spent gets errnos rather than a failed call.
		m.files.host.used.Add(1)
		release = func() {
			m.files.host.give()
			m.rootOpen.Store(false)
		}
	} else if errno := m.files.take(); errno != 0 {
		return nil, errno
	}
	f, errno := m.dir.OpenFile(r, flag, perm)
	if errno != 0 {
		release()
		return nil, errno
	}
	return &countedFile{File: f, release: release}, 0
}

func (m *mountFS) Lstat(p string) (sys.Stat_t, experimentalsys.Errno) {
	r, errno := m.resolve(p, false)
	if errno != 0 {
		return sys.Stat_t{}, errno
	}
	return m.dir.Lstat(r)
}

func (m *mountFS) Stat(p string) (sys.Stat_t, experimentalsys.Errno) {
	r, errno := m.resolve(p, true)
	if errno != 0 {
		return sys.Stat_t{}, errno
	}
	return m.dir.Stat(r)
}

func (m *mountFS) Mkdir(p string, perm fs.FileMode) experimentalsys.Errno {
	r, errno := m.resolve(p, false)
	if errno != 0 {
		return errno
	}
	return m.dir.Mkdir(r, perm)
}

func (m *mountFS) Chmod(p string, perm fs.FileMode) experimentalsys.Errno {
	r, errno := m.resolve(p, true)
	if errno != 0 {
		return errno
	}
	return m.dir.Chmod(r, perm)
}

func (m *mountFS) Rename(from, to string) experimentalsys.Errno {
	rf, errno := m.resolve(from, false)
	if errno != 0 {
		return errno
	}
	rt, errno := m.resolve(to, false)
	if errno != 0 {
		return errno
	}
	return m.dir.Rename(rf, rt)
}

func (m *mountFS) Rmdir(p string) experimentalsys.Errno {
	r, errno := m.resolve(p, false)
	if errno != 0 {
		return errno
	}
	return m.dir.Rmdir(r)
}

func (m *mountFS) Unlink(p string) experimentalsys.Errno {
	r, errno := m.resolve(p, false)
	if errno != 0 {
		return errno
	}
	return m.dir.Unlink(r)
}

func (m *mountFS) Link(oldPath, newPath string) experimentalsys.Errno {
	ro, errno := m.resolve(oldPath, true)
	if errno != 0 {
		return errno
	}
	rn, errno := m.resolve(newPath, false)
	if errno != 0 {
		return errno
	}
	return m.dir.Link(ro, rn)
}

// Symlink is refused: see mountFS.
func (m *mountFS) Symlink(string, string) experimentalsys.Errno { return experimentalsys.EPERM }

func (m *mountFS) Readlink(p string) (string, experimentalsys.Errno) {
	r, errno := m.resolve(p, false)
	if errno != 0 {
		return "", errno
	}
	return m.dir.Readlink(r)
}

func (m *mountFS) Utimens(p string, atim, mtim int64) experimentalsys.Errno {
	r, errno := m.resolve(p, true)
	if errno != 0 {
		return errno
	}
	return m.dir.Utimens(r, atim, mtim)
}

// mountsFSConfig is the file system of a module's instances, native or Extism: every mount
// through mountFS (and its sizeLimit quota), not WithDirMount, whose plain directory mount
// follows symbolic links on the host, out of the mount. It is built for each instance, whose
// mounts share one cap on its open files.
func mountsFSConfig(mounts []Mount) wazero.FSConfig {
	fsc := wazero.NewFSConfig()
	files := newOpenFiles()
	for _, mt := range mounts {
		fsc = fsc.(sysfs.FSConfig).WithSysFSMount(newInstanceMountFS(mt.HostPath, mt.ReadOnly, mt.SizeLimit, files), mt.GuestPath)
	}
	return fsc
}
