package runtime_test

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/internal/wasmbuild"
	"github.com/wasmpod/wasmpod/runtime"
)

// removedOpenBytes is what files removed from dir but still open in this process hold on the
// disk: the walk of dirBytes cannot see them.
func removedOpenBytes(t *testing.T, dir string) int64 {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	var n int64
	for _, e := range ents {
		p := filepath.Join("/proc/self/fd", e.Name())
		target, err := os.Readlink(p)
		if err != nil || !strings.HasPrefix(target, dir+"/") || !strings.HasSuffix(target, " (deleted)") {
			continue
		}
		if fi, err := os.Stat(p); err == nil {
			n += fi.Size()
		}
	}
	return n
}

// TestQuotaUnlinkedStillOpen: a guest (testdata/hostile/files_unlinked.wat) that, 64 times,
// writes 1 MiB to "x" and removes the name while keeping the descriptor gets the quota's write
// error (EIO) once 4 MiB are held, also after the quota walks the directory again, and the disk
// holds no more than the 4 MiB limit. When the descriptors close (by fd_close, or with the
// instance) the space can be filled again. Before, removing the name gave the bytes back while
// the descriptor kept them on the disk: the guest wrote all 64 MiB.
func TestQuotaUnlinkedStillOpen(t *testing.T) {
	const (
		limit   = 4 << 20
		wasiEIO = 29 // errNoSpace as the guest sees it
	)
	e := newEngine(t, runtime.DefaultConfig())
	wasm := readFile(t, wasmbuild.WAT(t, "testdata/hostile/files_unlinked.wat"))
	cases := []struct {
		name       string
		mode       byte // 0: unlink "x"; 1: rename "t" over "x"
		byInstance bool // the descriptors close with the instance, not by fd_close
	}{
		{"unlinked, closed by fd_close", 0, false},
		{"renamed over, closed with the instance", 1, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			vol := t.TempDir()
			load := func(name string) *runtime.Module {
				cfg := runtime.DefaultModuleConfig(name)
				cfg.MinInstances, cfg.MaxConcurrency = 1, 1 // every call on the same instance
				cfg.Mounts = []runtime.Mount{{HostPath: vol, GuestPath: "/data", SizeLimit: limit}}
				return started(t, e, wasm, cfg)
			}
			call := func(m *runtime.Module, in ...byte) (done, errno int) {
				t.Helper()
				out, err := m.Call(context.Background(), runtime.RoleHandle, in, nil)
				if err != nil || len(out) != 8 {
					t.Fatalf("%v: %x, %v", in, out, err)
				}
				return int(binary.LittleEndian.Uint32(out)), int(binary.LittleEndian.Uint32(out[4:]))
			}
			// fill runs the attack and wants want files written before the quota's EIO.
			fill := func(m *runtime.Module, want int) {
				t.Helper()
				done, errno := call(m, 0, 64, tc.mode)
				if done != want || errno != wasiEIO {
					t.Fatalf("wrote and removed %d files of 1 MiB into a %d MiB volume, then errno %d; want %d, then EIO (%d)",
						done, limit>>20, errno, want, wasiEIO)
				}
				held := removedOpenBytes(t, vol)
				if n := dirBytes(t, vol) + held; n > limit || held != limit {
					t.Fatalf("the disk holds %d bytes for the volume (%d of them removed but open); want %d, all removed",
						n, held, limit)
				}
			}

			m := load("unlinker")
			fill(m, limit>>20)
			// The walk that corrects the figure (a write that does not fit walks the directory
			// again once a second has passed) cannot see the removed files: it must not forget
			// them.
			time.Sleep(1100 * time.Millisecond)
			fill(m, 0)
			if tc.byInstance {
				m.Close(context.Background())
				m = load("unlinker-again")
			} else if done, errno := call(m, 1); done != limit>>20+2 || errno != 0 {
				// Each fill also kept the descriptor of the "x" whose write failed.
				t.Fatalf("closed %d descriptors (errno %d), want %d", done, errno, limit>>20+2)
			}
			if n := removedOpenBytes(t, vol); n != 0 {
				t.Fatalf("%d bytes still held after the descriptors closed", n)
			}
			// The space is usable again: the same 4 MiB fit, and no more.
			fill(m, limit>>20)
		})
	}
}
