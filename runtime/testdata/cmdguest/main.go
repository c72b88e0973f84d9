// Command cmdguest is a plain WASI command (built without the wasmpod SDK) for the runtime's
// command tests. It is called as `cmdguest IN... OUT` (one or more inputs) and behaves
// according to OUT's base name (which Run makes the base name of its single input):
//
//	loop.txt    spins forever (the host must cut it at its deadline)
//	exit3.txt   writes to stderr and exits with code 3
//	escape.txt  tries to reach files outside the first IN and writes one line per attempt to OUT
//	list.txt    writes its argv and a recursive listing of /in and /out to OUT
//	cat.txt     writes every IN, in argv order, to OUT
//	probe.txt   tries to change every IN and /in, and to read each path listed in the first IN
//	            (one a line; "raw:P" opens P relative to the /in preopen, fd 3, with a direct
//	            WASI call), and writes one line per attempt to OUT
//	split.txt   writes every IN upper-cased to the same relative path below /out, and "done" to OUT
//	rand.txt    writes 16 bytes of crypto/rand, a math/rand/v2 number, the order of a map's
//	            iteration and the wall clock to OUT (each differs between runs)
//	anything    writes the first IN upper-cased to OUT
package main

import (
	"bytes"
	crand "crypto/rand"
	"fmt"
	"io/fs"
	mrand "math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"
	"unsafe"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintf(os.Stderr, "usage: %s IN... OUT (got %q)\n", os.Args[0], os.Args)
		os.Exit(2)
	}
	ins, out := os.Args[1:len(os.Args)-1], os.Args[len(os.Args)-1]
	in := ins[0]
	var report strings.Builder
	try := func(what string, err error) {
		if err == nil {
			fmt.Fprintf(&report, "%s: ALLOWED\n", what)
		} else {
			fmt.Fprintf(&report, "%s: denied (%v)\n", what, err)
		}
	}
	switch path.Base(out) {
	case "loop.txt":
		n := 0
		for {
			n++
		}
	case "exit3.txt":
		fmt.Fprintln(os.Stderr, "cmdguest: giving up on", in)
		os.Exit(3)
	case "escape.txt":
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
		write(out, []byte(report.String()))
	case "list.txt":
		fmt.Fprintf(&report, "argv: %s\n", strings.Join(os.Args, " "))
		for _, root := range []string{"/in", "/out"} {
			err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
				if err != nil {
					return err
				}
				if d.IsDir() {
					fmt.Fprintf(&report, "%s/\n", p)
					return nil
				}
				info, err := d.Info()
				if err != nil {
					return err
				}
				fmt.Fprintf(&report, "%s %d\n", p, info.Size())
				return nil
			})
			check(err)
		}
		write(out, []byte(report.String()))
	case "cat.txt":
		var all []byte
		for _, in := range ins {
			b, err := os.ReadFile(in)
			check(err)
			all = append(all, b...)
		}
		write(out, all)
	case "probe.txt":
		for _, in := range ins {
			try("truncate "+in, os.WriteFile(in, []byte("overwritten"), 0o644))
			f, err := os.OpenFile(in, os.O_WRONLY|os.O_APPEND, 0)
			if err == nil {
				_, err = f.Write([]byte("appended"))
				f.Close()
			}
			try("append to "+in, err)
			try("truncate(2) "+in, os.Truncate(in, 0))
			if f, err := os.Open(in); err != nil {
				fmt.Fprintf(&report, "open %s: FAILED (%v)\n", in, err) // reading must work
			} else {
				_, err := f.Write([]byte("x"))
				try("write through a read-only open of "+in, err)
				try("truncate through a read-only open of "+in, f.Truncate(0))
				f.Close()
			}
			try("create beside "+in, os.WriteFile(path.Join(path.Dir(in), "new"), []byte("x"), 0o644))
			try("mkdir beside "+in, os.Mkdir(path.Join(path.Dir(in), "newdir"), 0o755))
			try("rename "+in, os.Rename(in, in+".moved"))
			try("rename "+in+" to /out", os.Rename(in, "/out/stolen"))
			try("link "+in, os.Link(in, in+".link"))
			try("symlink beside "+in, os.Symlink("/etc/hostname", in+".sym"))
			try("remove "+in, os.Remove(in))
			if d := path.Dir(in); d != "/in" {
				try("remove dir "+d, os.RemoveAll(d))
			}
		}
		b, err := os.ReadFile(in)
		check(err)
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			if l = strings.TrimSpace(l); l == "" {
				continue
			}
			if p, ok := strings.CutPrefix(l, "raw:"); ok {
				try(fmt.Sprintf("path_open(fd 3, %q)", p), rawOpen(3, p))
				continue
			}
			_, err := os.ReadFile(l)
			try("read "+l, err)
		}
		write(out, []byte(report.String()))
	case "split.txt":
		for _, in := range ins {
			b, err := os.ReadFile(in)
			check(err)
			rel := strings.TrimPrefix(in, "/in/")
			check(os.MkdirAll(path.Dir(path.Join("/out", rel)), 0o755))
			write(path.Join("/out", rel), bytes.ToUpper(b))
		}
		write(out, []byte("done"))
	case "rand.txt":
		var b [16]byte
		_, err := crand.Read(b[:])
		check(err)
		m := map[int]bool{}
		for i := range 64 {
			m[i] = true
		}
		var order []int
		for k := range m {
			order = append(order, k)
		}
		write(out, fmt.Appendf(nil, "%x %d %v %d\n", b, mrand.Uint64(), order[:8], time.Now().UnixNano()))
	default:
		b, err := os.ReadFile(in)
		check(err)
		fmt.Printf("cmdguest: %d bytes\n", len(b))
		write(out, bytes.ToUpper(b))
	}
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func write(name string, b []byte) { check(os.WriteFile(name, b, 0o644)) }

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
