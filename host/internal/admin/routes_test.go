package admin

import (
	"strings"
	"testing"
)

func TestModulePath(t *testing.T) {
	cases := []struct {
		path, name, rest string
		ok               bool
	}{
		{"/v1/modules", "", "", true},
		{"/v1/modules/", "", "", true},
		{"/v1/modules/web", "web", "", true},
		{"/v1/modules/web/logs", "web", "logs", true},
		{"/v1/modules/web/scale", "web", "scale", true},
		{"/v1/modules/web/logs/extra", "", "", false},
		{"/v1/modules/" + strings.Repeat("a", 64), "", "", false},
		{"/v1/modules/we%2Fb", "", "", false},
		{"/v1/modulesx", "", "", false},
		{"/v2/modules/web", "", "", false},
	}
	for _, tc := range cases {
		name, rest, ok := modulePath(tc.path)
		if name != tc.name || rest != tc.rest || ok != tc.ok {
			t.Errorf("modulePath(%q) = %q, %q, %v; want %q, %q, %v", tc.path, name, rest, ok, tc.name, tc.rest, tc.ok)
		}
	}
}

func TestParseScale(t *testing.T) {
	cases := []struct {
		body string
		n    int
		err  string
	}{
		{`{"replicas": 3}`, 3, ""},
		{`{"replicas": 0}`, 0, ""},
		{`{}`, 0, `missing field "replicas"`},
		{`{"replicas": 3, "x": 1}`, 0, "unknown field"},
		{`{"replicas": "3"}`, 0, "must be"},
		{`{"replicas": 3} {}`, 0, "trailing data"},
		{``, 0, "must be"},
		{strings.Repeat(" ", 5000), 0, "larger than 4 KiB"},
	}
	for _, tc := range cases {
		n, err := parseScale([]byte(tc.body))
		if tc.err == "" {
			if err != nil || n != tc.n {
				t.Errorf("parseScale(%q) = %d, %v; want %d", tc.body, n, err, tc.n)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("parseScale(%q) error %v, want one containing %q", tc.body, err, tc.err)
		}
	}
}

// FuzzManagementBodies: the scale body and module paths come from the network; they must be
// refused with an error, never panic, and an accepted path names a valid module.
func FuzzManagementBodies(f *testing.F) {
	f.Add([]byte(`{"replicas": 3}`), "/v1/modules/web/scale")
	f.Add([]byte(`{"replicas": -1}`), "/v1/modules/")
	f.Fuzz(func(t *testing.T, body []byte, path string) {
		_, _ = parseScale(body)
		name, rest, ok := modulePath(path)
		if ok && (len(name) > 63 || strings.Contains(rest, "/")) {
			t.Fatalf("modulePath(%q) accepted name %q rest %q", path, name, rest)
		}
	})
}
