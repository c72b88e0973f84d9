package main

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// cases are tricky inputs, with what GNU coreutils 9.1 `LC_ALL=C wc -lw` prints for them.
var cases = []struct {
	name         string
	in           string
	lines, words uint64
}{
	{"empty", "", 0, 0},
	{"newline only", "\n", 1, 0},
	{"no trailing newline", "one two", 0, 2},
	{"trailing newline", "one two\n", 1, 2},
	{"blank lines", "\n\n\n", 3, 0},
	{"leading and trailing spaces", "   a   b   \n", 1, 2},
	{"tabs", "a\tb\t\tc\n", 1, 3},
	{"CRLF", "a b\r\nc\r\n", 2, 3},
	{"CR alone separates", "a\rb", 0, 2},
	{"vertical tab and form feed", "a\vb\fc", 0, 3},
	{"NUL inside a word", "a\x00b", 0, 1},
	{"NUL alone", "\x00", 0, 0},
	{"NULs between spaces", " \x00 \x00\x00 ", 0, 0},
	{"control byte inside a word", "a\x01b", 0, 1},
	{"control byte alone", "\x01\x02\x1b", 0, 0},
	{"control word between words", "a \x01 b", 0, 2},
	{"control byte then letter", "\x01a", 0, 1},
	{"DEL", "\x7f \x7fa", 0, 1},
	{"high bytes alone", "\x80 \xff \xa0", 0, 0},
	{"high bytes inside a word", "a\x80b \xffc", 0, 2},
	{"UTF-8 word", "caf\xc3\xa9 na\xc3\xafve", 0, 2},
	{"UTF-8 only", "\xc3\xa9\xc3\xa9 \xe2\x80\x94", 0, 0},
	{"UTF-8 NBSP is no separator in C", "a\xc2\xa0b", 0, 1},
	{"file separators are not spaces in C", "a\x1cb\x1dc\x1ed\x1fe", 0, 1},
	{"escape sequence", "\x1b[1mbold\x1b[0m\n", 1, 1},
	{"punctuation words", "-- * , .\n", 1, 4},
	{"changelog line", " -- Matthias Klose <doko@debian.org>  Sun, 11 Sep 2022 14:00:00 +0200\n", 1, 10},
}

func TestCounter(t *testing.T) {
	for _, tc := range cases {
		c, err := count(strings.NewReader(tc.in))
		if err != nil || c.Lines != tc.lines || c.Words != tc.words {
			t.Errorf("%s: count(%q) = %d %d, %v; want %d %d", tc.name, tc.in, c.Lines, c.Words, err, tc.lines, tc.words)
		}
		// Any split of the input into writes gives the same counts.
		for i := 0; i <= len(tc.in); i++ {
			var s Counter
			s.Write([]byte(tc.in[:i]))
			s.Write([]byte(tc.in[i:]))
			if s.Lines != tc.lines || s.Words != tc.words {
				t.Errorf("%s: split at %d: %d %d, want %d %d", tc.name, i, s.Lines, s.Words, tc.lines, tc.words)
			}
		}
	}
	var c Counter
	c.Write([]byte("a b\nc"))
	if got := c.String(); got != "1 3\n" {
		t.Errorf("String() = %q", got)
	}
}

// realWC runs GNU `LC_ALL=C wc -lw` on data.
func realWC(t *testing.T, data []byte) (lines, words uint64) {
	t.Helper()
	cmd := exec.Command("wc", "-lw")
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	cmd.Stdin = bytes.NewReader(data)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("wc -lw: %v", err)
	}
	f := strings.Fields(string(out))
	if len(f) != 2 {
		t.Fatalf("wc -lw printed %q", out)
	}
	l, err1 := strconv.ParseUint(f[0], 10, 64)
	w, err2 := strconv.ParseUint(f[1], 10, 64)
	if err1 != nil || err2 != nil {
		t.Fatalf("wc -lw printed %q", out)
	}
	return l, w
}

func requireWC(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("wc"); err != nil {
		t.Skip("no wc on this machine")
	}
	if out, _ := exec.Command("wc", "--version").Output(); !bytes.Contains(out, []byte("GNU coreutils")) {
		t.Skipf("wc is not GNU coreutils' (%q)", firstLine(out))
	}
}

