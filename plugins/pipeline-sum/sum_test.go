package main

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/big"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

func TestParseCounts(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    Counts
		errLine int    // 0: no error
		errMsg  string // part of the message
	}{
		{in: "0 0\n", want: Counts{0, 0}},
		{in: "3519 21802\n", want: Counts{3519, 21802}},
		{in: "007 08\n", want: Counts{7, 8}},
		{in: "18446744073709551615 18446744073709551615\n", want: Counts{math.MaxUint64, math.MaxUint64}},
		{in: "", errLine: 1, errMsg: "empty input"},
		{in: "\n", errLine: 1, errMsg: "two numbers"},
		{in: "1 2", errLine: 1, errMsg: "no final newline"},
		{in: "1\n", errLine: 1, errMsg: "two numbers"},
		{in: "1 2 3\n", errLine: 1, errMsg: `words "2 3"`},
		{in: "1  2\n", errLine: 1, errMsg: `words " 2"`},
		{in: " 1 2\n", errLine: 1, errMsg: `lines ""`},
		{in: "1\t2\n", errLine: 1, errMsg: "two numbers"},
		{in: "1 2\r\n", errLine: 1, errMsg: `words "2\r"`},
		{in: "-1 2\n", errLine: 1, errMsg: `lines "-1"`},
		{in: "+1 2\n", errLine: 1, errMsg: `lines "+1"`},
		{in: "1_0 2\n", errLine: 1, errMsg: `lines "1_0"`},
		{in: "0x10 2\n", errLine: 1, errMsg: `lines "0x10"`},
		{in: "1 ٣\n", errLine: 1, errMsg: "not an unsigned decimal"},
		{in: "18446744073709551616 0\n", errLine: 1, errMsg: "out of range"},
		{in: "1 2\n\n", errLine: 2, errMsg: "unexpected content"},
		{in: "1 2\n3 4\n", errLine: 2, errMsg: "unexpected content"},
		{in: "1 2\nx", errLine: 2, errMsg: "unexpected content"},
		{in: strings.Repeat("1", 100) + " 2\n", errLine: 1, errMsg: "longer than"},
		{in: strings.Repeat("x", 1<<20), errLine: 1, errMsg: "longer than"},
	} {
		got, err := parseCounts(strings.NewReader(tc.in))
		if tc.errLine == 0 {
			if err != nil || got != tc.want {
				t.Errorf("parseCounts(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
			}
			continue
		}
		var pe *ParseError
		if !errors.As(err, &pe) || pe.Line != tc.errLine || !strings.Contains(pe.Msg, tc.errMsg) {
			t.Errorf("parseCounts(%q) = %v, %v; want a line %d error containing %q", tc.in, got, err, tc.errLine, tc.errMsg)
		}
	}
}

