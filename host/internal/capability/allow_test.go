package capability

import (
	"errors"
	"net/netip"
	"testing"
)

func TestAllowlist(t *testing.T) {
	al, err := ParseAllowlist([]string{"10.0.0.5:11211", "[::1]:80", "Cache.Example.com.:11211", "*.svc.local:443", "127.0.0.1:9000"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		addr string
		ok   bool
		name string
	}{
		{"10.0.0.5:11211", true, ""},
		{"10.0.0.5:11212", false, ""},
		{"[::ffff:10.0.0.5]:11211", true, ""},
		{"[::1]:80", true, ""},
		{"cache.example.com:11211", true, "cache.example.com"},
		{"CACHE.example.com.:11211", true, "cache.example.com"},
		{"cache.example.com:11212", false, ""},
		{"a.svc.local:443", true, "a.svc.local"},
		{"a.b.svc.local:443", true, "a.b.svc.local"},
		{"svc.local:443", false, ""},
		{"evil-svc.local:443", false, ""},
		{"0.0.0.0:11211", false, ""},
	} {
		tgt, err := al.Check(tc.addr)
		if (err == nil) != tc.ok || tgt.Name != tc.name {
			t.Errorf("Check(%q) = %+v, %v; want ok=%v name=%q", tc.addr, tgt, err, tc.ok, tc.name)
		}
		if err != nil && tc.addr != "" && !errors.Is(err, ErrNotAllowed) {
			t.Errorf("Check(%q): %v does not wrap ErrNotAllowed", tc.addr, err)
		}
	}
	for _, tc := range []struct {
		ip   string
		port uint16
		ok   bool
	}{
		{"93.184.216.34", 443, true},
		{"10.1.2.3", 443, true},
		{"127.0.0.1", 443, false},
		{"127.0.0.1", 9000, true}, // listed literally
		{"169.254.169.254", 80, false},
		{"::", 80, false},
		{"fe80::1", 80, false},
		{"224.0.0.1", 80, false},
	} {
		if got := al.AddrAllowed(netip.MustParseAddr(tc.ip), tc.port); got != tc.ok {
			t.Errorf("AddrAllowed(%s, %d) = %v", tc.ip, tc.port, got)
		}
	}
	for _, bad := range []string{"nohost", "host:0", "host:70000", ":80", "bad_name!:80", "[fe80::1%eth0]:80", "host:+80"} {
		if _, err := ParseAllowlist([]string{bad}); err == nil {
			t.Errorf("ParseAllowlist(%q) accepted", bad)
		}
	}
}

// FuzzAllowlist checks that parsing and checking untrusted entries and dial addresses never
// panics, that a literal entry admits itself, and that a check only admits what a list holds.
func FuzzAllowlist(f *testing.F) {
	for _, s := range [][2]string{{"10.0.0.5:11211", "10.0.0.5:11211"}, {"*.a.b:1", "x.a.b:1"}, {"[::1]:2", "[::1]:2"}, {"h:3", "H.:3"}, {"a:1", "a:01"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, entry, addr string) {
		al, err := ParseAllowlist([]string{entry})
		if err != nil {
			return
		}
		if ap, err := netip.ParseAddrPort(entry); err == nil && !ap.Addr().IsUnspecified() {
			if _, err := al.Check(ap.String()); err != nil {
				t.Fatalf("literal entry %q does not admit itself: %v", entry, err)
			}
		}
		tgt, err := al.Check(addr)
		if err != nil {
			return
		}
		empty, _ := ParseAllowlist(nil)
		if _, err := empty.Check(addr); err == nil {
			t.Fatalf("empty list admitted %q", addr)
		}
		if tgt.Name == "" && !tgt.Addr.IsValid() {
			t.Fatalf("admitted %q with no target", addr)
		}
	})
}
