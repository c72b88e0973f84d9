package admin

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// rawGet sends GET path to the server at addr with exactly the Host header host (none when
// empty, then as HTTP/1.0, where Host is optional) and the bearer token when not empty.
func rawGet(t *testing.T, addr, path, host, token string) (int, string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	req := "GET " + path + " HTTP/1.1\r\nHost: " + host + "\r\n"
	if host == "" {
		req = "GET " + path + " HTTP/1.0\r\n"
	}
	if token != "" {
		req += "Authorization: Bearer " + token + "\r\n"
	}
	if _, err := io.WriteString(c, req+"Connection: close\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestNoTokenHostRefusesForeignHostNames: a host without an admin token guards its logs, blobs
// and profiles with nothing but its loopback bind, which DNS rebinding gets past: a web page
// on attacker.example re-resolves its name to 127.0.0.1 and reads the admin API with the
// browser's help, sending "Host: attacker.example". Before, such requests got 200 with the
// heap profile and the logs. Now only loopback names and the address the request came in on
// are served; other names get 421 saying why. A request carrying a credential (the admin token
// on a host that has one, an app's token) is not the browser of a rebinding page, and is
// served as before.
func TestNoTokenHostRefusesForeignHostNames(t *testing.T) {
	cfg := DefaultConfig()
	cfg.AppTokens = map[string]string{"billing": "app-tok"}
	base, _ := secretServerWith(t, cfg)
	addr := strings.TrimPrefix(base, "http://")
	_, port, _ := net.SplitHostPort(addr)
	withToken, _ := secretServer(t, "tok")
	tokAddr := strings.TrimPrefix(withToken, "http://")
	_, tokPort, _ := net.SplitHostPort(tokAddr)

	cases := []struct {
		name, host, token string
		tokenHost         bool // the host has an admin token
		want              int
	}{
		{"listen address", addr, "", false, 200},
		{"listen address without port", "127.0.0.1", "", false, 200},
		{"localhost", "localhost", "", false, 200},
		{"localhost with port", "localhost:" + port, "", false, 200},
		{"localhost in capitals", "LocalHost:" + port, "", false, 200},
		{"other loopback address", "127.9.8.7:" + port, "", false, 200},
		{"IPv6 loopback", "[::1]", "", false, 200},
		{"IPv6 loopback with port", "[::1]:" + port, "", false, 200},
		{"no Host (HTTP/1.0; browsers always send one)", "", "", false, 200},
		{"app token from a foreign name", "attacker.example:" + port, "app-tok", false, 200},
		{"rebinding name", "attacker.example:" + port, "", false, 421},
		{"rebinding name without port", "attacker.example", "", false, 421},
		{"name starting with localhost", "localhost.attacker.example:" + port, "", false, 421},
		{"name ending in localhost", "attacker.localhost:" + port, "", false, 421},
		{"name made of a loopback address", "127.0.0.1.nip.io:" + port, "", false, 421},
		{"other address", "10.0.0.1:" + port, "", false, 421},
		{"wrong app token", "attacker.example:" + port, "nope", false, 421},
		{"token host, foreign name, no token", "attacker.example:" + tokPort, "", true, 401},
		{"token host, foreign name, admin token", "attacker.example:" + tokPort, "tok", true, 200},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := addr
			if c.tokenHost {
				a = tokAddr
			}
			for _, path := range []string{"/debug/pprof/heap", "/v1/modules/hello/logs", "/v1/modules", "/readyz"} {
				want := c.want
				if c.tokenHost && c.token == "" && (path == "/v1/modules" || path == "/readyz") {
					want = 200 // public reads stay public on a host with a token
				}
				code, body := rawGet(t, a, path, c.host, c.token)
				if path == "/readyz" && want == 200 && code == 503 {
					code = 200 // readiness is not what this test is about
				}
				if code != want {
					t.Errorf("GET %s with Host %q: %d %.200q; want %d", path, c.host, code, body, want)
				}
				if code == 421 && (!strings.Contains(body, "DNS rebinding") || !strings.Contains(body, "token")) {
					t.Errorf("GET %s with Host %q: 421 body %.200q does not say why (DNS rebinding) nor how (a token)", path, c.host, body)
				}
			}
		})
	}
}

// TestLocalHost: the names a host without a token answers to when its listener is not on
// loopback (10.1.2.3:9901 here, reached on that address), which a live test on 127.0.0.1
// cannot show: its own address with its port, loopback names, nothing a DNS answer can point.
func TestLocalHost(t *testing.T) {
	own := []string{"10.1.2.3:9901", "0.0.0.0:9901"}
	for host, want := range map[string]bool{
		"10.1.2.3:9901":            true,
		"0.0.0.0:9901":             true, // the listen address as given (curl http://0.0.0.0:9901)
		"localhost:9901":           true,
		"[::1]:1":                  true,
		"::1":                      true,
		"[::ffff:127.0.0.1]:9901":  true,
		"10.1.2.3":                 false, // port 80, not the listener's
		"10.1.2.3:9902":            false,
		"10.1.2.4:9901":            false,
		"[::ffff:10.1.2.3]:9901":   true,
		"printer.lan:9901":         false,
		"localhost:x":              false,
		"localhost:":               false,
		"[::1]x":                   false,
		"[::1":                     false,
		"[fe80::1%25eth0]:9901":    false,
		"127.0.0.1:9901@evil.test": false,
	} {
		if got := localHost(host, own...); got != want {
			t.Errorf("localHost(%q, %q) = %v; want %v", host, own, got, want)
		}
	}
}
