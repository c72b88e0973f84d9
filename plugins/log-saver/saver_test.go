package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func appendLine(t *testing.T, path, line string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(line + "\n")
	f.Close()
}

// TestExactlyOnce interleaves appends with ticks, including a writer that opened the log
// before a rotation and writes after it, and a crash between archiving and removal.
func TestExactlyOnce(t *testing.T) {
	dir := t.TempDir()
	s := &Saver{Log: filepath.Join(dir, "access.log"), Archive: filepath.Join(dir, "archive"), Settle: 10 * time.Second}
	now := time.UnixMilli(1_700_000_000_000)
	var want []string
	n := 0
	write := func(k int) {
		for range k {
			n++
			l := fmt.Sprintf("line %d", n)
			want = append(want, l)
			appendLine(t, s.Log, l)
		}
	}
	for step := range 20 {
		write(step % 4)
		if step == 7 { // a writer opened the log just before this rotation and writes after it
			f, err := os.OpenFile(s.Log, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.Tick(now); err != nil {
				t.Fatal(err)
			}
			n++
			want = append(want, fmt.Sprintf("line %d", n))
			fmt.Fprintf(f, "line %d\n", n)
			f.Close()
		} else if _, err := s.Tick(now); err != nil {
			t.Fatal(err)
		}
		if step == 12 { // crash after an archive's rename, before the rotated file's removal
			rs, _ := s.rotatedFiles()
			for _, r := range rs {
				if now.Sub(time.UnixMilli(r.ms)) >= s.Settle {
					src, _ := os.ReadFile(r.path)
					if _, err := s.archive(r); err != nil {
						t.Fatal(err)
					}
					os.WriteFile(r.path, src, 0o644)
				}
			}
		}
		now = now.Add(3 * time.Second)
	}
	for range 6 { // drain
		if _, err := s.Tick(now); err != nil {
			t.Fatal(err)
		}
		now = now.Add(5 * time.Second)
	}
	got, err := ReadArchive(s.Archive)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("archive holds %d lines, want %d:\n%v\nwant\n%v", len(got), len(want), got, want)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "access.log*")); len(left) != 0 {
		t.Fatalf("left behind: %v", left)
	}
}
