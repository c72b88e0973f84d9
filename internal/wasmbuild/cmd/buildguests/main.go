// Command buildguests builds guest modules (each a directory: Go, C, Rust or AssemblyScript,
// detected by its files) into an output directory, one DIR_BASENAME.wasm per directory:
//
//	go run ./internal/wasmbuild/cmd/buildguests -o build/plugins plugins/*/
//
// A guest whose toolchain is missing fails the build with the compiler's message.
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
		lang, build, err := wasmbuild.Detect(abs)
		if err != nil {
			return err
		}
		dst := filepath.Join(out, filepath.Base(abs)+".wasm")
		tmp := dst + ".tmp"
		start := time.Now()
		if err := build(abs, tmp); err != nil {
			os.Remove(tmp)
			return fmt.Errorf("%s (%s): %w", dir, lang, err)
		}
		if err := os.Rename(tmp, dst); err != nil {
			return err
		}
		st, err := os.Stat(dst)
		if err != nil {
			return err
		}
		fmt.Printf("%-40s %-15s %9d bytes  %s\n", dst, lang, st.Size(), time.Since(start).Round(time.Millisecond))
	}
	return nil
}
