// Command pipeline-sum is a work-queue merge stage (a plain WASI command, no wasmpod SDK): its
// inputs are pipeline-wc outputs, each "LINES WORDS\n" and named PACKAGE/FILE; it sums them per
// package (the name's first path component) and writes, to the suggested output, one line
// "PACKAGE LINES WORDS FILES" per package, sorted by package, then "TOTAL LINES WORDS FILES".
//
//	pipeline-sum /in/PKG/FILE... /out/SUGGESTED    writes /out/SUGGESTED
//
// A malformed input fails the run (exit 1), naming the file and the line.
//
// Build: GOOS=wasip1 GOARCH=wasm go build -o pipeline-sum.wasm .
package main

import (
	"fmt"
	"os"
)

func main() {
	if err := run(os.Args[1:], "/in", "/out"); err != nil {
		fmt.Fprintln(os.Stderr, "pipeline-sum:", err)
		os.Exit(1)
	}
}
