// Command echo is the example plugin: a handler that returns its request unchanged and a merge
// that joins the parts that arrived with newlines.
package main

import (
	"strconv"

	"github.com/wasmpod/wasmpod/guest-sdk/go/handler"
	"github.com/wasmpod/wasmpod/guest-sdk/go/merge"
)

var out []byte // merge output, reused

func init() {
	handler.Handle(func(req []byte) ([]byte, error) { return req, nil })
	merge.Handle(func(parts []merge.Part) ([]byte, error) {
		out = out[:0]
		missing := 0
		for _, p := range parts {
			if p.Missing {
				missing++
			}
		}
		if missing > 0 {
			out = append(out, "missing="...)
			out = strconv.AppendInt(out, int64(missing), 10)
			out = append(out, '\n')
		}
		first := true
		for _, p := range parts {
			if p.Missing {
				continue
			}
			if !first {
				out = append(out, '\n')
			}
			first = false
			out = append(out, p.Data...)
		}
		return out, nil
	})
}

func main() {}
