//go:build unix

package regfile

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestRead(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "m.wasm")
	if err := os.WriteFile(file, []byte("0123456789"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.wasm")
	if err := os.Symlink(file, link); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo.wasm")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		path string
		max  int64
		want error // nil: the file's ten bytes
	}{
		{"regular file", file, 0, nil},
		{"within its limit", file, 10, nil},
		{"through a symbolic link", link, 0, nil},
		{"over its limit", file, 9, ErrTooLarge},
		{"a FIFO without a writer (a plain read blocks for good)", fifo, 0, ErrNotRegular},
		{"a directory", dir, 0, ErrNotRegular},
		{"a device read without end", "/dev/zero", 0, ErrNotRegular},
		{"missing", filepath.Join(dir, "none"), 0, os.ErrNotExist},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b, err := Read(c.path, c.max)
			if c.want == nil {
				if err != nil || string(b) != "0123456789" {
					t.Fatalf("got %q, %v", b, err)
				}
				return
			}
			if !errors.Is(err, c.want) {
				t.Fatalf("got %q, %v; want %v", b, err, c.want)
			}
			if c.want != os.ErrNotExist && !strings.Contains(err.Error(), c.path) {
				t.Fatalf("the error does not name the file: %v", err)
			}
		})
	}
}
