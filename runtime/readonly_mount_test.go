package runtime_test

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/wasmpod/wasmpod/internal/wasmbuild"
	"github.com/wasmpod/wasmpod/runtime"
)

// TestReadOnlyMountOpenFlags: path_open with read rights and O_TRUNC or O_CREAT on a read-only
// mount is refused with EROFS and changes nothing. wazero's read-only file system checked only
// the access mode, so O_TRUNC emptied the host's file and O_CREAT made a new one.
func TestReadOnlyMountOpenFlags(t *testing.T) {
	// Input: oflags (byte 0) and the name's first byte (byte 1, a one-byte name); output: errno.
	wasm := readFile(t, wasmbuild.WATString(t, `(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_close" (func $fd_close (param i32) (result i32)))
  (memory (export "memory") 2)
  (func (export "wasmpod_abi_version") (result i32) (i32.const 1))
  (func (export "wasmpod_buffer") (param i32) (result i32) (i32.const 1024))
  (func (export "wasmpod_handle") (param $n i32) (result i64)
    (local $errno i32)
    ;; fd 3 (the mount), follow symlinks, the name at 1025, 1 byte, oflags, rights FD_READ
    (local.set $errno (call $path_open (i32.const 3) (i32.const 1) (i32.const 1025) (i32.const 1)
      (i32.load8_u (i32.const 1024)) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 8)))
    (if (i32.eqz (local.get $errno)) (then (drop (call $fd_close (i32.load (i32.const 8))))))
    (i32.store (i32.const 2048) (local.get $errno))
    (i64.or (i64.shl (i64.const 4) (i64.const 32)) (i64.const 2048))))`))
	const (
		wasiEROFS   = 69
		oflagCreat  = 1
		oflagTrunc  = 8
		wantContent = "precious config"
	)
	for _, quota := range []int64{0, 1 << 20} {
		vol := t.TempDir()
		if err := os.WriteFile(filepath.Join(vol, "f"), []byte(wantContent), 0o644); err != nil {
			t.Fatal(err)
		}
		e := newEngine(t, runtime.DefaultConfig())
		cfg := runtime.DefaultModuleConfig("reader")
		cfg.Mounts = []runtime.Mount{{HostPath: vol, GuestPath: "/config", ReadOnly: true, SizeLimit: quota}}
		m := started(t, e, wasm, cfg)
		cases := []struct {
			name   string
			oflags byte
			file   byte
			want   uint32
		}{
			{"plain read", 0, 'f', 0},
			{"O_TRUNC", oflagTrunc, 'f', wasiEROFS},
			{"O_CREAT of a new file", oflagCreat, 'g', wasiEROFS},
			{"O_CREAT|O_TRUNC", oflagCreat | oflagTrunc, 'f', wasiEROFS},
		}
		for _, tc := range cases {
			out, err := m.Call(context.Background(), runtime.RoleHandle, []byte{tc.oflags, tc.file}, nil)
			if err != nil || len(out) != 4 {
				t.Fatalf("quota %d, %s: %x, %v", quota, tc.name, out, err)
			}
			if got := binary.LittleEndian.Uint32(out); got != tc.want {
				t.Errorf("quota %d, %s: errno %d, want %d", quota, tc.name, got, tc.want)
			}
		}
		if b, err := os.ReadFile(filepath.Join(vol, "f")); err != nil || string(b) != wantContent {
			t.Errorf("quota %d: the mounted file holds %q (%v), want %q", quota, b, err, wantContent)
		}
		if _, err := os.Stat(filepath.Join(vol, "g")); err == nil {
			t.Errorf("quota %d: the guest created a file in a read-only mount", quota)
		}
	}
}
