package capability

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Allowlist is a parsed list of outbound destinations, each "host:port". Matching is exact:
//
//   - an IP literal entry ("10.0.0.5:11211", "[::1]:11211") allows a dial to exactly that
//     address and port;
//   - a name entry ("cache.example.com:11211") allows a dial to that name (case-insensitive, a
//     trailing dot ignored) and port; "*.example.com:443" allows any name below example.com
//     (not example.com itself);
//   - a dial to an IP literal is allowed only by an IP literal entry, never by a name that
//     happens to resolve to it.
//
// A name that is allowed is resolved by the host and every address it dials is checked again
// (see Allowlist.AddrAllowed), so DNS cannot smuggle a denied target in: an allowed name that
// resolves to a loopback, unspecified, link-local or multicast address (the host itself, cloud
// metadata endpoints) is refused unless that address and port are listed literally too.
type Allowlist struct {
	names map[string]bool // "name:port"
	wild  []wildEntry
	addrs map[netip.AddrPort]bool
}

type wildEntry struct {
	suffix string // ".example.com"
	port   uint16
}

// ParseAllowlist parses entries as the pod spec's network.allow writes them. Every bad entry is
// reported.
func ParseAllowlist(entries []string) (*Allowlist, error) {
	a := &Allowlist{names: map[string]bool{}, addrs: map[netip.AddrPort]bool{}}
	var bad []string
	for _, e := range entries {
		if err := a.add(e); err != nil {
			bad = append(bad, err.Error())
		}
	}
	if len(bad) > 0 {
		return nil, fmt.Errorf("network allowlist: %s", strings.Join(bad, "; "))
	}
	return a, nil
}

func (a *Allowlist) add(e string) error {
	host, port, err := splitHostPort(e)
	if err != nil {
		return fmt.Errorf("%q: %w", e, err)
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		if ip.Zone() != "" {
			return fmt.Errorf("%q: zoned addresses are not allowed", e)
		}
		a.addrs[netip.AddrPortFrom(ip.Unmap(), port)] = true
		return nil
	}
	name := normName(host)
	if rest, ok := strings.CutPrefix(name, "*."); ok {
		if !validName(rest) {
			return fmt.Errorf("%q: invalid host name", e)
		}
		a.wild = append(a.wild, wildEntry{suffix: "." + rest, port: port})
		return nil
	}
	if !validName(name) {
		return fmt.Errorf("%q: invalid host name", e)
	}
	a.names[name+":"+strconv.Itoa(int(port))] = true
	return nil
}

// splitHostPort splits "host:port" and checks the port (1..65535).
func splitHostPort(s string) (string, uint16, error) {
	host, ps, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, fmt.Errorf("not host:port: %w", err)
	}
	p, err := strconv.ParseUint(ps, 10, 16)
	if err != nil || p == 0 || ps[0] == '+' {
		return "", 0, fmt.Errorf("invalid port %q", ps)
	}
	if host == "" {
		return "", 0, fmt.Errorf("empty host")
	}
	return host, uint16(p), nil
}

func normName(s string) string { return strings.ToLower(strings.TrimSuffix(s, ".")) }

// validName accepts DNS names: labels of letters, digits, '-' and '_', 1..63 bytes, at most 253
// bytes in all.
func validName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, l := range strings.Split(s, ".") {
		if l == "" || len(l) > 63 {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// Target is a dial destination the allowlist admitted: either a literal address, or a name to
// resolve (whose addresses must then pass AddrAllowed).
type Target struct {
	Addr netip.AddrPort // set for a literal
	Name string         // set for a name
	Port uint16
}

// Check parses a dial address and decides whether it is allowed.
func (a *Allowlist) Check(addr string) (Target, error) {
	host, port, err := splitHostPort(addr)
	if err != nil {
		return Target{}, fmt.Errorf("dial %q: %w", addr, err)
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		ap := netip.AddrPortFrom(ip.Unmap(), port)
		if ip.Zone() != "" || !a.addrs[ap] || ip.IsUnspecified() {
			return Target{}, fmt.Errorf("dial %q: %w: not on the module's network allowlist", addr, ErrNotAllowed)
		}
		return Target{Addr: ap, Port: port}, nil
	}
	name := normName(host)
	if !validName(name) {
		return Target{}, fmt.Errorf("dial %q: invalid host name", addr)
	}
	if a.names[name+":"+strconv.Itoa(int(port))] {
		return Target{Name: name, Port: port}, nil
	}
	for _, w := range a.wild {
		if w.port == port && strings.HasSuffix(name, w.suffix) {
			return Target{Name: name, Port: port}, nil
		}
	}
	return Target{}, fmt.Errorf("dial %q: %w: not on the module's network allowlist", addr, ErrNotAllowed)
}

// AddrAllowed says whether an address a permitted name resolved to may be dialled: any address
// but loopback, unspecified, link-local and multicast ones, which need a literal entry.
func (a *Allowlist) AddrAllowed(ip netip.Addr, port uint16) bool {
	ip = ip.Unmap()
	if ip.IsUnspecified() {
		return false
	}
	if a.addrs[netip.AddrPortFrom(ip, port)] {
		return true
	}
	return !(ip.IsLoopback() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
		ip.IsInterfaceLocalMulticast() || ip.IsMulticast())
}
