// Command fsprobe is a test guest that touches the file system as its handler is told, so the
// runtime's tests can check what a mount lets a guest reach. Commands (the whole request):
//
//	read:<path>            returns the file's contents
//	write:<path>:<data>    creates or truncates the file and writes data
//	append:<path>:<data>   appends data
//	symlink:<old>:<new>    creates a symbolic link
//	rm:<path>              removes a file
//	list:<dir>             returns the names in dir, one per line
//	fill:<path>:<n>        writes n bytes to a new file in 64 KiB writes; returns how many were
//	                       written before the first failure (error code 5 names it)
//
// Failures return error code 5 with the Go error as message.
package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	wasmpod "github.com/wasmpod/wasmpod/guest-sdk/go"
	"github.com/wasmpod/wasmpod/guest-sdk/go/handler"
)

func init() {
	handler.Handle(func(req []byte) ([]byte, error) {
		out, err := run(string(req))
		if err != nil {
			return nil, wasmpod.Code(5, err)
		}
		return out, nil
	})
}

func run(req string) ([]byte, error) {
	cmd, rest, _ := strings.Cut(req, ":")
	switch cmd {
	case "read":
		return os.ReadFile(rest)
	case "write", "append":
		p, data, _ := strings.Cut(rest, ":")
		flag := os.O_CREATE | os.O_WRONLY | os.O_TRUNC
		if cmd == "append" {
			flag = os.O_CREATE | os.O_WRONLY | os.O_APPEND
		}
		f, err := os.OpenFile(p, flag, 0o644)
		if err != nil {
			return nil, err
		}
		if _, err := f.WriteString(data); err != nil {
			f.Close()
			return nil, err
		}
		return nil, f.Close()
	case "fill":
		p, ns, _ := strings.Cut(rest, ":")
		n, _ := strconv.Atoi(ns)
		f, err := os.Create(p)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		chunk := make([]byte, 64<<10)
		written := 0
		for written < n {
			k, err := f.Write(chunk[:min(len(chunk), n-written)])
			written += k
			if err != nil {
				return nil, fmt.Errorf("after %d bytes: %w", written, err)
			}
		}
		return []byte(strconv.Itoa(written)), nil
	case "rm":
		return nil, os.Remove(rest)
	case "symlink":
		oldName, newName, _ := strings.Cut(rest, ":")
		return nil, os.Symlink(oldName, newName)
	case "list":
		entries, err := os.ReadDir(rest)
		if err != nil {
			return nil, err
		}
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		return []byte(strings.Join(names, "\n")), nil
	}
	return nil, errors.New("unknown command " + cmd)
}

func main() {}
