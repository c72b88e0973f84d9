package admin

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// limitedListener is limitPerIP over a loopback listener on network ("tcp4" or "tcp6"), with
// a goroutine passing accepted connections to accepted. It is closed at cleanup.
func limitedListener(t *testing.T, network string, max int) (*perIPListener, <-chan net.Conn) {
	t.Helper()
	addr := "127.0.0.1:0"
	if network == "tcp6" {
		addr = "[::1]:0"
	}
	inner, err := net.Listen(network, addr)
	if err != nil {
		t.Skipf("no %s loopback: %v", network, err)
	}
	ln := limitPerIP(inner, max, slog.New(slog.DiscardHandler)).(*perIPListener)
	accepted := make(chan net.Conn, 64)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		close(accepted)
		for c := range accepted {
			c.Close()
		}
	})
	return ln, accepted
}

// dialFrom connects to addr from the local IP from.
func dialFrom(t *testing.T, from, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s from %s: %v", addr, from, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// readRefusal asserts c gets the 429 answer, then end of stream.
func readRefusal(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("refused connection: reading the answer: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || !resp.Close || !strings.Contains(string(body), "too many connections") {
		t.Fatalf("refused connection: got %d, close %v, body %q; want 429, Connection: close", resp.StatusCode, resp.Close, body)
	}
	if n, err := br.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("refused connection: after the answer read %d bytes, %v; want EOF", n, err)
	}
}

func TestLimitPerIP(t *testing.T) {
	// Steps, in order. dial: a connection from from, accepted or refused (answered 429 and
	// closed); accepted ones are numbered from 0. close: the server closes accepted conn n,
	// closeAgain closes it again (an error, no count change). count: from has n open.
	type step struct {
		op   string // dial, close, closeAgain, count
		from string
		ok   bool // dial: accepted
		n    int  // close, closeAgain: the conn; count: the count
	}
	dial := func(from string, ok bool) step { return step{op: "dial", from: from, ok: ok} }
	closeConn := func(n int) step { return step{op: "close", n: n} }
	closeAgain := func(n int) step { return step{op: "closeAgain", n: n} }
	count := func(from string, n int) step { return step{op: "count", from: from, n: n} }
	const a, b = "127.0.0.1", "127.0.0.2"
	cases := []struct {
		name    string
		network string
		max     int
		steps   []step
	}{
		{"under the limit", "tcp4", 3, []step{
			dial(a, true), dial(a, true), count(a, 2),
		}},
		{"limit reached", "tcp4", 2, []step{
			dial(a, true), dial(a, true), dial(a, false), dial(a, false), count(a, 2),
		}},
		{"limit of one", "tcp4", 1, []step{
			dial(a, true), dial(a, false), closeConn(0), count(a, 0), dial(a, true), dial(a, false),
		}},
		{"release on close", "tcp4", 2, []step{
			dial(a, true), dial(a, true), dial(a, false), closeConn(1), count(a, 1),
			dial(a, true), count(a, 2), dial(a, false),
		}},
		{"double close releases once", "tcp4", 2, []step{
			dial(a, true), dial(a, true), closeConn(0), closeAgain(0), closeAgain(0), count(a, 1),
			dial(a, true), dial(a, false), count(a, 2),
		}},
		{"close all then reuse", "tcp4", 2, []step{
			dial(a, true), dial(a, true), closeConn(0), closeConn(1), closeAgain(1), count(a, 0),
			dial(a, true), dial(a, true), dial(a, false),
		}},
		{"addresses counted apart", "tcp4", 1, []step{
			dial(a, true), dial(b, true), dial(a, false), dial(b, false), count(a, 1), count(b, 1),
			closeConn(0), count(a, 0), count(b, 1), dial(a, true), dial(b, false),
		}},
		{"ipv6", "tcp6", 1, []step{
			dial("::1", true), dial("::1", false), count("::1", 1), closeConn(0), dial("::1", true),
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ln, accepted := limitedListener(t, tc.network, tc.max)
			addr := ln.Addr().String()
			var conns []net.Conn
			for i, s := range tc.steps {
				switch s.op {
				case "dial":
					c := dialFrom(t, s.from, addr)
					if s.ok {
						select {
						case sc := <-accepted:
							if _, ok := sc.(*perIPConn); !ok {
								t.Fatalf("step %d: accepted a %T, want *perIPConn", i, sc)
							}
							conns = append(conns, sc)
						case <-time.After(5 * time.Second):
							t.Fatalf("step %d: dial from %s not accepted", i, s.from)
						}
					} else {
						readRefusal(t, c)
						select {
						case sc := <-accepted:
							t.Fatalf("step %d: refused dial from %s was accepted (%v)", i, s.from, sc.RemoteAddr())
						default:
						}
					}
				case "close":
					if err := conns[s.n].Close(); err != nil {
						t.Fatalf("step %d: close: %v", i, err)
					}
				case "closeAgain":
					if err := conns[s.n].Close(); !errors.Is(err, net.ErrClosed) {
						t.Fatalf("step %d: second close: %v, want net.ErrClosed", i, err)
					}
				case "count":
					if got := ln.conns(netip.MustParseAddr(s.from)); got != s.n {
						t.Fatalf("step %d: %s has %d open connections, want %d", i, s.from, got, s.n)
					}
				}
			}
			for _, c := range conns {
				c.Close()
			}
			ln.mu.Lock()
			left := len(ln.open)
			ln.mu.Unlock()
			if left != 0 {
				t.Errorf("after closing everything %d addresses still have counts: %v", left, ln.open)
			}
		})
	}
}