func TestPackageOf(t *testing.T) {
	for in, want := range map[string]string{
		"bash/changelog.Debian":      "bash",
		"bash/sub/dir/changelog":     "bash",
		"changelog":                  "changelog",
		"libc6/changelog.Debian.old": "libc6",
	} {
		if got := packageOf(in); got != want {
			t.Errorf("packageOf(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSummary(t *testing.T) {
	for _, tc := range []struct {
		name   string
		inputs []string // "NAME LINES WORDS"
		want   string
	}{
		{name: "none", want: "TOTAL 0 0 0\n"},
		{
			name:   "sorted per package",
			inputs: []string{"zlib1g/changelog.Debian 10 100", "bash/changelog.Debian 3 30", "bash/changelog 1 2", "apt/changelog 0 0"},
			want:   "apt 0 0 1\nbash 4 32 2\nzlib1g 10 100 1\nTOTAL 14 132 4\n",
		},
		{
			name:   "bytewise order, no directory",
			inputs: []string{"b/x 1 1", "B/x 1 1", "a-b/x 1 1", "a/x 1 1", "README 5 6"},
			want:   "B 1 1 1\nREADME 5 6 1\na 1 1 1\na-b 1 1 1\nb 1 1 1\nTOTAL 9 10 5\n",
		},
		{
			name:   "odd package names are quoted",
			inputs: []string{"my pkg/x 1 2", "tab\tpkg/x 3 4", "\"q/x 5 6"},
			want:   "\"\\\"q\" 5 6 1\n\"my pkg\" 1 2 1\n\"tab\\tpkg\" 3 4 1\nTOTAL 9 12 3\n",
		},
	} {
		var s Summary
		for _, in := range tc.inputs {
			i := strings.LastIndex(in[:strings.LastIndex(in, " ")], " ")
			c, err := parseCounts(strings.NewReader(in[i+1:] + "\n"))
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Add(in[:i], c); err != nil {
				t.Fatal(err)
			}
		}
		var b bytes.Buffer
		s.WriteTo(&b)
		if b.String() != tc.want {
			t.Errorf("%s: got\n%s\nwant\n%s", tc.name, b.String(), tc.want)
		}
	}
}

func TestSummaryOverflow(t *testing.T) {
	var s Summary
	if err := s.Add("a/x", Counts{math.MaxUint64, 1}); err != nil {
		t.Fatal(err)
	}
	if err := s.Add("b/x", Counts{1, 1}); err == nil || !strings.Contains(err.Error(), "total") {
		t.Fatalf("total overflow: %v", err)
	}
	if err := s.Add("a/y", Counts{0, math.MaxUint64}); err == nil || !strings.Contains(err.Error(), "package a") {
		t.Fatalf("package overflow: %v", err)
	}
	var b bytes.Buffer
	s.WriteTo(&b)
	if want := fmt.Sprintf("a %d 1 1\nTOTAL %d 1 1\n", uint64(math.MaxUint64), uint64(math.MaxUint64)); b.String() != want {
		t.Fatalf("a failed Add changed the summary:\n%s", b.String())
	}
}

func writeInputs(t *testing.T, files map[string]string) (in string, args []string) {
	in = t.TempDir()
	for name, content := range files {
		p := filepath.Join(in, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o444); err != nil {
			t.Fatal(err)
		}
		args = append(args, p)
	}
	return in, args
}

func TestRun(t *testing.T) {
	in, args := writeInputs(t, map[string]string{
		"bash/changelog.Debian": "3519 21802\n",
		"bash/changelog":        "10 20\n",
		"zstd/changelog":        "1 1\n",
	})
	out := t.TempDir()
	if err := run(append(args, filepath.Join(out, "sum")), in, out); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(out, "sum"))
	if want := "bash 3529 21822 2\nzstd 1 1 1\nTOTAL 3530 21823 3\n"; err != nil || string(b) != want {
		t.Fatalf("output %q, %v; want %q", b, err, want)
	}

	// No inputs (every task of the previous stage dead-lettered): an all-zero total.
	out = t.TempDir()
	if err := run([]string{filepath.Join(out, "sum")}, in, out); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(out, "sum")); string(b) != "TOTAL 0 0 0\n" {
		t.Fatalf("no inputs: %q", b)
	}

	for _, tc := range []struct {
		files   map[string]string
		wantErr string
	}{
		{map[string]string{"ok/a": "1 2\n", "bad/changelog": "1 2\nextra\n"}, "bad/changelog: line 2: unexpected content"},
		{map[string]string{"bad/changelog": "one two\n"}, `bad/changelog: line 1: "one two": lines "one"`},
		{map[string]string{"bad/empty": ""}, "bad/empty: line 1: empty input"},
	} {
		in, args := writeInputs(t, tc.files)
		out := t.TempDir()
		err := run(append(args, filepath.Join(out, "sum")), in, out)
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%v: error %v, want one containing %q", tc.files, err, tc.wantErr)
		}
		if entries, _ := os.ReadDir(out); len(entries) != 0 {
			t.Errorf("%v: a failed run wrote output", tc.files)
		}
	}
	if err := run(nil, in, out); err == nil {
		t.Error("no arguments: no error")
	}
	if err := run([]string{args[0], "/elsewhere/sum"}, in, out); err == nil || !strings.Contains(err.Error(), "output") {
		t.Errorf("output outside /out: %v", err)
	}
}

var canonical = regexp.MustCompile(`^([0-9]+) ([0-9]+)\n$`)

// FuzzParseCounts checks parseCounts against an independent oracle (a regexp and big integers):
// it accepts exactly the canonical inputs whose numbers fit 64 bits, with their values.
func FuzzParseCounts(f *testing.F) {
	for _, s := range []string{"0 0\n", "3519 21802\n", "1 2", "1 2\n\n", "18446744073709551616 0\n", "1 2\r\n", "", "x"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := parseCounts(bytes.NewReader(data))
		m := canonical.FindSubmatch(data)
		fits := func(b []byte) (uint64, bool) {
			n, ok := new(big.Int).SetString(string(b), 10)
			return n.Uint64(), ok && n.IsUint64()
		}
		var want Counts
		ok := m != nil && len(m[0]) <= maxLine
		if ok {
			var ok1, ok2 bool
			want.Lines, ok1 = fits(m[1])
			want.Words, ok2 = fits(m[2])
			ok = ok1 && ok2
		}
		if ok != (err == nil) || ok && got != want {
			t.Fatalf("parseCounts(%q) = %v, %v; oracle: ok=%v %v", data, got, err, ok, want)
		}
		var pe *ParseError
		if err != nil && (!errors.As(err, &pe) || pe.Line < 1 || pe.Line > 2) {
			t.Fatalf("parseCounts(%q): error %v is not a line 1 or 2 ParseError", data, err)
		}
	})
}

