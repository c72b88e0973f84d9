// Command copystage is BenchmarkQueue's trivial work-queue stage, a plain WASI command (no
// SDK): called as `copystage /in/NAME /out/NAME`, it writes "copy:" and its input's content to
// the output path. The prefix keeps the output's content, hence its blob address, distinct
// from the input's, as a real stage's would be: an exact copy would let the blob store skip
// replicating outputs that a peer already holds as inputs.
package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
)

func main() {
	if len(os.Args) != 3 {
		fail(2, fmt.Sprintf("usage: copystage /in/NAME /out/NAME (got %q)", os.Args))
	}
	in, err := os.Open(os.Args[1])
	if err != nil {
		fail(1, err.Error())
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(os.Args[2]), 0o755); err != nil {
		fail(1, err.Error())
	}
	out, err := os.Create(os.Args[2])
	if err != nil {
		fail(1, err.Error())
	}
	if _, err := io.WriteString(out, "copy:"); err != nil {
		fail(1, err.Error())
	}
	if _, err := io.Copy(out, in); err != nil {
		fail(1, err.Error())
	}
	if err := out.Close(); err != nil {
		fail(1, err.Error())
	}
}

func fail(code int, msg string) {
	fmt.Fprintln(os.Stderr, msg)
	os.Exit(code)
}