func TestLimitPerIPOff(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer inner.Close()
	for _, max := range []int{0, -1} {
		if got := limitPerIP(inner, max, nil); got != inner {
			t.Errorf("limitPerIP(ln, %d) = %T, want ln itself", max, got)
		}
	}
}

// A closed conn keeps working as a closed socket: every method returns an error, none panics
// (fasthttp's wrapper nils its net.Conn on Close).
func TestPerIPConnAfterClose(t *testing.T) {
	ln, accepted := limitedListener(t, "tcp4", 1)
	dialFrom(t, "127.0.0.1", ln.Addr().String())
	c := <-accepted
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Read after Close: %v", err)
	}
	if _, err := c.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Write after Close: %v", err)
	}
	if err := c.SetReadDeadline(time.Now()); !errors.Is(err, net.ErrClosed) {
		t.Errorf("SetReadDeadline after Close: %v", err)
	}
	if c.RemoteAddr() == nil || c.LocalAddr() == nil {
		t.Error("no addresses after Close")
	}
}

type addrConn struct {
	net.Conn
	addr net.Addr
}

func (c addrConn) RemoteAddr() net.Addr { return c.addr }

func TestRemoteIP(t *testing.T) {
	cases := []struct {
		addr net.Addr
		want string // "" for not counted
	}{
		{&net.TCPAddr{IP: net.IPv4(10, 1, 2, 3), Port: 5}, "10.1.2.3"},
		{&net.TCPAddr{IP: net.ParseIP("10.1.2.3").To4(), Port: 5}, "10.1.2.3"},
		{&net.TCPAddr{IP: net.ParseIP("::ffff:10.1.2.3"), Port: 5}, "10.1.2.3"},
		{&net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 5}, "2001:db8::1"},
		{&net.TCPAddr{IP: net.ParseIP("fe80::1"), Port: 5, Zone: "eth0"}, "fe80::1"},
		{&net.TCPAddr{IP: net.IPv4zero, Port: 5}, ""},
		{&net.TCPAddr{IP: net.IPv6unspecified, Port: 5}, ""},
		{&net.TCPAddr{}, ""},
		{(*net.TCPAddr)(nil), ""},
		{&net.UnixAddr{Name: "/tmp/x.sock", Net: "unix"}, ""},
		{nil, ""},
	}
	for _, tc := range cases {
		ip, ok := remoteIP(addrConn{addr: tc.addr})
		got := ""
		if ok {
			got = ip.String()
		}
		if got != tc.want {
			t.Errorf("remoteIP(%v) = %q, %v; want %q", tc.addr, got, ok, tc.want)
		}
	}
}

