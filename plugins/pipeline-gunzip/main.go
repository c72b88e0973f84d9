// Command pipeline-gunzip is a work-queue stage (a plain WASI command, no wasmpod SDK): it
// decompresses its single gzip input, like zcat (concatenated gzip members are one stream), and
// writes the result under the input's name without its .gz suffix.
//
//	pipeline-gunzip /in/NAME.gz /out/SUGGESTED    writes /out/NAME
//
// Build: GOOS=wasip1 GOARCH=wasm go build -o pipeline-gunzip.wasm .
package main

import (
	"fmt"
	"os"
)

func main() {
	if err := run(os.Args[1:], "/in", "/out"); err != nil {
		fmt.Fprintln(os.Stderr, "pipeline-gunzip:", err)
		os.Exit(1)
	}
}