func firstLine(b []byte) string { l, _, _ := bytes.Cut(b, []byte("\n")); return string(l) }

// TestAgainstWCTricky checks the table's expectations, and every byte value alone, inside a word,
// before and after one, against the real wc.
func TestAgainstWCTricky(t *testing.T) {
	requireWC(t)
	inputs := make([]string, 0, len(cases)+5*256)
	for _, tc := range cases {
		inputs = append(inputs, tc.in)
	}
	for b := 0; b < 256; b++ {
		c := string([]byte{byte(b)})
		inputs = append(inputs, c, "a"+c+"b", c+"a", "a"+c, " "+c+c+" x")
	}
	for _, in := range inputs {
		c, _ := count(strings.NewReader(in))
		if l, w := realWC(t, []byte(in)); c.Lines != l || c.Words != w {
			t.Errorf("%q: counted %d %d, wc -lw says %d %d", in, c.Lines, c.Words, l, w)
		}
	}
}

// TestAgainstWCChangelogs compares the counts of every /usr/share/doc/*/changelog*.gz on this
// machine, decompressed, with `LC_ALL=C wc -lw`'s.
func TestAgainstWCChangelogs(t *testing.T) {
	requireWC(t)
	files, _ := filepath.Glob("/usr/share/doc/*/changelog*.gz")
	if len(files) == 0 {
		t.Skip("no /usr/share/doc/*/changelog*.gz on this machine")
	}
	if testing.Short() && len(files) > 50 {
		files = files[:50]
	}
	checked, nonASCII := 0, 0
	for _, f := range files {
		data, err := gunzipFile(f)
		if err != nil {
			t.Logf("%s: %v (skipped)", f, err)
			continue
		}
		if bytes.ContainsFunc(data, func(r rune) bool { return r >= 0x80 || r < 0x20 && r != '\n' && r != '\t' }) {
			nonASCII++
		}
		c, _ := count(bytes.NewReader(data))
		if l, w := realWC(t, data); c.Lines != l || c.Words != w {
			t.Errorf("%s: counted %d %d, wc -lw says %d %d", f, c.Lines, c.Words, l, w)
		}
		checked++
	}
	t.Logf("%d changelogs checked, %d with control or non-ASCII bytes", checked, nonASCII)
}

func gunzipFile(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return nil, err
	}
	return io.ReadAll(zr)
}

func TestRun(t *testing.T) {
	in, out := t.TempDir(), t.TempDir()
	if err := os.MkdirAll(filepath.Join(in, "bash"), 0o755); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(in, "bash", "changelog.Debian")
	if err := os.WriteFile(src, []byte("bash (5.2)\n\n  * fix\x01es\n"), 0o444); err != nil {
		t.Fatal(err)
	}
	if err := run([]string{src, filepath.Join(out, "suggested")}, in, out); err != nil {
		t.Fatal(err)
	}
	var files []string
	filepath.WalkDir(out, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(out, p)
			files = append(files, filepath.ToSlash(rel))
		}
		return err
	})
	if len(files) != 1 || files[0] != "bash/changelog.Debian" {
		t.Fatalf("outputs %q, want exactly [bash/changelog.Debian]", files)
	}
	if b, _ := os.ReadFile(filepath.Join(out, "bash", "changelog.Debian")); string(b) != "3 4\n" {
		t.Fatalf("output %q, want %q", b, "3 4\n")
	}
	for _, args := range [][]string{
		{filepath.Join(out, "x")},
		{src, src, filepath.Join(out, "x")},
		{filepath.Join(out, "elsewhere"), filepath.Join(out, "x")},
		{filepath.Join(in, "missing"), filepath.Join(out, "x")},
	} {
		if err := run(args, in, t.TempDir()); err == nil {
			t.Errorf("run(%q): no error", args)
		}
	}
}

func BenchmarkCounter(b *testing.B) {
	data := []byte(strings.Repeat(fmt.Sprintf("%s\n", "  * Fix the build with \x01GCC 14 (Closes: #1075000)."), 1<<12))
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		var c Counter
		c.Write(data)
	}
}