// splitOutputLine splits a summary line into its (unquoted) package and three numbers.
func splitOutputLine(l string) (pkg string, n [3]uint64, err error) {
	f := strings.Split(l, " ")
	if len(f) < 4 {
		return "", n, fmt.Errorf("line %q: fewer than 4 fields", l)
	}
	pkg = strings.Join(f[:len(f)-3], " ")
	if strings.HasPrefix(pkg, `"`) {
		if pkg, err = strconv.Unquote(pkg); err != nil {
			return "", n, fmt.Errorf("line %q: bad quoted package: %v", l, err)
		}
	} else if len(f) != 4 {
		return "", n, fmt.Errorf("line %q: unquoted package with spaces", l)
	}
	for i, s := range f[len(f)-3:] {
		if n[i], err = strconv.ParseUint(s, 10, 64); err != nil {
			return "", n, fmt.Errorf("line %q: %v", l, err)
		}
	}
	return pkg, n, nil
}

// FuzzSummary adds inputs named by the comma-separated names and checks the output: one line per
// package of the added names, in increasing order, each of four fields, whose sums add up to the
// TOTAL line, which is last; an Add that would overflow fails and changes nothing.
func FuzzSummary(f *testing.F) {
	f.Add("bash/changelog.Debian,bash/changelog,zstd/changelog", uint64(10), uint64(20))
	f.Add("a,b/c,b/d/e,my pkg/x,\"q\"/y,TOTAL/z", uint64(0), uint64(7))
	f.Add("x/y,x/z", uint64(math.MaxUint64/2+1), uint64(1))
	f.Fuzz(func(t *testing.T, names string, lines, words uint64) {
		var s Summary
		var wantLines, wantWords big.Int
		var files uint64
		wantPkgs := map[string]bool{}
		for i, name := range strings.Split(names, ",") {
			c := Counts{lines + uint64(i), words ^ uint64(i)}
			err := s.Add(name, c)
			l := new(big.Int).Add(&wantLines, new(big.Int).SetUint64(c.Lines))
			w := new(big.Int).Add(&wantWords, new(big.Int).SetUint64(c.Words))
			if !l.IsUint64() || !w.IsUint64() {
				if err == nil {
					t.Fatalf("%q: total overflow not reported", name)
				}
				continue // the summary must be unchanged: checked below
			}
			if err != nil {
				t.Fatalf("%q: %v", name, err)
			}
			wantLines.Set(l)
			wantWords.Set(w)
			files++
			wantPkgs[packageOf(name)] = true
		}
		var b bytes.Buffer
		s.WriteTo(&b)
		text, ok := strings.CutSuffix(b.String(), "\n")
		if !ok {
			t.Fatalf("output %q lacks a final newline", b.String())
		}
		out := strings.Split(text, "\n")
		want := fmt.Sprintf("TOTAL %s %s %d", &wantLines, &wantWords, files)
		if last := out[len(out)-1]; last != want {
			t.Fatalf("last line %q, want %q", last, want)
		}
		if len(out)-1 != len(wantPkgs) {
			t.Fatalf("%d package lines, want %d:\n%s", len(out)-1, len(wantPkgs), b.String())
		}
		var sumL, sumW, sumF big.Int
		prev := ""
		for i, l := range out[:len(out)-1] {
			pkg, n, err := splitOutputLine(l)
			if err != nil {
				t.Fatal(err)
			}
			if !wantPkgs[pkg] || i > 0 && pkg <= prev {
				t.Fatalf("package %q unexpected or out of order (after %q):\n%s", pkg, prev, b.String())
			}
			prev = pkg
			sumL.Add(&sumL, new(big.Int).SetUint64(n[0]))
			sumW.Add(&sumW, new(big.Int).SetUint64(n[1]))
			sumF.Add(&sumF, new(big.Int).SetUint64(n[2]))
		}
		if sumL.Cmp(&wantLines) != 0 || sumW.Cmp(&wantWords) != 0 || sumF.Uint64() != files {
			t.Fatalf("package lines sum to %s %s %s, want %s %s %d", &sumL, &sumW, &sumF, &wantLines, &wantWords, files)
		}
	})
}
