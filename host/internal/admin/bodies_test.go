package admin

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestAdminBodyLimitsPerRoute: each admin route takes bodies up to its own limit; past it the
// answer is 413 naming the limit and the route, and the connection closes (the rest of the
// body is unread). With "Expect: 100-continue" a body announced past the limit is refused
// before it is sent.
func TestAdminBodyLimitsPerRoute(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Token = "tok"
	cfg.AppTokens = map[string]string{"app": "app-token-0123456789"}
	cfg.MaxAdminBody = 256 << 10
	_, adminAddr, _, _ := hostileServer(t, cfg)
	chunked := func(n int) string {
		var b bytes.Buffer
		for n > 0 {
			k := min(n, 16<<10)
			fmt.Fprintf(&b, "%x\r\n%s\r\n", k, bytes.Repeat([]byte("y"), k))
			n -= k
		}
		return b.String() + "0\r\n\r\n"
	}
	for _, c := range []struct {
		name, head, body, status, names string
	}{
		{"scale past 64 KiB, announced", "POST /v1/modules/main/scale HTTP/1.1\r\nAuthorization: Bearer tok\r\nContent-Length: 65537\r\n\r\n",
			strings.Repeat("y", 16<<10), "413", "request body larger than the 65536-byte limit of POST /v1/modules/main/scale"},
		{"scale past 64 KiB, chunked", "POST /v1/modules/main/scale HTTP/1.1\r\nAuthorization: Bearer tok\r\nTransfer-Encoding: chunked\r\n\r\n",
			chunked(65537), "413", "65536-byte limit of POST /v1/modules/main/scale"},
		{"campaign by an app past 64 KiB", "POST /v1/election/e/campaign HTTP/1.1\r\nAuthorization: Bearer app-token-0123456789\r\nContent-Length: 70000\r\n\r\n",
			strings.Repeat("y", 16<<10), "413", "65536-byte limit of POST /v1/election/e/campaign"},
		{"wasm upload past MaxAdminBody", "PUT /v1/modules/main/wasm HTTP/1.1\r\nAuthorization: Bearer tok\r\nContent-Length: 262145\r\n\r\n",
			strings.Repeat("y", 16<<10), "413", "262144-byte limit of PUT /v1/modules/{name}/wasm"},
		{"a GET with a body past 64 KiB", "GET /healthz HTTP/1.1\r\nContent-Length: 65537\r\n\r\n",
			strings.Repeat("y", 16<<10), "413", "65536-byte limit of GET /healthz"},
		{"expect-continue past the limit: refused before the body", "POST /v1/modules/main/scale HTTP/1.1\r\nAuthorization: Bearer tok\r\nExpect: 100-continue\r\nContent-Length: 65537\r\n\r\n",
			"", "413", ""},
		{"an app token on an operator route, expect-continue", "PUT /v1/modules/main/wasm HTTP/1.1\r\nAuthorization: Bearer app-token-0123456789\r\nExpect: 100-continue\r\nContent-Length: 100\r\n\r\n",
			"", "401", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			conn := dial(t, adminAddr)
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			head := strings.Replace(c.head, "HTTP/1.1\r\n", "HTTP/1.1\r\nHost: x\r\n", 1)
			if _, err := io.WriteString(conn, head); err != nil {
				t.Fatal(err)
			}
			go io.WriteString(conn, c.body) // the server may stop reading
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatalf("reading the answer: %v", err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if fmt.Sprint(resp.StatusCode) != c.status || !resp.Close || !strings.Contains(string(b), c.names) {
				t.Fatalf("got %d, close %v, %q; want %s, close, naming %q", resp.StatusCode, resp.Close, b, c.status, c.names)
			}
		})
	}
}

// TestExpectContinueRefusals: "Expect: 100-continue" is answered as the request itself would
// be: 403 where no token could be right (no admin token configured), 401 where one could.
func TestExpectContinueRefusals(t *testing.T) {
	cfg := DefaultConfig()
	cfg.AppTokens = map[string]string{"app": "app-token-0123456789"} // and no admin token
	_, adminAddr, _, _ := hostileServer(t, cfg)
	for _, c := range []struct{ name, head, status string }{
		{"operator route, no admin token configured", "POST /v1/modules/main/stop HTTP/1.1\r\nAuthorization: Bearer app-token-0123456789\r\n", "403"},
		{"election without a token", "POST /v1/election/e/campaign HTTP/1.1\r\n", "401"},
		{"election with a wrong token", "POST /v1/election/e/campaign HTTP/1.1\r\nAuthorization: Bearer nope\r\n", "401"},
	} {
		t.Run(c.name, func(t *testing.T) {
			conn := dial(t, adminAddr)
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			// A loopback Host: this host has no admin token, so other names get 421 (rebinding.go).
			io.WriteString(conn, c.head+"Host: localhost\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n")
			status, err := bufio.NewReader(conn).ReadString('\n')
			if err != nil || !strings.Contains(status, " "+c.status+" ") {
				t.Fatalf("got %q, %v; want %s", status, err, c.status)
			}
		})
	}
}
