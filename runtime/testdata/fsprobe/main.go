// Command fsprobe is a test guest that touches the file system as its handler is told, so the
// runtime's tests can check what a mount lets a guest reach. Commands (the whole request):
//
//	read:<path>            returns the file's contents
//	write:<path>:<data>    creates or truncates the file and writes data
//	append:<path>:<data>   appends data
//	symlink:<old>:<new>    creates a symbolic link
//	list:<dir>             returns the names in dir, one per line
//
// Failures return error code 5 with the Go error as message.
package main

import (
	"errors"
	"os"
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
