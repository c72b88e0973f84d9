package runtime

import (
	"net/url"
	"testing"
)

func TestHostPatterns(t *testing.T) {
	for _, tc := range []struct {
		patterns []string
		url      string
		want     bool
	}{
		{nil, "http://example.com/", false},
		{[]string{"example.com"}, "http://example.com/x", true},
		{[]string{"example.com"}, "https://EXAMPLE.com.:8443/x", true},
		{[]string{"example.com:443"}, "https://example.com/", true},
		{[]string{"example.com:443"}, "http://example.com/", false},
		{[]string{"example.com:8080"}, "http://example.com:8080/", true},
		{[]string{"*.example.com"}, "http://a.b.example.com/", true},
		{[]string{"*.example.com"}, "http://example.com/", false},
		{[]string{"*.example.com"}, "http://badexample.com/", false},
		{[]string{"127.0.0.1"}, "http://127.0.0.1:9/", true},
		{[]string{"[::1]:80"}, "http://[::1]/", true},
		{[]string{"[::1]"}, "http://[::2]/", false},
		{[]string{"example.com"}, "ftp://example.com/", false},
		{[]string{"example.com"}, "http://user@evil.com/", false},
	} {
		var ps []hostPattern
		for _, p := range tc.patterns {
			hp, err := parseHostPattern(p)
			if err != nil {
				t.Fatalf("%q: %v", p, err)
			}
			ps = append(ps, hp)
		}
		u, err := url.Parse(tc.url)
		if err != nil {
			t.Fatal(err)
		}
		if got := hostAllowed(ps, u); got != tc.want {
			t.Errorf("%v allows %s: %t, want %t", tc.patterns, tc.url, got, tc.want)
		}
	}
	for _, bad := range []string{"", "http://x", "a b", "x:0", "x:65536", "x:y", "::1", "[::1", "[nope]", "a.*.com", "*.", "x/y"} {
		if _, err := parseHostPattern(bad); err == nil {
			t.Errorf("pattern %q accepted", bad)
		}
	}
}

// FuzzHostPattern: parsing and matching never panic, and a pattern never allows a non-HTTP URL.
func FuzzHostPattern(f *testing.F) {
	for _, s := range []string{"example.com", "*.example.com:443", "[::1]:80", "127.0.0.1"} {
		f.Add(s, "http://example.com:443/")
	}
	f.Fuzz(func(t *testing.T, pattern, rawURL string) {
		p, err := parseHostPattern(pattern)
		if err != nil {
			return
		}
		u, err := url.Parse(rawURL)
		if err != nil {
			return
		}
		if hostAllowed([]hostPattern{p}, u) && u.Scheme != "http" && u.Scheme != "https" {
			t.Fatalf("%q allows %q", pattern, rawURL)
		}
	})
}

func TestMergeFrame(t *testing.T) {
	got := appendMergeFrame(nil, []Part{{Data: []byte("ab")}, {Missing: true}, {Data: []byte{}}})
	want := []byte{3, 0, 0, 0, 2, 0, 0, 0, 'a', 'b', 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0}
	if string(got) != string(want) {
		t.Fatalf("%x, want %x", got, want)
	}
}
