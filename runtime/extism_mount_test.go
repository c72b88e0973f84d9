package runtime_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/wasmpod/wasmpod/runtime"
)

// TestExtismMounts: an Extism plugin's mounts are the native modules' file system, not Extism's
// AllowedPaths (wazero's plain directory mount): a symbolic link inside the mount that points
// out of it does not lead out, and an emptyDir sizeLimit holds. Through AllowedPaths, the plugin
// read a file outside its mount through the link and wrote 8 MiB into a 1 MiB directory.
func TestExtismMounts(t *testing.T) {
	root := t.TempDir()
	vol, outside := filepath.Join(root, "vol"), filepath.Join(root, "outside")
	for _, d := range []string{vol, outside} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(outside, "secret.txt"), []byte("host secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../outside", filepath.Join(vol, "up")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(vol, "in.txt"), []byte("inside"), 0o644); err != nil {
		t.Fatal(err)
	}
	const limit = 1 << 20
	e := newEngine(t, runtime.DefaultConfig())
	cfg := extismConfig("extism-mounts")
	cfg.Mounts = []runtime.Mount{{HostPath: vol, GuestPath: "/data", SizeLimit: limit}}
	m := started(t, e, extismGo(t), cfg)
	call := func(req string) (string, error) {
		out, err := m.Call(context.Background(), runtime.RoleHandle, []byte(req), nil)
		return string(out), err
	}

	if out, err := call("read:/data/in.txt"); err != nil || out != "inside" {
		t.Fatalf("reading a file of the mount: %q, %v", out, err)
	}
	if out, err := call("read:/data/up/secret.txt"); err == nil || strings.Contains(out, "secret") {
		t.Fatalf("a symbolic link led out of the mount: %q, %v", out, err)
	}
	var ge *runtime.GuestError
	if _, err := call("fill:/data/big:" + strconv.Itoa(8<<20)); !errors.As(err, &ge) {
		t.Fatalf("8 MiB into a 1 MiB directory: %v, want the plugin's write error", err)
	}
	if n := dirBytes(t, vol); n > limit {
		t.Fatalf("the directory holds %d bytes, over its %d limit", n, limit)
	}
	if out, err := call("fill:/data/small:4096"); err != nil && !errors.As(err, &ge) {
		t.Fatalf("a small write: %q, %v", out, err)
	}
}
