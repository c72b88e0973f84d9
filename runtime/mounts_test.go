package runtime_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/wasmpod/wasmpod/internal/wasmbuild"
	"github.com/wasmpod/wasmpod/runtime"
)

func TestMountsConfineTheGuest(t *testing.T) {
	base := t.TempDir()
	vol := filepath.Join(base, "vol")
	outside := filepath.Join(base, "outside")
	for _, d := range []string{vol, outside, filepath.Join(vol, "sub")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(vol, "a.txt"), []byte("hello"), 0o644))
	must(os.WriteFile(filepath.Join(vol, "sub", "x"), []byte("inner"), 0o644))
	must(os.WriteFile(filepath.Join(outside, "secret.txt"), []byte("secret"), 0o644))
	must(os.Symlink("/etc", filepath.Join(vol, "esc")))                         // absolute, outside
	must(os.Symlink("../outside", filepath.Join(vol, "up")))                    // relative, outside
	must(os.Symlink("sub", filepath.Join(vol, "inner")))                        // relative, inside
	must(os.Symlink(filepath.Join(vol, "a.txt"), filepath.Join(vol, "abs-in"))) // absolute, inside
	must(os.Symlink("sub/../../outside/secret.txt", filepath.Join(vol, "sneaky")))

	e := newEngine(t, runtime.DefaultConfig())
	wasm := readFile(t, wasmbuild.Go(t, "testdata/fsprobe"))
	rw := kitConfig("writer")
	rw.Mounts = []runtime.Mount{{HostPath: vol, GuestPath: "/data"}}
	ro := kitConfig("reader")
	ro.Mounts = []runtime.Mount{{HostPath: vol, GuestPath: "/data", ReadOnly: true}}
	writer := started(t, e, wasm, rw)
	reader := started(t, e, wasm, ro)

	cases := []struct {
		name string
		m    *runtime.Module
		req  string
		want string // "" with ok=false: must fail
		ok   bool
	}{
		{"read a file", reader, "read:/data/a.txt", "hello", true},
		{"link inside the mount", reader, "read:/data/inner/x", "inner", true},
		{"absolute link inside the mount", reader, "read:/data/abs-in", "hello", true},
		{"dot-dot out of the mount", reader, "read:/data/../outside/secret.txt", "", false},
		{"relative link out of the mount", reader, "read:/data/up/secret.txt", "", false},
		{"absolute link out of the mount", reader, "read:/data/esc/hostname", "", false},
		{"link whose target climbs out", reader, "read:/data/sneaky", "", false},
		{"outside every mount", reader, "read:/etc/hostname", "", false},
		{"write to a read-only mount", reader, "write:/data/new.txt:x", "", false},
		{"create a symlink", writer, "symlink:/etc:/data/mine", "", false},
		{"write to a read-write mount", writer, "write:/data/shared.txt:from writer", "", true},
		{"the other module sees it", reader, "read:/data/shared.txt", "from writer", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := tc.m.Call(context.Background(), runtime.RoleHandle, []byte(tc.req), nil)
			if tc.ok {
				if err != nil || string(out) != tc.want {
					t.Fatalf("%q: got %q, %v; want %q", tc.req, out, err, tc.want)
				}
				return
			}
			var ge *runtime.GuestError
			if !errors.As(err, &ge) || ge.Code != 5 {
				t.Fatalf("%q: want a refused file operation, got %q, %v", tc.req, out, err)
			}
		})
	}
	if b, err := os.ReadFile(filepath.Join(vol, "shared.txt")); err != nil || string(b) != "from writer" {
		t.Fatalf("host side of the shared volume: %q %v", b, err)
	}
	if _, err := os.Lstat(filepath.Join(vol, "mine")); !os.IsNotExist(err) {
		t.Fatalf("the guest created a symlink: %v", err)
	}
}
