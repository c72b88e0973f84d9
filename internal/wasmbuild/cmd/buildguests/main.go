// Command buildguests builds Go guest modules (each a directory with its own go.mod and a main
// package) into an output directory, one DIR_BASENAME.wasm per directory:
//
//	go run ./internal/wasmbuild/cmd/buildguests -o build/plugins plugins/*/
//
// Directories without a go.mod (guests in other languages) are skipped with a note.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/wasmpod/wasmpod/internal/wasmbuild"
)

func main() {
	out := flag.String("o", "build/plugins", "output directory")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: buildguests [-o dir] guestdir...\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(*out, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "buildguests:", err)
		os.Exit(1)
	}
}

func run(out string, dirs []string) error {
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	for _, dir := range dirs {
		abs, err := filepath.Abs(dir)
		if err != nil {
			return err
		}
		if st, err := os.Stat(abs); err != nil {
			return err
		} else if !st.IsDir() {
			return fmt.Errorf("%s is not a directory", dir)
		}
		if _, err := os.Stat(filepath.Join(abs, "go.mod")); err != nil {
			// plugins/*/ also matches guests in other languages: leave them to their builders.
			fmt.Fprintf(os.Stderr, "buildguests: skipping %s (no go.mod)\n", dir)
			continue
		}
		dst := filepath.Join(out, filepath.Base(abs)+".wasm")
		tmp := dst + ".tmp"
		start := time.Now()
		if err := wasmbuild.BuildGo(abs, tmp); err != nil {
			os.Remove(tmp)
			return err
		}
		if err := os.Rename(tmp, dst); err != nil {
			return err
		}
		st, err := os.Stat(dst)
		if err != nil {
			return err
		}
		fmt.Printf("%s\t%d bytes\t%s\n", dst, st.Size(), time.Since(start).Round(time.Millisecond))
	}
	return nil
}
