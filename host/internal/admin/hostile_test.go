package admin

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/wasmpod/wasmpod/cluster"
)

// The attacks of issue 12 on the admin and ingress listeners, each as an outsider's raw TCP
// client against real fasthttp servers on loopback sockets.

// hostileServer serves the admin listener (as New builds it, less the supervisor: only routes
// that refuse before touching it are used) and an ingress listener whose handler counts the
// requests it serves by path. It returns both addresses and the ingress's counts.
func hostileServer(t *testing.T, cfg Config) (s *Server, adminAddr, ingressAddr string, served *sync.Map) {
	t.Helper()
	cfg = cfg.withDefaults()
	s = &Server{cfg: cfg, log: cfg.Logger}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.admin = s.adminServer()
	served = new(sync.Map)
	s.ingress = s.server("wasmpod-ingress", func(ctx *fasthttp.RequestCtx) {
		n, _ := served.LoadOrStore(string(ctx.Path()), new(atomic.Int64))
		n.(*atomic.Int64).Add(1)
		ctx.SetBodyString("served " + string(ctx.Path()) + "\n")
	}, cfg.MaxIngressBody)
	aln, iln := listenLoopback(t), listenLoopback(t)
	s.Serve(aln, iln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	})
	return s, aln.Addr().String(), iln.Addr().String(), served
}

func servedCount(m *sync.Map, path string) int64 {
	if n, ok := m.Load(path); ok {
		return n.(*atomic.Int64).Load()
	}
	return 0
}

// TestSmuggledRequestRefused: a request framed both by Content-Length and by
// Transfer-Encoding is answered 400 and its connection closed (RFC 9112 §6.1), on both
// listeners, so the request hidden in its body is never served. Before, fasthttp read the body
// as chunked, answered 200 and served the rest as a second request.
func TestSmuggledRequestRefused(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Token = "tok"
	_, adminAddr, ingressAddr, served := hostileServer(t, cfg)
	smuggled := "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
	chunkedEnd := "0\r\n\r\n"
	body := chunkedEnd + smuggled
	for _, l := range []struct{ name, addr, path string }{
		{"ingress", ingressAddr, "/front"},
		{"admin", adminAddr, "/healthz"},
	} {
		for _, c := range []struct{ name, head string }{
			{"CL.TE (front end reads Content-Length, we read chunked)",
				fmt.Sprintf("POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n", l.path, len(body))},
			{"TE.CL (headers the other way round)",
				fmt.Sprintf("POST %s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: %d\r\n\r\n", l.path, len(body))},
			{"lower-case names",
				fmt.Sprintf("POST %s HTTP/1.1\r\nHost: x\r\ncontent-length: %d\r\ntransfer-encoding: chunked\r\n\r\n", l.path, len(body))},
			{"identity with a length",
				fmt.Sprintf("POST %s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\nContent-Length: %d\r\n\r\n", l.path, len(chunkedEnd))},
		} {
			t.Run(l.name+"/"+c.name, func(t *testing.T) {
				wantRefusedAndClosed(t, l.addr, c.head+body) // the smuggled request gets no answer
			})
		}
	}
	if n := servedCount(served, "/smuggled") + servedCount(served, "/front"); n != 0 {
		t.Errorf("ingress served %d of the attack's requests; want 0", n)
	}
}

