package main

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestOutputName(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		wantErr  string
	}{
		{in: "bash/changelog.Debian.gz", want: "bash/changelog.Debian"},
		{in: "a.gz", want: "a"},
		{in: "a/b/c.tar.gz", want: "a/b/c.tar"},
		{in: "x.gz.gz", want: "x.gz"},
		{in: "bash/changelog", wantErr: "no .gz suffix"},
		{in: "a.GZ", wantErr: "no .gz suffix"},
		{in: "a.tgz", wantErr: "no .gz suffix"},
		{in: ".gz", wantErr: "nothing left"},
		{in: "dir/.gz", wantErr: "nothing left"},
	} {
		got, err := outputName(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("outputName(%q) = %q, %v; want error containing %q", tc.in, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("outputName(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func gz(t testing.TB, s string) []byte {
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	if _, err := w.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestGunzip(t *testing.T) {
	multi := append(gz(t, "first member\n"), gz(t, "second member\n")...)
	for _, tc := range []struct {
		name    string
		in      []byte
		want    string
		wantErr bool
	}{
		{name: "empty content", in: gz(t, ""), want: ""},
		{name: "one member", in: gz(t, "hello\nworld\n"), want: "hello\nworld\n"},
		{name: "multistream", in: multi, want: "first member\nsecond member\n"},
		{name: "empty file", in: nil, wantErr: true},
		{name: "not gzip", in: []byte("plain text\n"), wantErr: true},
		{name: "truncated", in: multi[:len(multi)-5], wantErr: true},
		{name: "trailing garbage", in: append(gz(t, "x"), "junk"...), wantErr: true},
	} {
		var out bytes.Buffer
		_, err := gunzip(&out, bytes.NewReader(tc.in))
		if tc.wantErr {
			if err == nil {
				t.Errorf("%s: no error (output %q)", tc.name, out.String())
			}
			continue
		}
		if err != nil || out.String() != tc.want {
			t.Errorf("%s: got %q, %v; want %q", tc.name, out.String(), err, tc.want)
		}
	}
}

// listFiles returns every file below dir, as slash paths relative to it.
func listFiles(t *testing.T, dir string) []string {
	var files []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		files = append(files, filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func TestRun(t *testing.T) {
	in, out := t.TempDir(), t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(in, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o444); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("bash/changelog.Debian.gz", gz(t, "bash (5.2) unstable\n"))
	if err := run([]string{good, filepath.Join(out, "bash/changelog.Debian.gz")}, in, out); err != nil {
		t.Fatal(err)
	}
	if got := listFiles(t, out); len(got) != 1 || got[0] != "bash/changelog.Debian" {
		t.Fatalf("outputs %q, want exactly [bash/changelog.Debian]", got)
	}
	if b, _ := os.ReadFile(filepath.Join(out, "bash", "changelog.Debian")); string(b) != "bash (5.2) unstable\n" {
		t.Fatalf("output %q", b)
	}

	for _, tc := range []struct {
		name, wantErr string
		args          []string
	}{
		{name: "no .gz", wantErr: "no .gz suffix", args: []string{write("p/changelog", []byte("x")), filepath.Join(out, "o")}},
		{name: "corrupt", wantErr: "p/bad.gz", args: []string{write("p/bad.gz", []byte("not gzip")), filepath.Join(out, "o")}},
		{name: "outside /in", wantErr: "not below", args: []string{filepath.Join(out, "x.gz"), filepath.Join(out, "o")}},
		{name: "two inputs", wantErr: "want 2 arguments", args: []string{good, good, filepath.Join(out, "o")}},
	} {
		out := t.TempDir()
		err := run(tc.args, in, out)
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.wantErr)
		}
		if got := listFiles(t, out); len(got) != 0 {
			t.Errorf("%s: a failed run left %q", tc.name, got)
		}
	}
}

// TestAgainstZcat decompresses every /usr/share/doc/*/changelog*.gz on this machine and compares
// the result with zcat's.
func TestAgainstZcat(t *testing.T) {
	files, _ := filepath.Glob("/usr/share/doc/*/changelog*.gz")
	if len(files) == 0 {
		t.Skip("no /usr/share/doc/*/changelog*.gz on this machine")
	}
	if _, err := exec.LookPath("zcat"); err != nil {
		t.Skip("no zcat")
	}
	if testing.Short() && len(files) > 50 {
		files = files[:50]
	}
	for _, f := range files {
		want, err := exec.Command("zcat", f).Output()
		if err != nil {
			t.Logf("%s: zcat: %v (skipped)", f, err)
			continue
		}
		r, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		n, err := gunzip(h, r)
		r.Close()
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if wantSum := sha256.Sum256(want); n != int64(len(want)) || !bytes.Equal(h.Sum(nil), wantSum[:]) {
			t.Errorf("%s: %d bytes differing from zcat's %d", f, n, len(want))
		}
	}
}
