package admin

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// smugglingCases are requests a front end and this host could frame differently (RFC 9112
// §6.1, §6.3, §5.2, §3.2.2, §7.1): each is followed on the same connection by a second request,
// "GET /smuggled", that no one sent if the host reads the first one another way. Each must be
// answered 400 with the connection closed, and nothing after it served.
//
// auth is a header line sent with each request (the admin token on the admin listener, so that
// the body is read at all: without it the admin listener answers 401 on the headers and closes
// the connection with the body unread).
func smugglingCases(path, auth string) []struct{ name, req string } {
	const smuggled = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
	body := "0\r\n\r\n" + smuggled
	post := func(headers, body string) string {
		return "POST " + path + " HTTP/1.1\r\nHost: x\r\n" + auth + headers + "\r\n" + body
	}
	return []struct{ name, req string }{
		{"two Content-Length headers with different values",
			post(fmt.Sprintf("Content-Length: 0\r\nContent-Length: %d\r\n", len(body)), body)},
		{"two Content-Length headers, the other order",
			post(fmt.Sprintf("Content-Length: %d\r\nContent-Length: 0\r\n", len(body)), body)},
		{"a Content-Length list with different values",
			post(fmt.Sprintf("Content-Length: 0, %d\r\n", len(body)), body)},
		{"a signed Content-Length", post(fmt.Sprintf("Content-Length: +%d\r\n", len(body)), body)},
		{"Transfer-Encoding gzip (not chunked last)", post("Transfer-Encoding: gzip\r\n", body)},
		{"Transfer-Encoding identity", post("Transfer-Encoding: identity\r\n", body)},
		{"Transfer-Encoding chunked, identity", post("Transfer-Encoding: chunked, identity\r\n", body)},
		{"Transfer-Encoding gzip, chunked", post("Transfer-Encoding: gzip, chunked\r\n", body)},
		{"two Transfer-Encoding headers", post("Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n", body)},
		{"Transfer-Encoding xchunked", post("Transfer-Encoding: xchunked\r\n", body)},
		{"Transfer-Encoding with a space before the colon", post("Transfer-Encoding : chunked\r\n", body)},
		{"Transfer-Encoding folded (obs-fold)", post("Transfer-Encoding:\r\n chunked\r\n", body)},
		{"another header folded (obs-fold)", post("X-Note: a\r\n\tb\r\nContent-Length: 0\r\n", smuggled)},
		{"chunk size not hex", post("Transfer-Encoding: chunked\r\n", "zz\r\nhello\r\n0\r\n\r\n"+smuggled)},
		{"chunk size negative", post("Transfer-Encoding: chunked\r\n", "-5\r\nhello\r\n0\r\n\r\n"+smuggled)},
		{"chunk size with 0x", post("Transfer-Encoding: chunked\r\n", "0x5\r\nhello\r\n0\r\n\r\n"+smuggled)},
		{"chunk size overflowing 64 bits", post("Transfer-Encoding: chunked\r\n", "10000000000000005\r\nhello\r\n0\r\n\r\n"+smuggled)},
		{"chunk data longer than its size", post("Transfer-Encoding: chunked\r\n", "3\r\nhello\r\n0\r\n\r\n"+smuggled)},
		{"absolute-form to another host",
			"GET http://evil.example" + path + " HTTP/1.1\r\nHost: x\r\n\r\n" + smuggled},
		{"two Host headers", "GET " + path + " HTTP/1.1\r\nHost: x\r\nHost: evil.example\r\n\r\n" + smuggled},
		{"no Host header (HTTP/1.1)", "GET " + path + " HTTP/1.1\r\n\r\n" + smuggled},
	}
}

// TestSmugglingVariantsRefused: every variant of smugglingCases on both listeners, with a raw
// TCP client.
func TestSmugglingVariantsRefused(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Token = "tok"
	_, adminAddr, ingressAddr, served := hostileServer(t, cfg)
	for _, l := range []struct{ name, addr, path, auth string }{
		{"ingress", ingressAddr, "/front", ""},
		{"admin", adminAddr, "/healthz", "Authorization: Bearer tok\r\n"},
	} {
		for _, c := range smugglingCases(l.path, l.auth) {
			t.Run(l.name+"/"+c.name, func(t *testing.T) {
				wantRefusedAndClosed(t, l.addr, c.req)
			})
		}
	}
	if n := servedCount(served, "/smuggled"); n != 0 {
		t.Errorf("ingress served %d smuggled requests; want 0", n)
	}
}

// TestWellFramedRequestsServed: what the checks must not refuse, on the ingress listener:
// keep-alive requests framed by one Content-Length, by chunked (with an extension and a
// trailer), repeated equal lengths, absolute-form naming the Host, HTTP/1.0 without Host.
func TestWellFramedRequestsServed(t *testing.T) {
	_, _, ingressAddr, _ := hostileServer(t, DefaultConfig())
	for _, c := range []struct{ name, req string }{
		{"Content-Length", "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"},
		{"chunked", "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"},
		{"chunked, upper case, extension and trailer", "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nX-T: 1\r\n\r\n"},
		{"absolute-form naming the Host", "GET http://x/a HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"absolute-form naming the Host with its port", "GET http://x:80/a HTTP/1.1\r\nHost: X:80\r\n\r\n"},
		{"HTTP/1.0 without Host", "GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"},
		{"a header value with a tab", "GET /a HTTP/1.1\r\nHost: x\r\nX-Note: a\tb\r\n\r\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			conn := dial(t, ingressAddr)
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			br := bufio.NewReader(conn)
			for i := range 2 { // twice: the connection stays usable
				if _, err := io.WriteString(conn, c.req); err != nil {
					t.Fatal(err)
				}
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatalf("request %d: reading the answer: %v", i, err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || !strings.HasPrefix(string(b), "served /a") {
					t.Fatalf("request %d: %d %q; want 200 served /a", i, resp.StatusCode, b)
				}
			}
		})
	}
}
