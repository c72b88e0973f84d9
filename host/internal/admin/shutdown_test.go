package admin

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// shutdownChildEnv makes TestShutdownChild run: it is the child process of
// TestShutdownNeverPanics.
const shutdownChildEnv = "WASMPOD_ADMIN_SHUTDOWN_CHILD"

// TestShutdownNeverPanics is the regression test for a panic at graceful shutdown: with
// fasthttp's Server.MaxConnsPerIP set, Shutdown closing an idle connection from its own
// goroutine nils the per-IP wrapper's net.Conn while the connection's goroutine still uses it
// (a nil pointer dereference in perIPConn.Write, Read or SetReadDeadline). A panic in a fasthttp
// worker goroutine kills the whole process, so the scenario runs in a child process (this test
// binary, re-executed) and the test asserts it exits cleanly.
func TestShutdownNeverPanics(t *testing.T) {
	if os.Getenv(shutdownChildEnv) != "" {
		t.Skip("in the child process")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestShutdownChild$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), shutdownChildEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestShutdownChild") {
		t.Fatalf("child process did not exit cleanly (%v):\n%s", err, out)
	}
	t.Logf("child:\n%s", out)
}

// TestShutdownChild serves the admin and ingress listeners with the host's configuration (the
// defaults New applies, so a per-IP limit of 64) and shuts down with keep-alive clients of
// every kind on both: idle ones (one request answered, then quiet), active ones sending
// requests through the Shutdown, and late ones whose next request arrives just as Shutdown
// closes the idle connections.
//
// The late clients make the race deterministic. fasthttp marks a keep-alive connection idle
// after each answer and unmarks it only once its serving goroutine has read the first byte of
// the next request; Shutdown closes every marked one from its own goroutine. A serving
// goroutine descheduled right after that read (as happens on a loaded machine) finds its
// connection closed under it. stallListener plays the scheduler: a late connection's read
// returns its bytes only once the connection has been closed. With fasthttp's per-IP wrapper
// the goroutine then calls SetReadDeadline on a nil net.Conn and the process dies.
func TestShutdownChild(t *testing.T) {
	if os.Getenv(shutdownChildEnv) == "" {
		t.Skip("runs as the child process of TestShutdownNeverPanics")
	}
	cfg := DefaultConfig()
	cfg.Token = "tok"
	// As New builds it, less the supervisor: only /healthz is asked on the admin listener.
	cfg = cfg.withDefaults()
	s := &Server{cfg: cfg, log: cfg.Logger}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.admin = s.adminServer()
	if s.cfg.MaxConnsPerIP != 64 {
		t.Fatalf("MaxConnsPerIP = %d, want the default 64", s.cfg.MaxConnsPerIP)
	}
	// The ingress server as New builds it, with a handler that needs no supervisor and takes a
	// moment, so that requests are in flight when Shutdown starts.
	s.ingress = s.server("wasmpod-ingress", func(ctx *fasthttp.RequestCtx) {
		time.Sleep(time.Millisecond)
		ctx.SetBodyString("ok\n")
	}, s.cfg.MaxIngressBody)
	late := new(sync.Map) // client addresses (of late connections) whose reads stall
	adminLn := &stallListener{Listener: listenLoopback(t), stall: late}
	ingressLn := &stallListener{Listener: listenLoopback(t), stall: late}
	s.Serve(adminLn, ingressLn)
	targets := []struct{ addr, path string }{
		{adminLn.Addr().String(), "/healthz"},
		{ingressLn.Addr().String(), "/"},
	}

	var idle, lates []net.Conn // checked after Shutdown
	for _, tg := range targets {
		for range 4 {
			c := dial(t, tg.addr)
			if err := roundTrip(bufio.NewReader(c), c, tg.path); err != nil {
				t.Fatalf("first request to %s: %v", tg.addr, err)
			}
			idle = append(idle, c)
		}
		for range 2 {
			c := dial(t, tg.addr)
			if err := roundTrip(bufio.NewReader(c), c, tg.path); err != nil {
				t.Fatalf("first request to %s: %v", tg.addr, err)
			}
			lates = append(lates, c)
		}
	}

	var stop atomic.Bool
	var wg sync.WaitGroup
	var served atomic.Int64
	for _, tg := range targets {
		for range 4 {
			wg.Go(func() {
				for !stop.Load() {
					c, err := net.DialTimeout("tcp", tg.addr, time.Second)
					if err != nil {
						time.Sleep(5 * time.Millisecond) // listener closed: Shutdown is under way
						continue
					}
					br := bufio.NewReader(c)
					for !stop.Load() && roundTrip(br, c, tg.path) == nil {
						served.Add(1)
						time.Sleep(100 * time.Microsecond)
					}
					c.Close()
				}
			})
		}
	}
	time.Sleep(200 * time.Millisecond)

	// The late clients send their next request; its bytes reach the server, whose read of them
	// stalls until Shutdown closed the connection.
	for i, c := range lates {
		late.Store(c.LocalAddr().String(), true)
		if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: test\r\n\r\n", targets[i*len(targets)/len(lates)].path); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(50 * time.Millisecond)

	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer scancel()
	start := time.Now()
	err := s.Shutdown(sctx)
	took := time.Since(start)
	stop.Store(true)
	wg.Wait()
	if err != nil {
		t.Errorf("Shutdown: %v (after %v)", err, took)
	}
	t.Logf("Shutdown took %v; %d requests served on the active connections; %d late reads stalled until closed",
		took, served.Load(), stalled.Load())
	if served.Load() == 0 {
		t.Error("the active clients got no answer")
	}
	for i, c := range append(idle, lates...) {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := io.Copy(io.Discard, c); err != nil && !isReset(err) {
			t.Errorf("held connection %d: read %d bytes, then %v; want the server to close it", i, n, err)
		}
		c.Close()
	}
}

// stalled counts the reads stallConn held until their connection was closed.
var stalled atomic.Int64

// stallListener's connections from a client address stored in stall return the bytes of a
// read only once the connection has been closed (or after 3 s).
type stallListener struct {
	net.Listener
	stall *sync.Map
}

func (l *stallListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &stallConn{Conn: c, stall: l.stall, closed: make(chan struct{})}, nil
}

type stallConn struct {
	net.Conn
	stall  *sync.Map
	once   sync.Once
	closed chan struct{}
}

func (c *stallConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if _, ok := c.stall.Load(c.RemoteAddr().String()); ok && n > 0 {
		select {
		case <-c.closed:
			stalled.Add(1)
		case <-time.After(3 * time.Second):
		}
	}
	return n, err
}

func (c *stallConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

func listenLoopback(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// roundTrip sends a keep-alive GET on c and reads the answer, which must be 200.
func roundTrip(br *bufio.Reader, c net.Conn, path string) error {
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: localhost\r\n\r\n", path); err != nil {
		return err
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("status %d", resp.StatusCode)
	}
	if err == nil && resp.Close {
		err = errors.New("server closes the connection")
	}
	return err
}

// isReset reports a connection reset: a close with unread data in the socket is a reset.
func isReset(err error) bool {
	return strings.Contains(err.Error(), "connection reset")
}
