// Command cmdguest is a plain WASI command (built without the wasmpod SDK) for the runtime's
// command tests. It is called as `cmdguest IN OUT` and behaves according to IN's base name:
//
//	loop.txt    spins forever (the host must cut it at its deadline)
//	exit3.txt   writes to stderr and exits with code 3
//	escape.txt  tries to reach files outside IN and writes one line per attempt to OUT
//	anything    writes IN upper-cased to OUT
package main

import (
	"bytes"
	"fmt"
	"os"
	"path"
	"strings"
	"unsafe"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintf(os.Stderr, "usage: %s IN OUT (got %q)\n", os.Args[0], os.Args)
		os.Exit(2)
	}
	in, out := os.Args[1], os.Args[2]
	switch path.Base(in) {
	case "loop.txt":
		n := 0
		for {
			n++
		}
	case "exit3.txt":
		fmt.Fprintln(os.Stderr, "cmdguest: giving up on", in)
		os.Exit(3)
	case "escape.txt":
		var report strings.Builder
		try := func(what string, err error) {
			if err == nil {
				fmt.Fprintf(&report, "%s: ALLOWED\n", what)
			} else {
				fmt.Fprintf(&report, "%s: denied (%v)\n", what, err)
			}
		}
		_, err := os.ReadFile("/etc/hostname")
		try("read /etc/hostname", err)
		_, err = os.ReadFile("/in/../secret")
		try("read /in/../secret", err)
		_, err = os.ReadFile("/in/secret")
		try("read /in/secret", err)
		err = os.WriteFile(in, []byte("overwritten"), 0o644)
		try("write the input", err)
		err = os.WriteFile("/in/new", []byte("x"), 0o644)
		try("create in /in", err)
		// Go's os package cleans paths before WASI sees them; path_open with a raw ".." on
		// every preopened directory tests the host's own confinement.
		for fd := int32(3); fd <= 4; fd++ {
			for _, p := range []string{"..", "../secret", "../in", "../../etc/hostname"} {
				try(fmt.Sprintf("path_open(fd %d, %q)", fd, p), rawOpen(fd, p))
			}
		}
		if err := os.WriteFile(out, []byte(report.String()), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	default:
		b, err := os.ReadFile(in)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Printf("cmdguest: %d bytes\n", len(b))
		if err := os.WriteFile(out, bytes.ToUpper(b), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
}

type errno uint16

func (e errno) Error() string { return fmt.Sprintf("errno %d", uint16(e)) }

//go:wasmimport wasi_snapshot_preview1 path_open
func pathOpen(fd int32, dirflags uint32, path unsafe.Pointer, pathLen uint32, oflags uint32, rightsBase, rightsInheriting uint64, fdflags uint32, result unsafe.Pointer) uint32

//go:wasmimport wasi_snapshot_preview1 fd_close
func fdClose(fd int32) uint32

// rawOpen opens p relative to the directory fd with a direct WASI call.
func rawOpen(fd int32, p string) error {
	b := []byte(p)
	var opened int32
	const rightsRead = 1<<1 | 1<<14 // fd_read, path_open
	if e := pathOpen(fd, 1, unsafe.Pointer(&b[0]), uint32(len(b)), 0, rightsRead, rightsRead, 0, unsafe.Pointer(&opened)); e != 0 {
		return errno(e)
	}
	fdClose(opened)
	return nil
}
