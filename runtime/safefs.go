package runtime

import (
	"io/fs"
	"path"
	"strings"

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
type mountFS struct {
	host string // host directory, for Readlink
	dir  experimentalsys.FS
}

// newMountFS returns the file system of a mount. sizeLimit, when positive, bounds the bytes the
// directory holds (shared by every writable mount of it; see dirQuota).
func newMountFS(hostDir string, readOnly bool, sizeLimit int64) experimentalsys.FS {
	m := &mountFS{host: hostDir, dir: sysfs.DirFS(hostDir)}
	if readOnly {
		return &sysfs.ReadFS{FS: m}
	}
	if sizeLimit > 0 {
		return &quotaFS{mountFS: m, q: quotaFor(hostDir, sizeLimit)}
	}
	return m
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
	return m.dir.OpenFile(r, flag, perm)
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
// follows symbolic links on the host, out of the mount.
func mountsFSConfig(mounts []Mount) wazero.FSConfig {
	fsc := wazero.NewFSConfig()
	for _, mt := range mounts {
		fsc = fsc.(sysfs.FSConfig).WithSysFSMount(newMountFS(mt.HostPath, mt.ReadOnly, mt.SizeLimit), mt.GuestPath)
	}
	return fsc
}
