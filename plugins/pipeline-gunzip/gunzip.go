package main

import (
	"bufio"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// outputName returns the name of the decompressed output of the input called name (a relative
// slash path below /in): name without its ".gz" suffix.
func outputName(name string) (string, error) {
	out, ok := strings.CutSuffix(name, ".gz")
	if !ok {
		return "", fmt.Errorf("input %q has no .gz suffix: not a gzip file name", name)
	}
	if out == "" || strings.HasSuffix(out, "/") {
		return "", fmt.Errorf("input %q: nothing left of the name without .gz", name)
	}
	return out, nil
}

// gunzip copies the decompression of the gzip stream r (all its members, like zcat) to w.
func gunzip(w io.Writer, r io.Reader) (int64, error) {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(w, zr) // zr is multistream by default
	if err != nil {
		return n, err
	}
	return n, zr.Close()
}

// run is the command: args are the stage's arguments (one input below inRoot, then the
// suggested output below outRoot, which is ignored: the output is named after the input).
func run(args []string, inRoot, outRoot string) error {
	if len(args) != 2 {
		return fmt.Errorf("want 2 arguments (/in/INPUT.gz /out/OUTPUT), got %d: %q", len(args), args)
	}
	name, err := relName(inRoot, args[0])
	if err != nil {
		return err
	}
	outName, err := outputName(name)
	if err != nil {
		return err
	}
	in, err := os.Open(args[0])
	if err != nil {
		return err
	}
	defer in.Close()

	outPath := filepath.Join(outRoot, filepath.FromSlash(outName))
	if err := os.MkdirAll(filepath.Dir(outPath), 0o755); err != nil {
		return err
	}
	out, err := os.Create(outPath)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(out, 64<<10)
	_, err = gunzip(bw, bufio.NewReaderSize(in, 64<<10))
	if err == nil {
		err = bw.Flush()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(outPath) // a failed attempt leaves no partial output
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// relName returns path's name relative to root as a slash path, refusing paths outside root.
func relName(root, path string) (string, error) {
	rel, err := filepath.Rel(root, path)
	if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return "", errors.New("input " + path + " is not below " + root)
	}
	return filepath.ToSlash(rel), nil
}
