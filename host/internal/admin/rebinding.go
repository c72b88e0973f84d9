package admin

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/valyala/fasthttp"
)

// DNS rebinding. A host started without an admin token authenticates no one: it serves logs,
// blobs and profiles to whoever reaches its admin listener, and relies on that listener being
// loopback. A web page defeats that: attacker.example serves a script, then re-points its own
// name at 127.0.0.1, and the victim's browser, still treating the page as same-origin, reads
// the admin API and hands the answers to the script. The request it sends names the attacker's
// domain in its Host header, which no client of a loopback listener needs. So without a token
// the admin listener serves only names that cannot be anyone else's: the loopback names and
// the address the request came in on (or the one the listener was given), all IP literals or
// "localhost", which no DNS answer can re-point.
//
// With a token nothing changes: what matters is guarded by the token, which a browser does not
// add to a page's requests by itself. For the same reason a request carrying an app's token
// (the election sidecar's) passes. No Origin or Sec-Fetch-Site check is needed: without a token
// every state-changing route answers 403 (authorized), and those an app token opens need its
// bearer header, which a cross-site page can neither know nor make a browser send.

// localHost reports whether the Host header host names this server in a way DNS cannot
// re-point: "localhost", a loopback address (127.0.0.0/8, ::1), with any port, or one of the
// addresses in own (host:port, as net.Addr.String gives them) with its port.
func localHost(host string, own ...string) bool {
	name, port, ok := splitHost(host)
	if !ok {
		return false
	}
	if strings.EqualFold(name, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(name)
	if err != nil || ip.Zone() != "" {
		return false
	}
	ip = ip.Unmap()
	if ip.IsLoopback() {
		return true
	}
	for _, a := range own {
		ap, err := netip.ParseAddrPort(a)
		if err != nil || ap.Addr().Unmap() != ip {
			continue
		}
		// No port in Host means the scheme's default; the admin listener speaks plain HTTP.
		if port == strconv.Itoa(int(ap.Port())) || port == "" && ap.Port() == 80 {
			return true
		}
	}
	return false
}

// splitHost splits a Host header into its name (brackets of an IPv6 literal removed) and port
// ("" when none). ok is false when it is not of that form.
func splitHost(host string) (name, port string, ok bool) {
	switch {
	case strings.HasPrefix(host, "["):
		end := strings.IndexByte(host, ']')
		if end < 0 {
			return "", "", false
		}
		name, rest := host[1:end], host[end+1:]
		if rest == "" {
			return name, "", true
		}
		port, ok = strings.CutPrefix(rest, ":")
		return name, port, ok && digits(port)
	case strings.Count(host, ":") > 1:
		return host, "", true // a bare IPv6 literal: malformed, but only an IP can match it
	case strings.Contains(host, ":"):
		name, port, err := net.SplitHostPort(host)
		return name, port, err == nil && digits(port)
	}
	return host, "", host != ""
}

func digits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// foreignHost reports whether an admin request must be refused as possibly DNS-rebound: the
// host has no admin token, and the request names another host than this one and carries no
// app token.
func (s *Server) foreignHost(ctx *fasthttp.RequestCtx) bool {
	if s.cfg.Token != "" {
		return false
	}
	host := string(ctx.Request.Header.Host())
	// Browsers always send Host; a request without one (HTTP/1.0) comes from no web page.
	if host == "" || localHost(host, ctx.LocalAddr().String(), s.adminAddr) {
		return false
	}
	return s.callerOf(&ctx.Request.Header).app == ""
}

// hostServed answers 421 to a request foreignHost refuses, saying why and what to do.
func (s *Server) hostServed(ctx *fasthttp.RequestCtx) bool {
	if !s.foreignHost(ctx) {
		return true
	}
	writeError(ctx, fasthttp.StatusMisdirectedRequest, fmt.Errorf(
		"admin API refuses Host %q: this host has no admin token, so its admin API answers only to localhost, "+
			"loopback addresses and its own address (%s), which protects it from DNS rebinding "+
			"(a web page re-pointing its own name at this host); start wasmpod with an admin token "+
			"(--token-file or WASMPOD_TOKEN) to serve other names", ctx.Request.Header.Host(), ctx.LocalAddr()))
	return false
}
