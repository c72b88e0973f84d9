// Command pipeline-wc is a work-queue stage (a plain WASI command, no wasmpod SDK): it counts
// the lines and words of its single input exactly as `LC_ALL=C wc -lw` (GNU coreutils) does and
// writes them, as "LINES WORDS\n", under the input's own name.
//
//	pipeline-wc /in/NAME /out/SUGGESTED    writes /out/NAME
//
// Build: GOOS=wasip1 GOARCH=wasm go build -o pipeline-wc.wasm .
package main

import (
	"fmt"
	"os"
)

func main() {
	if err := run(os.Args[1:], "/in", "/out"); err != nil {
		fmt.Fprintln(os.Stderr, "pipeline-wc:", err)
		os.Exit(1)
	}
}
