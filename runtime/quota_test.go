package runtime_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/wasmpod/wasmpod/internal/wasmbuild"
	"github.com/wasmpod/wasmpod/runtime"
)

func dirBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// TestMountSizeLimit: a guest writing 96 MiB into a directory with a 1 MiB limit (an emptyDir
// sizeLimit: 1Mi) gets a write error once the directory is full; the host directory holds at
// most 1 MiB. The limit is the directory's: a second module mounting it shares it, and removing
// a file gives its bytes back. Before the limit, the guest wrote all 96 MiB.
func TestMountSizeLimit(t *testing.T) {
	vol := t.TempDir()
	const limit = 1 << 20
	e := newEngine(t, runtime.DefaultConfig())
	wasm := readFile(t, wasmbuild.Go(t, "testdata/fsprobe"))
	mk := func(name string) *runtime.Module {
		c := kitConfig(name)
		c.Mounts = []runtime.Mount{{HostPath: vol, GuestPath: "/data", SizeLimit: limit}}
		return started(t, e, wasm, c)
	}
	a, b := mk("filler-a"), mk("filler-b")
	call := func(m *runtime.Module, req string) (string, error) {
		out, err := m.Call(context.Background(), runtime.RoleHandle, []byte(req), nil)
		return string(out), err
	}

	_, err := call(a, "fill:/data/big:"+strconv.Itoa(96<<20))
	var ge *runtime.GuestError
	if !errors.As(err, &ge) || ge.Code != 5 || !strings.Contains(ge.Message, "after") {
		t.Fatalf("96 MiB into a 1 MiB directory: %v", err)
	}
	t.Logf("guest saw: %s", ge.Message)
	if n := dirBytes(t, vol); n > limit {
		t.Fatalf("the directory holds %d bytes, over its %d limit", n, limit)
	}
	// Shared: the other module finds it full too.
	if _, err := call(b, "fill:/data/more:"+strconv.Itoa(128<<10)); !errors.As(err, &ge) {
		t.Fatalf("second module wrote into a full directory: %v", err)
	}
	// Removing the big file frees its bytes: a 512 KiB file fits again.
	if _, err := call(a, "rm:/data/big"); err != nil {
		t.Fatal(err)
	}
	if out, err := call(b, "fill:/data/half:"+strconv.Itoa(512<<10)); err != nil || out != strconv.Itoa(512<<10) {
		t.Fatalf("after freeing: %q, %v", out, err)
	}
	if n := dirBytes(t, vol); n > limit {
		t.Fatalf("the directory holds %d bytes, over its %d limit", n, limit)
	}
}
