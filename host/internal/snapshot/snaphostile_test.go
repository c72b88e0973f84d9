//go:build unix

package snapshot

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestStoreLoadRefusesHostileFiles: whoever can put a file where a snapshot is read back must
// not be able to block the host or make it read without bound. Before, Load was os.ReadFile:
// a FIFO blocked it forever (and with it the module's start), a device such as /dev/zero was
// read until memory ran out, and an oversized file was read whole before its header was checked.
func TestStoreLoadRefusesHostileFiles(t *testing.T) {
	cases := []struct {
		name string
		make func(t *testing.T, path string)
		want string
	}{
		{"fifo", func(t *testing.T, path string) {
			if err := syscall.Mkfifo(path, 0o600); err != nil {
				t.Skipf("mkfifo: %v", err)
			}
		}, "not a regular file"},
		{"symlink to a device", func(t *testing.T, path string) {
			if err := os.Symlink("/dev/zero", path); err != nil {
				t.Skipf("symlink: %v", err)
			}
		}, "not a regular file"},
		{"sparse file over the size limit", func(t *testing.T, path string) {
			f, err := os.Create(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := f.Truncate(int64(fixedHeader+MaxNameLen+MaxStateBytes) + 1<<20); err != nil {
				t.Fatal(err)
			}
			f.Close()
		}, "too large"},
		{"directory", func(t *testing.T, path string) {
			if err := os.Mkdir(path, 0o700); err != nil {
				t.Fatal(err)
			}
		}, "not a regular file"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st, err := NewStore(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			c.make(t, st.Path("web"))
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			done := make(chan error, 1)
			go func() {
				_, err := st.Load("web")
				done <- err
			}()
			select {
			case err := <-done:
				runtime.ReadMemStats(&after)
				alloc := after.TotalAlloc - before.TotalAlloc
				if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), st.Path("web")) {
					t.Fatalf("Load: %v, want ErrCorrupt naming the file and %q", err, c.want)
				}
				if alloc > 16<<20 {
					t.Fatalf("refusing it allocated %d MiB", alloc>>20)
				}
				t.Log(err)
			case <-time.After(10 * time.Second):
				t.Fatal("Load still blocked after 10 s")
			}
		})
	}
}

// TestStoreLoadStillReadsSymlinkedSnapshot: a snapshot reached through a symlink to a regular
// file is read as before.
func TestStoreLoadStillReadsSymlinkedSnapshot(t *testing.T) {
	st, err := NewStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	b, err := Encode(Snapshot{Module: "web", State: []byte("7")})
	if err != nil {
		t.Fatal(err)
	}
	real := filepath.Join(t.TempDir(), "real.snap")
	if err := os.WriteFile(real, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(real, st.Path("web")); err != nil {
		t.Skip(err)
	}
	s, err := st.Load("web")
	if err != nil || string(s.State) != "7" {
		t.Fatalf("Load: %v %v", s, err)
	}
}