// TestAdminRefusesBeforeBody: a request to a mutating admin route without the token is
// refused 401 on its headers, before its body is read: the client sends the headers of a
// 63 MiB upload and 64 KiB of it, then waits. Before, the host read the whole body into memory
// first (here the 64 KiB never grow, so the answer never came within the read timeout). With
// "Expect: 100-continue" the client is refused before it sends any of the body.
func TestAdminRefusesBeforeBody(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Token = "tok"
	cfg.ReadTimeout = time.Minute // the old host waits this long for the rest of the body
	_, adminAddr, _, _ := hostileServer(t, cfg)
	const announced = 63 << 20
	for _, route := range []string{"PUT /v1/modules/main/wasm", "POST /v1/modules/main/stop",
		"PUT /v1/blobs", "POST /v1/queue/pipelines/p/jobs", "POST /v1/election/e/campaign", "POST /healthz"} {
		for _, expect := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/expect-continue=%v", route, expect), func(t *testing.T) {
				conn := dial(t, adminAddr)
				defer conn.Close()
				conn.SetDeadline(time.Now().Add(20 * time.Second)) // far below ReadTimeout
				head := route + " HTTP/1.1\r\nHost: x\r\nContent-Length: " + fmt.Sprint(announced) + "\r\n"
				if expect {
					head += "Expect: 100-continue\r\n"
				}
				if _, err := io.WriteString(conn, head+"\r\n"); err != nil {
					t.Fatal(err)
				}
				if !expect {
					if _, err := conn.Write(make([]byte, 64<<10)); err != nil {
						t.Fatal(err)
					}
				}
				status, err := bufio.NewReader(conn).ReadString('\n')
				if err != nil {
					t.Fatalf("no answer before the body: %v", err)
				}
				if !strings.Contains(status, " 401 ") {
					t.Fatalf("answer %q; want 401", strings.TrimSpace(status))
				}
			})
		}
	}
}

// TestUnauthenticatedBodiesDoNotGrowHeap: 32 concurrent unauthenticated 63 MiB uploads (each
// client writes its body until the server stops taking it). Before, every body was read into
// memory ahead of the token check: 32 x 63 MiB of heap (0.4 -> 3.0 GB RSS on the real host).
// Now each is refused on its headers; the heap must stay within one body's size of where it
// started (the bound is loose: GC timing on a loaded machine).
func TestUnauthenticatedBodiesDoNotGrowHeap(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Token = "tok"
	_, adminAddr, _, _ := hostileServer(t, cfg)
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	const clients, size = 32, 63 << 20
	var wg sync.WaitGroup
	var sent atomic.Int64
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := net.DialTimeout("tcp", adminAddr, 5*time.Second)
			if err != nil {
				t.Error(err)
				return
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(2 * time.Minute))
			route := []string{"PUT /v1/modules/main/wasm", "POST /v1/queue/pipelines/p/jobs"}[i%2]
			fmt.Fprintf(conn, "%s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", route, size)
			chunk := make([]byte, 1<<20)
			for n := 0; n < size; n += len(chunk) {
				k, err := conn.Write(chunk)
				sent.Add(int64(k))
				if err != nil {
					return // the server closed the connection
				}
			}
			io.Copy(io.Discard, conn)
		}()
	}
	wg.Wait()
	close(stop)
	<-sampled
	grew := int64(peak.Load()) - int64(base)
	t.Logf("32 unauthenticated 63 MiB uploads: clients wrote %d MiB in all; heap in use grew %d MiB at most", sent.Load()>>20, grew>>20)
	if grew > 64<<20 {
		t.Fatalf("heap in use grew by %d MiB (base %d MiB); unauthenticated bodies were read into memory", grew>>20, base>>20)
	}
}

