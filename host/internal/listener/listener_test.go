package listener_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/wasmpod/wasmpod/host/internal/listener"
)

// flaky fails its first n accepts with EMFILE, as a process out of descriptors does.
type flaky struct {
	net.Listener
	left atomic.Int32
}

func (f *flaky) Accept() (net.Conn, error) {
	if f.left.Add(-1) >= 0 {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	return f.Listener.Accept()
}

func get(t *testing.T, addr, path string) (string, error) {
	t.Helper()
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + addr + path)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// TestServeSurvivesAcceptErrors: a fasthttp server behind Wrap keeps serving after a burst of
// EMFILE accept errors; Down reports the listener while it fails and clears once it accepts.
// Without Wrap, fasthttp's Serve returns on the first such error (checked first).
func TestServeSurvivesAcceptErrors(t *testing.T) {
	handler := func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("ok") }

	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	bad := &flaky{Listener: raw}
	bad.left.Store(1)
	srv := &fasthttp.Server{Handler: handler}
	if err := srv.Serve(bad); err == nil || !errors.Is(err, syscall.EMFILE) {
		t.Fatalf("plain fasthttp Serve: %v (want it to stop on EMFILE)", err)
	}
	raw.Close()

	raw, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fl := &flaky{Listener: raw}
	fl.left.Store(8) // 5+10+20+40+80+160+320+640 ms of backoff: about 1.3 s down
	l := listener.Wrap(fl, "ingress", nil)
	srv = &fasthttp.Server{Handler: handler}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if down, why := l.Down(); down {
			if !strings.Contains(why, "too many open files") || !strings.HasPrefix(why, "ingress: ") {
				t.Fatalf("Down: %q", why)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("never reported down")
		}
		time.Sleep(time.Millisecond)
	}
	if body, err := get(t, raw.Addr().String(), "/"); err != nil || body != "ok" {
		t.Fatalf("after the errors: %q, %v", body, err)
	}
	if down, why := l.Down(); down {
		t.Fatalf("still down after accepting: %s", why)
	}
	if n := l.Errors(); n != 8 {
		t.Fatalf("%d errors retried, want 8", n)
	}
	if err := srv.Shutdown(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after Shutdown")
	}
}

// TestCloseDuringBackoff: closing a listener that is backing off ends Accept at once.
func TestCloseDuringBackoff(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fl := &flaky{Listener: raw}
	fl.left.Store(1 << 30)
	l := listener.Wrap(fl, "admin", nil)
	done := make(chan error, 1)
	go func() { _, err := l.Accept(); done <- err }()
	time.Sleep(50 * time.Millisecond)
	l.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Accept returned a connection")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Accept did not return after Close")
	}
}

// TestRealDescriptorExhaustion runs a server in a child process whose RLIMIT_NOFILE is 32, and
// holds 64 connections to it so its accepts fail with a real EMFILE. Once they are released the
// server serves again (with Wrap), or has stopped for good (plain fasthttp, checked first).
func TestRealDescriptorExhaustion(t *testing.T) {
	if os.Getenv("LISTENER_CHILD") != "" {
		child(os.Getenv("LISTENER_CHILD"))
		return
	}
	for _, mode := range []string{"plain", "wrapped"} {
		t.Run(mode, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestRealDescriptorExhaustion$")
			cmd.Env = append(os.Environ(), "LISTENER_CHILD="+mode)
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { cmd.Process.Kill(); cmd.Wait() }()
			lines := bufio.NewScanner(out)
			if !lines.Scan() {
				t.Fatal("child said nothing")
			}
			addr := strings.TrimPrefix(lines.Text(), "addr ")
			var held []net.Conn
			for range 64 {
				c, err := net.DialTimeout("tcp", addr, 5*time.Second)
				if err != nil {
					break
				}
				held = append(held, c)
			}
			// Let the child hit the limit: it accepts until out of descriptors.
			time.Sleep(500 * time.Millisecond)
			for _, c := range held {
				c.Close()
			}
			var body string
			wait := 15 * time.Second
			if mode == "plain" {
				wait = 3 * time.Second // it never comes back; the wrapped one shows how long is enough
			}
			deadline := time.Now().Add(wait)
			for time.Now().Before(deadline) {
				if body, err = get(t, addr, "/"); err == nil {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			t.Logf("%s: after releasing %d connections: %q, %v", mode, len(held), body, err)
			if mode == "plain" {
				if err == nil {
					t.Fatal("plain fasthttp served after EMFILE: the test did not exhaust descriptors")
				}
				return
			}
			if err != nil || body != "ok" {
				t.Fatalf("wrapped listener did not recover: %q, %v", body, err)
			}
		})
	}
}

func child(mode string) {
	lim := syscall.Rlimit{Cur: 32, Max: 32}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		fmt.Fprintln(os.Stderr, "setrlimit:", err)
		os.Exit(2)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	fmt.Printf("addr %s\n", ln.Addr())
	var serveLn net.Listener = ln
	if mode == "wrapped" {
		serveLn = listener.Wrap(ln, "ingress", nil)
	}
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("ok") }, ReadTimeout: 30 * time.Second}
	err = srv.Serve(serveLn)
	fmt.Fprintln(os.Stderr, "child: Serve returned:", err)
	os.Exit(0)
}
