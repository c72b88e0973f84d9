package runtime

import (
	"io/fs"
	"syscall"
	"time"
)

// lastUse is when a cache entry was last written or read: its access time, which Linux's
// default relatime updates at the first read after a write and then at most once a day (enough
// to tell entries in use from ones no module needs any more), or its modification time when
// later (a mount with noatime).
func lastUse(fi fs.FileInfo) time.Time {
	t := fi.ModTime()
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		if a := time.Unix(st.Atim.Sec, st.Atim.Nsec); a.After(t) {
			return a
		}
	}
	return t
}
