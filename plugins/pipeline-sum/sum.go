package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Counts is one input: a file's line and word counts.
type Counts struct{ Lines, Words uint64 }

// ParseError says which line of an input is malformed, and how.
type ParseError struct {
	Line int
	Msg  string
}

func (e *ParseError) Error() string { return fmt.Sprintf("line %d: %s", e.Line, e.Msg) }

// maxLine bounds the counts line: two 20-digit numbers, a space and the newline fit.
const maxLine = 64

// parseCounts reads an input, which must be exactly one line "LINES WORDS\n": two unsigned
// decimal numbers (ASCII digits only) separated by one space, ended by a newline, and nothing
// after it. It reads at most a few dozen bytes past the line.
func parseCounts(r io.Reader) (Counts, error) {
	br := bufio.NewReaderSize(r, maxLine)
	line, err := br.ReadSlice('\n')
	switch {
	case errors.Is(err, bufio.ErrBufferFull):
		return Counts{}, &ParseError{1, fmt.Sprintf("longer than %d bytes: want \"LINES WORDS\"", maxLine)}
	case err == io.EOF && len(line) == 0:
		return Counts{}, &ParseError{1, `empty input: want "LINES WORDS"`}
	case err == io.EOF:
		return Counts{}, &ParseError{1, fmt.Sprintf("%q has no final newline", line)}
	case err != nil:
		return Counts{}, err
	}
	text := line[:len(line)-1]
	l, w, ok := bytes.Cut(text, []byte{' '})
	if !ok {
		return Counts{}, &ParseError{1, fmt.Sprintf("%q: want \"LINES WORDS\" (two numbers separated by one space)", text)}
	}
	var c Counts
	for _, f := range []struct {
		what string
		b    []byte
		dst  *uint64
	}{{"lines", l, &c.Lines}, {"words", w, &c.Words}} {
		if len(f.b) == 0 || bytes.ContainsFunc(f.b, func(r rune) bool { return r < '0' || r > '9' }) {
			return Counts{}, &ParseError{1, fmt.Sprintf("%q: %s %q is not an unsigned decimal number", text, f.what, f.b)}
		}
		n, err := strconv.ParseUint(string(f.b), 10, 64)
		if err != nil {
			return Counts{}, &ParseError{1, fmt.Sprintf("%q: %s %q out of range", text, f.what, f.b)}
		}
		*f.dst = n
	}
	if _, err := br.ReadByte(); err == nil {
		return Counts{}, &ParseError{2, `unexpected content after the "LINES WORDS" line`}
	} else if err != io.EOF {
		return Counts{}, err
	}
	return c, nil
}

// Total is a sum of inputs.
type Total struct{ Lines, Words, Files uint64 }

func (t *Total) add(c Counts) error {
	lines, carry1 := bits.Add64(t.Lines, c.Lines, 0)
	words, carry2 := bits.Add64(t.Words, c.Words, 0)
	if carry1 != 0 || carry2 != 0 {
		return errors.New("sum overflows 64 bits")
	}
	t.Lines, t.Words, t.Files = lines, words, t.Files+1
	return nil
}

// Summary sums inputs per package.
type Summary struct {
	packages map[string]*Total
	total    Total
}

// packageOf returns the package an input belongs to: its name's first path component (the
// whole name when it has no directory).
func packageOf(name string) string {
	pkg, _, _ := strings.Cut(name, "/")
	return pkg
}

// Add counts the input called name. On error (a sum would overflow) the summary is unchanged.
func (s *Summary) Add(name string, c Counts) error {
	if s.packages == nil {
		s.packages = map[string]*Total{}
	}
	pkg := packageOf(name)
	t := s.packages[pkg]
	if t == nil {
		t = &Total{}
	}
	pt, total := *t, s.total
	if err := pt.add(c); err != nil {
		return fmt.Errorf("package %s: %w", pkg, err)
	}
	if err := total.add(c); err != nil {
		return fmt.Errorf("total: %w", err)
	}
	*t, s.total = pt, total
	s.packages[pkg] = t
	return nil
}

// WriteTo writes "PACKAGE LINES WORDS FILES\n" per package, sorted by package (bytewise), then
// "TOTAL LINES WORDS FILES\n". A package name holding spaces or control bytes is written
// Go-quoted, so that every line keeps four fields.
func (s *Summary) WriteTo(w io.Writer) (int64, error) {
	pkgs := make([]string, 0, len(s.packages))
	for p := range s.packages {
		pkgs = append(pkgs, p)
	}
	sort.Strings(pkgs)
	var b bytes.Buffer
	for _, p := range pkgs {
		t := s.packages[p]
		fmt.Fprintf(&b, "%s %d %d %d\n", quoteName(p), t.Lines, t.Words, t.Files)
	}
	fmt.Fprintf(&b, "TOTAL %d %d %d\n", s.total.Lines, s.total.Words, s.total.Files)
	return b.WriteTo(w)
}

func quoteName(s string) string {
	if s == "" || strings.HasPrefix(s, `"`) || strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return strconv.Quote(s)
	}
	return s
}

// run is the command: args are the stage's arguments (the inputs below inRoot, then the
// suggested output below outRoot, which is where the summary goes).
func run(args []string, inRoot, outRoot string) error {
	if len(args) == 0 {
		return errors.New("want arguments /in/INPUT... /out/OUTPUT, got none")
	}
	inputs, out := args[:len(args)-1], args[len(args)-1]
	outName, err := relName(outRoot, out)
	if err != nil {
		return fmt.Errorf("output: %w", err)
	}
	var s Summary
	for _, in := range inputs {
		name, err := relName(inRoot, in)
		if err != nil {
			return fmt.Errorf("input: %w", err)
		}
		c, err := parseFile(in)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if err := s.Add(name, c); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	var b bytes.Buffer
	s.WriteTo(&b)
	outPath := filepath.Join(outRoot, filepath.FromSlash(outName))
	if err := os.MkdirAll(filepath.Dir(outPath), 0o755); err != nil {
		return err
	}
	return os.WriteFile(outPath, b.Bytes(), 0o644)
}

func parseFile(path string) (Counts, error) {
	f, err := os.Open(path)
	if err != nil {
		return Counts{}, err
	}
	defer f.Close()
	return parseCounts(f)
}

// relName returns path's name relative to root as a slash path, refusing paths outside root.
func relName(root, path string) (string, error) {
	rel, err := filepath.Rel(root, path)
	if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return "", errors.New(path + " is not below " + root)
	}
	return filepath.ToSlash(rel), nil
}