// TestIdleFloodDoesNotLockOut: clients from five addresses open connections, send one request
// each and stay idle, and reconnect whenever the server closes one: together they want twice
// the listener's connection limit. A legitimate client must still be served. Before, the idle
// connections held every slot and each new connection was answered 503 for as long as they
// stayed (11,000 connections from 45 addresses against the default 10,000; here scaled down).
func TestIdleFloodDoesNotLockOut(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxConns = 200
	_, _, ingressAddr, _ := hostileServer(t, cfg)
	const addrs, perAddr = 5, 80 // 400 idle connections wanted, twice MaxConns; 80 < 256 per IP
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var idle, reconnects atomic.Int64
	for a := range addrs {
		from := fmt.Sprintf("127.0.0.%d", a+2)
		for range perAddr {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
					c, err := d.DialContext(ctx, "tcp", ingressAddr)
					if err != nil {
						time.Sleep(50 * time.Millisecond)
						continue
					}
					stop := context.AfterFunc(ctx, func() { c.Close() })
					if roundTrip(bufio.NewReader(c), c, "/flood") == nil {
						idle.Add(1)
						c.SetDeadline(time.Time{})
						io.Copy(io.Discard, c) // idle until the server closes it
						idle.Add(-1)
						reconnects.Add(1)
					}
					stop()
					c.Close()
					time.Sleep(20 * time.Millisecond)
				}
			}()
		}
	}
	defer func() { cancel(); wg.Wait() }()
	// Let the flood fill the listener.
	deadline := time.Now().Add(60 * time.Second)
	for idle.Load() < int64(cfg.MaxConns)*8/10 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("flood: %d idle connections held", idle.Load())
	var failed []string
	const tries = 20
	for i := range tries {
		c := dialFrom(t, "127.0.0.1", ingressAddr)
		if err := roundTrip(bufio.NewReader(c), c, "/legit"); err != nil {
			failed = append(failed, fmt.Sprintf("request %d: %v", i, err))
		}
		c.Close()
		time.Sleep(25 * time.Millisecond)
	}
	t.Logf("during the flood: %d idle flood connections, %d closed by the server and reopened", idle.Load(), reconnects.Load())
	if len(failed) > 0 {
		t.Fatalf("legitimate client refused %d of %d times while the flood stayed: %s", len(failed), tries, strings.Join(failed, "; "))
	}
}

// TestElectionSidecarNeedsCredential: any local user can reach loopback. Without a token, a
// local client may not campaign, renew or resign, and reading a lease does not show its
// fencing token; pprof's command line needs the bearer token. Before, loopback clients needed
// no token for the sidecar, and GET showed every holder's token: enough to resign its lease or
// write as it.
func TestElectionSidecarNeedsCredential(t *testing.T) {
	held := cluster.Lease{Name: "job", Held: true, Holder: "n2", Session: "app/m", Token: 7, Index: 9}
	cfg := DefaultConfig()
	cfg.Token = "tok"
	cfg.Cluster = &fakeCluster{lease: held}
	_, adminAddr, _, _ := hostileServer(t, cfg)
	base := "http://" + adminAddr
	for _, c := range []struct {
		name, method, path, body string
		status                   int
	}{
		{"campaign from loopback without a token", "POST", "/v1/election/job/campaign", `{"session":"app/m","ttl_ms":3000}`, 401},
		{"renew without a token", "POST", "/v1/election/job/renew", `{"session":"app/m","token":7}`, 401},
		{"resign without a token", "POST", "/v1/election/job/resign", `{"session":"app/m","token":7}`, 401},
		{"pprof's command line without a token", "GET", "/debug/pprof/cmdline", "", 401},
	} {
		t.Run(c.name, func(t *testing.T) {
			status, body := do(t, c.method, base+c.path, "", strings.NewReader(c.body))
			if status != c.status {
				t.Fatalf("got %d %s; want %d", status, body, c.status)
			}
		})
	}
	for _, c := range []struct{ name, path string }{{"get", "/v1/election/job"}, {"watch", "/v1/election/job/watch?index=1"}} {
		t.Run(c.name+" without a token hides the fencing token", func(t *testing.T) {
			status, body := do(t, "GET", base+c.path, "", nil)
			var l cluster.Lease
			if err := json.Unmarshal([]byte(body), &l); err != nil || status != 200 {
				t.Fatalf("got %d %s", status, body)
			}
			if l.Token != 0 || !l.Held || l.Session != "app/m" {
				t.Fatalf("lease %+v; want held by app/m with the token hidden", l)
			}
		})
	}
}

