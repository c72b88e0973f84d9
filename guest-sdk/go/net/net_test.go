//go:build !wasip1

package net

import (
	"bufio"
	"errors"
	"io"
	stdnet "net"
	"strings"
	"testing"
	"time"
)

// echoServer answers each line with the line upper-cased, and closes on "bye".
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := stdnet.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					l, err := r.ReadString('\n')
					if err != nil || l == "bye\n" {
						return
					}
					if l == "hang\n" {
						time.Sleep(time.Second)
						continue
					}
					c.Write([]byte(strings.ToUpper(l)))
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func TestConn(t *testing.T) {
	addr := echoServer(t)
	Host = NewFakeHost()
	Host.Allow = []string{addr}
	c, err := Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, "hello\n"); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || line != "HELLO\n" {
		t.Fatalf("read %q, %v", line, err)
	}
	io.WriteString(c, "bye\n")
	if b, err := io.ReadAll(c); err != nil || len(b) != 0 {
		t.Fatalf("after bye: %q, %v (want EOF)", b, err)
	}
	if err := c.Close(); err != nil || Host.Open() != 0 {
		t.Fatalf("close: %v, %d open", err, Host.Open())
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if _, err := c.Write([]byte("x")); !errors.Is(err, ErrClosed) {
		t.Fatalf("write after close: %v", err)
	}
}

func TestErrors(t *testing.T) {
	addr := echoServer(t)
	for _, tc := range []struct {
		name    string
		setup   func()
		op      func() error
		want    error
		wantMsg string
	}{
		{name: "not allowed", setup: func() {}, op: func() error { _, err := Dial("127.0.0.1:1"); return err }, want: ErrNotAllowed, wantMsg: "allowlist"},
		{name: "too many", setup: func() { Host.Allow = []string{addr}; Host.MaxHandles = 1; Dial(addr) },
			op: func() error { _, err := Dial(addr); return err }, want: ErrTooMany},
		{name: "timeout closes", setup: func() { Host.Allow = []string{addr}; Host.Timeout = 50 * time.Millisecond },
			op: func() error {
				c, err := Dial(addr)
				if err != nil {
					return err
				}
				io.WriteString(c, "hang\n")
				_, err = c.Read(make([]byte, 10))
				var ne *Error
				if !errors.As(err, &ne) || !ne.Timeout() {
					return errors.New("not a timeout")
				}
				_, err2 := c.Read(make([]byte, 1))
				if !errors.Is(err2, ErrClosed) {
					return errors.New("conn still open after timeout")
				}
				return err
			}, want: ErrTimeout},
	} {
		t.Run(tc.name, func(t *testing.T) {
			Host = NewFakeHost()
			tc.setup()
			err := tc.op()
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.wantMsg) {
				t.Fatalf("err = %v, want %v (%q)", err, tc.want, tc.wantMsg)
			}
		})
	}
}