// TestLimitPerIPChurn opens and closes connections from one address concurrently, each closed
// twice at once by the server, and checks the limit holds throughout and every count returns
// to zero. Run it with -race.
func TestLimitPerIPChurn(t *testing.T) {
	const max, clients, rounds = 4, 12, 40
	ln, accepted := limitedListener(t, "tcp4", max)
	ip := netip.MustParseAddr("127.0.0.1")
	var open, peak, served atomic.Int64
	var violation atomic.Bool
	var srv sync.WaitGroup
	go func() {
		for c := range accepted { // until the cleanup closes accepted
			if n := open.Add(1); n > max {
				violation.Store(true)
			} else {
				for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
				}
			}
			if ln.conns(ip) > max {
				violation.Store(true)
			}
			srv.Go(func() {
				c.Write([]byte("ok"))
				time.Sleep(time.Duration(served.Add(1)%3) * time.Millisecond)
				open.Add(-1) // before the slot is released: open never exceeds the count
				var both sync.WaitGroup
				both.Go(func() { c.Close() })
				both.Go(func() { c.Close() })
				both.Wait()
			})
		}
	}()

	var okN, refusedN atomic.Int64
	var cl sync.WaitGroup
	for range clients {
		cl.Go(func() {
			for range rounds {
				c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
				if err != nil {
					t.Errorf("dial: %v", err)
					return
				}
				c.SetReadDeadline(time.Now().Add(10 * time.Second))
				b, err := io.ReadAll(c)
				c.Close()
				switch {
				case err != nil && !isReset(err):
					t.Errorf("read: %v", err)
					return
				case string(b) == "ok":
					okN.Add(1)
				case strings.HasPrefix(string(b), "HTTP/1.1 429 "):
					refusedN.Add(1)
				default:
					t.Errorf("unexpected answer %q", b)
					return
				}
			}
		})
	}
	cl.Wait()
	// Each accepted connection was answered, so srv.Go ran for all before this Wait. Every
	// accepted connection is being closed: wait for the counts to drain.
	deadline := time.Now().Add(10 * time.Second)
	for ln.conns(ip) != 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	srv.Wait()
	if violation.Load() {
		t.Errorf("more than %d connections open at once", max)
	}
	ln.mu.Lock()
	left := len(ln.open)
	ln.mu.Unlock()
	if n := ln.conns(ip); n != 0 || left != 0 {
		t.Errorf("after the churn %s has %d open connections (%d addresses counted), want none", ip, n, left)
	}
	if okN.Load() == 0 {
		t.Error("no connection accepted")
	}
	t.Logf("%d accepted, %d refused, peak %d open", okN.Load(), refusedN.Load(), peak.Load())
}

// TestServeLimitsConnsPerIP checks the wiring: Serve applies Config.MaxConnsPerIP (fasthttp's
// own limit is off), and a refused client gets 429 while the others are served.
func TestServeLimitsConnsPerIP(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxConnsPerIP = 2
	cfg = cfg.withDefaults()
	s := &Server{cfg: cfg, log: cfg.Logger}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.admin = s.adminServer()
	s.ingress = s.server("wasmpod-ingress", nil, cfg.MaxIngressBody)
	if s.admin.MaxConnsPerIP != 0 || s.ingress.MaxConnsPerIP != 0 {
		t.Fatalf("fasthttp MaxConnsPerIP = %d, %d; want 0 (limitPerIP instead)", s.admin.MaxConnsPerIP, s.ingress.MaxConnsPerIP)
	}
	ln := listenLoopback(t)
	s.Serve(ln, nil)
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	}()
	var keep []net.Conn
	for range 2 {
		c := dialFrom(t, "127.0.0.1", ln.Addr().String())
		if err := roundTrip(bufio.NewReader(c), c, "/healthz"); err != nil {
			t.Fatalf("within the limit: %v", err)
		}
		keep = append(keep, c)
	}
	readRefusal(t, dialFrom(t, "127.0.0.1", ln.Addr().String()))
	// Another address is not limited by these two.
	c := dialFrom(t, "127.0.0.2", ln.Addr().String())
	if err := roundTrip(bufio.NewReader(c), c, "/healthz"); err != nil {
		t.Fatalf("from another address: %v", err)
	}
	// A client closing frees its slot once the server has seen the close.
	keep[0].Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c := dialFrom(t, "127.0.0.1", ln.Addr().String())
		err := roundTrip(bufio.NewReader(c), c, "/healthz")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("slot not freed after a client closed: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
