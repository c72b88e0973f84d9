//go:build !linux

package runtime

import (
	"io/fs"
	"time"
)

// lastUse is when a cache entry was last written (access times are not read here).
func lastUse(fi fs.FileInfo) time.Time { return fi.ModTime() }
