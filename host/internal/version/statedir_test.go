package version

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestStampStateDir(t *testing.T) {
	cur := strconv.Itoa(StateFormat) + "\n"
	for _, tc := range []struct {
		name    string
		stamp   *string // nil: no stamp file
		want    string  // the stamp after
		errIs   error
		errText string
	}{
		{name: "no stamp: format 1, stamped", want: cur},
		{name: "same format", stamp: ptr(cur), want: cur},
		{name: "newer format: refused, untouched", stamp: ptr(strconv.Itoa(StateFormat+1) + "\n"), want: strconv.Itoa(StateFormat+1) + "\n",
			errIs: ErrStateFormat, errText: "state format " + strconv.Itoa(StateFormat+1)},
		{name: "not a number", stamp: ptr("two\n"), want: "two\n", errText: `holds "two"`},
		{name: "zero", stamp: ptr("0"), want: "0", errText: `holds "0"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, StateFormatFile)
			if tc.stamp != nil {
				if err := os.WriteFile(path, []byte(*tc.stamp), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			err := StampStateDir(dir)
			if tc.errText == "" && err != nil {
				t.Fatalf("StampStateDir: %v", err)
			}
			if tc.errText != "" && (err == nil || !strings.Contains(err.Error(), tc.errText) || !strings.Contains(err.Error(), dir)) {
				t.Fatalf("StampStateDir: %v, want an error naming %s and %q", err, dir, tc.errText)
			}
			if tc.errIs != nil && !errors.Is(err, tc.errIs) {
				t.Fatalf("StampStateDir: %v, want %v", err, tc.errIs)
			}
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tc.want {
				t.Fatalf("stamp %q, want %q", b, tc.want)
			}
			if m, _ := filepath.Glob(filepath.Join(dir, StateFormatFile+".*")); len(m) > 0 {
				t.Fatalf("left behind %v", m)
			}
		})
	}
}

func ptr(s string) *string { return &s }
