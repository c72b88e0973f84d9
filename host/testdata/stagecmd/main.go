// Command stagecmd is the host's test guest for work-queue stages that are plain WASI commands
// (no wasmpod SDK). It is called as `stagecmd /in/NAME... /out/OUTPUT` and behaves according to
// the base name of its first input:
//
//	none.txt  succeeds without writing anything
//	two.txt   writes two files, /out/a.txt and /out/sub/b.txt
//	fail.txt  writes to stderr and exits with code 3
//	loop.txt  spins forever (the host must cut it at its deadline)
//	moved.txt writes its first input upper-cased to /out/moved/NAME.out, not to OUTPUT
//	escape.txt tries to read outside its input and writes one "PATH: denied" or "PATH: READ"
//	          line per attempt to OUTPUT
//	anything  writes every input upper-cased, in argv order and each after a "NAME: " line
//	          prefix, to OUTPUT
package main

import (
	"bytes"
	"fmt"
	"os"
	"path"
	"strings"
)

func main() {
	if len(os.Args) < 3 {
		fail(2, fmt.Sprintf("usage: %s IN... OUT (got %q)", os.Args[0], os.Args))
	}
	ins, out := os.Args[1:len(os.Args)-1], os.Args[len(os.Args)-1]
	switch path.Base(ins[0]) {
	case "none.txt":
		return
	case "two.txt":
		write("/out/a.txt", []byte("a"))
		write("/out/sub/b.txt", []byte("b"))
	case "fail.txt":
		fail(3, "stagecmd: failing on purpose")
	case "loop.txt":
		n := 0
		for {
			n++
		}
	case "escape.txt":
		var report []byte
		for _, p := range []string{"/etc/passwd", "/in/../etc/passwd", "/in/../../etc/hostname", "/out/../etc/passwd", "/proc/self/environ", "/.."} {
			if _, err := os.ReadFile(p); err == nil {
				report = append(report, p+": READ\n"...)
			} else {
				report = append(report, p+": denied\n"...)
			}
		}
		if ents, err := os.ReadDir("/"); err == nil && len(ents) > 0 {
			report = append(report, fmt.Sprintf("/: LISTED %d\n", len(ents))...)
		} else {
			report = append(report, "/: denied\n"...)
		}
		write(out, report)
	case "moved.txt":
		b := read(ins[0])
		write("/out/moved/"+path.Base(ins[0])+".out", bytes.ToUpper(b))
	default:
		var all []byte
		for _, in := range ins {
			all = append(all, strings.TrimPrefix(in, "/in/")+": "...)
			all = append(all, bytes.ToUpper(read(in))...)
		}
		write(out, all)
	}
}

func read(name string) []byte {
	b, err := os.ReadFile(name)
	if err != nil {
		fail(1, err.Error())
	}
	return b
}

func write(name string, b []byte) {
	if err := os.MkdirAll(path.Dir(name), 0o755); err != nil {
		fail(1, err.Error())
	}
	if err := os.WriteFile(name, b, 0o644); err != nil {
		fail(1, err.Error())
	}
}

func fail(code int, msg string) {
	fmt.Fprintln(os.Stderr, msg)
	os.Exit(code)
}
