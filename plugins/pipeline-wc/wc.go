package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// Counter counts lines and words like GNU `LC_ALL=C wc -lw` (checked against coreutils 9.1,
// whose single-byte-locale loop tests isspace and isprint):
//
//   - a line is a '\n' byte (a last line without one is not counted);
//   - the separators are the C locale's isspace bytes: ' ', '\t', '\n', '\v', '\f', '\r';
//   - a word is a maximal run of non-separator bytes holding at least one printable byte
//     (0x21..0x7e). Other bytes (controls, DEL, NUL, 0x80..0xff) neither start nor end a word:
//     "a\x01b" is one word, "\x01" and "\x80\xff" alone are none, "a \x01 b" is two.
//
// The zero value is ready; Write never fails, so a Counter can be the destination of io.Copy.
type Counter struct {
	Lines, Words uint64
	inWord       bool
}

// byte classes for Counter
const (
	other     = iota // neither starts nor ends a word
	separator        // ends a word
	newline          // ends a word and a line
	printable        // starts or continues a word
)

var class = func() (t [256]uint8) {
	for c := 0x21; c <= 0x7e; c++ {
		t[c] = printable
	}
	for _, c := range []byte{' ', '\t', '\v', '\f', '\r'} {
		t[c] = separator
	}
	t['\n'] = newline
	return t
}()

// Write counts p.
func (c *Counter) Write(p []byte) (int, error) {
	lines, words, inWord := c.Lines, c.Words, c.inWord
	for _, b := range p {
		switch class[b] {
		case printable:
			if !inWord {
				words++
				inWord = true
			}
		case separator:
			inWord = false
		case newline:
			lines++
			inWord = false
		}
	}
	c.Lines, c.Words, c.inWord = lines, words, inWord
	return len(p), nil
}

// String formats the counts as the stage writes them: "LINES WORDS\n".
func (c *Counter) String() string { return fmt.Sprintf("%d %d\n", c.Lines, c.Words) }

// count counts r.
func count(r io.Reader) (Counter, error) {
	var c Counter
	_, err := io.CopyBuffer(&c, r, make([]byte, 64<<10))
	return c, err
}

// run is the command: args are the stage's arguments (one input below inRoot, then the
// suggested output below outRoot, which is ignored: the output takes the input's name).
func run(args []string, inRoot, outRoot string) error {
	if len(args) != 2 {
		return fmt.Errorf("want 2 arguments (/in/INPUT /out/OUTPUT), got %d: %q", len(args), args)
	}
	name, err := relName(inRoot, args[0])
	if err != nil {
		return err
	}
	in, err := os.Open(args[0])
	if err != nil {
		return err
	}
	defer in.Close()
	c, err := count(in)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	outPath := filepath.Join(outRoot, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(outPath), 0o755); err != nil {
		return err
	}
	return os.WriteFile(outPath, []byte(c.String()), 0o644)
}

// relName returns path's name relative to root as a slash path, refusing paths outside root.
func relName(root, path string) (string, error) {
	rel, err := filepath.Rel(root, path)
	if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return "", errors.New("input " + path + " is not below " + root)
	}
	return filepath.ToSlash(rel), nil
}