// FuzzAmbiguousFraming: any header block fasthttp accepts is classified without a panic, and
// one naming both Content-Length and Transfer-Encoding (in any case, with any value), a
// Transfer-Encoding other than one "chunked", or a folded line, is refused (framingError).
func FuzzAmbiguousFraming(f *testing.F) {
	for _, s := range []string{"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", "transfer-encoding: chunked\r\n",
		"Content-Length: 0\r\n", "X: Content-Length\r\nTransfer-Encoding: chunked\r\n", "Transfer-Encoding: identity\r\nCONTENT-LENGTH: 3\r\n",
		"Transfer-Encoding: chunked, identity\r\n", "Transfer-Encoding:\r\n chunked\r\n", "X: a\r\n\tb\r\n", "Content-Length: 1, 2\r\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, headers string) {
		var h fasthttp.RequestHeader
		raw := "POST / HTTP/1.1\r\nHost: x\r\n" + headers + "\r\n"
		if !strings.HasSuffix(headers, "\r\n") {
			raw += "\r\n"
		}
		if err := h.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
			return
		}
		got := framingError(&h)
		var cl, te, badTE, fold bool
		for line := range strings.Lines(string(h.RawHeaders())) {
			fold = fold || line[0] == ' ' || line[0] == '\t'
			k, v, ok := strings.Cut(line, ":")
			cl = cl || ok && strings.EqualFold(strings.TrimSpace(k), "Content-Length")
			isTE := ok && strings.EqualFold(strings.TrimSpace(k), "Transfer-Encoding")
			badTE = badTE || isTE && (te || !strings.EqualFold(strings.TrimSpace(v), "chunked"))
			te = te || isTE
		}
		if (cl && te || badTE || fold) && got == nil {
			t.Fatalf("headers %q (raw %q): not refused", headers, h.RawHeaders())
		}
	})
}

// memConn is a connection whose peer sent in and reads what is written to out.
type memConn struct {
	in  *strings.Reader
	out bytes.Buffer
}

func (c *memConn) Read(b []byte) (int, error)       { return c.in.Read(b) }
func (c *memConn) Write(b []byte) (int, error)      { return c.out.Write(b) }
func (c *memConn) Close() error                     { return nil }
func (c *memConn) LocalAddr() net.Addr              { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 80} }
func (c *memConn) RemoteAddr() net.Addr             { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2), Port: 4000} }
func (c *memConn) SetDeadline(time.Time) error      { return nil }
func (c *memConn) SetReadDeadline(time.Time) error  { return nil }
func (c *memConn) SetWriteDeadline(time.Time) error { return nil }

// FuzzServeConn: any bytes a client sends on one connection go through the listener's
// request parsing (fasthttp's header, Content-Length and chunked body readers, then
// framingError) without a panic, and a 400 answer is the connection's last: nothing sent
// after a refused request is served.
func FuzzServeConn(f *testing.F) {
	for _, c := range smugglingCases("/front", "") {
		f.Add(c.req)
	}
	f.Add("POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;e=1\r\nhello\r\n0\r\nT: 1\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n")
	cfg := DefaultConfig().withDefaults()
	s := &Server{cfg: cfg, log: cfg.Logger}
	srv := s.server("wasmpod-ingress", func(ctx *fasthttp.RequestCtx) {
		ctx.SetBodyString("served " + string(ctx.Path()) + "\n")
	}, 1<<10)
	f.Fuzz(func(t *testing.T, in string) {
		c := &memConn{in: strings.NewReader(in)}
		srv.ServeConn(c)
		br := bufio.NewReader(&c.out)
		for {
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusBadRequest {
				if rest, _ := io.ReadAll(br); len(rest) > 0 {
					t.Fatalf("after a 400 the connection went on: %q", rest)
				}
				return
			}
		}
	})
}

// wantRefusedAndClosed sends raw on a new connection to addr and wants one answer, 400 with
// Connection: close, and then the connection closed with nothing more on it.
func wantRefusedAndClosed(t *testing.T, addr, raw string) {
	t.Helper()
	conn := dial(t, addr)
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, raw); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !resp.Close {
		t.Errorf("answer %d, Connection: close %v (%q); want 400 and close", resp.StatusCode, resp.Close, b)
	}
	if rest, err := io.ReadAll(br); len(rest) > 0 || err != nil {
		t.Errorf("after the answer: %q, %v; want the connection closed", rest, err)
	}
}
