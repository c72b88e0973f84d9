package memcache

import (
	"bufio"
	"errors"
	"strings"
	"testing"
)

func TestReadGet(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		val      string
		found    bool
		err      error
	}{
		{"hit", "VALUE k 0 5\r\nhello\r\nEND\r\n", "hello", true, nil},
		{"hit with cas", "VALUE k 3 0 99\r\n\r\nEND\r\n", "", true, nil},
		{"binary value", "VALUE k 0 4\r\na\r\nb\r\nEND\r\n", "a\r\nb", true, nil},
		{"miss", "END\r\n", "", false, nil},
		{"server error", "SERVER_ERROR out of memory\r\n", "", false, ErrServer},
		{"error", "ERROR\r\n", "", false, ErrServer},
		{"other key", "VALUE x 0 1\r\na\r\nEND\r\n", "", false, ErrProtocol},
		{"too long", "VALUE k 0 99999999\r\n", "", false, ErrProtocol},
		{"negative", "VALUE k 0 -1\r\n", "", false, ErrProtocol},
		{"no CRLF after value", "VALUE k 0 1\r\nab\nEND\r\n", "", false, ErrProtocol},
		{"missing END", "VALUE k 0 1\r\na\r\nVALUE k 0 1\r\n", "", false, ErrProtocol},
		{"bare LF", "END\n", "", false, ErrProtocol},
		{"truncated", "VALUE k 0 10\r\nabc", "", false, nil}, // I/O error, checked below
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, found, err := ReadGet(bufio.NewReaderSize(strings.NewReader(tc.in), maxLine), "k", 1<<20)
			if tc.name == "truncated" {
				var ie ioErr
				if !errors.As(err, &ie) {
					t.Fatalf("truncated: %v, want an I/O error", err)
				}
				return
			}
			if !errors.Is(err, tc.err) || (tc.err == nil && err != nil) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if string(v) != tc.val || found != tc.found {
				t.Fatalf("got %q %v", v, found)
			}
		})
	}
}

func TestReadStore(t *testing.T) {
	for in, want := range map[string]error{"STORED\r\n": nil, "NOT_STORED\r\n": ErrNotStored, "CLIENT_ERROR bad data chunk\r\n": ErrServer, "HUH\r\n": ErrProtocol} {
		if err := ReadStore(bufio.NewReader(strings.NewReader(in))); !errors.Is(err, want) || (want == nil && err != nil) {
			t.Errorf("%q: %v, want %v", in, err, want)
		}
	}
}

func TestCheckKey(t *testing.T) {
	for k, ok := range map[string]bool{"a": true, strings.Repeat("k", 250): true, "": false, strings.Repeat("k", 251): false, "a b": false, "a\r\nflush_all": false} {
		if err := CheckKey(k); (err == nil) != ok {
			t.Errorf("CheckKey(%.20q) = %v", k, err)
		}
	}
}

// FuzzReadGet feeds arbitrary backend bytes to the response parser: it must not panic, must
// not return a value for another key or longer than the limit, and must classify every failure.
func FuzzReadGet(f *testing.F) {
	for _, s := range []string{"VALUE k 0 5\r\nhello\r\nEND\r\n", "END\r\n", "SERVER_ERROR x\r\n", "VALUE k 0 3 7\r\nabc\r\nEND\r\n", "VALUE k 0 2\r\nab"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v, found, err := ReadGet(bufio.NewReaderSize(strings.NewReader(string(b)), maxLine), "k", 64)
		if err != nil {
			var ie ioErr
			if !errors.Is(err, ErrProtocol) && !errors.Is(err, ErrServer) && !errors.As(err, &ie) {
				t.Fatalf("unclassified error %v", err)
			}
			return
		}
		if !found && v != nil || len(v) > 64 {
			t.Fatalf("got %q found=%v", v, found)
		}
		if found && !strings.HasPrefix(string(b), "VALUE k ") {
			t.Fatalf("found a value in %q", b)
		}
	})
}
