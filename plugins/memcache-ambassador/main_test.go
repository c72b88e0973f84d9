//go:build !wasip1

package main

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	wasmpod "github.com/wasmpod/wasmpod/guest-sdk/go"
	wpnet "github.com/wasmpod/wasmpod/guest-sdk/go/net"
	"github.com/wasmpod/wasmpod/plugins/memcache-ambassador/memcache"
)

// startMemcached runs a real memcached on a free loopback port.
func startMemcached(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("memcached")
	if err != nil {
		t.Skip("memcached not installed (Debian package memcached)")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_, port, _ := net.SplitHostPort(addr)
	ln.Close()
	cmd := exec.Command(bin, "-l", "127.0.0.1", "-p", port, "-U", "0", "-m", "16", "-u", "root")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for i := 0; ; i++ {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return addr
		}
		if i > 200 {
			t.Fatalf("memcached on %s did not come up: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// rawGet reads key straight from one backend with the plain text protocol.
func rawGet(t *testing.T, addr, key string) (string, bool) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "get %s\r\n", key)
	v, found, err := memcache.ReadGet(bufio.NewReader(c), key, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	return string(v), found
}

// TestHandleNative runs the handler natively, through the SDK's fake net host, against real
// memcached servers.
func TestHandleNative(t *testing.T) {
	backends := []string{startMemcached(t), startMemcached(t), startMemcached(t)}
	wpnet.Host = wpnet.NewFakeHost()
	wpnet.Host.Allow = backends
	client = memcache.New(backends, dial)
	defer client.Close()
	per := map[string]int{}
	for i := range 60 {
		k := fmt.Sprintf("key-%d", i)
		if out, err := handle([]byte("set " + k + "\nvalue " + k)); err != nil || string(out) != "S" {
			t.Fatalf("set %s: %q, %v", k, out, err)
		}
		out, err := handle([]byte("where " + k))
		if err != nil || out[0] != 'B' {
			t.Fatalf("where: %q, %v", out, err)
		}
		b := string(out[1:])
		per[b]++
		if v, ok := rawGet(t, b, k); !ok || v != "value "+k {
			t.Fatalf("key %s not on its backend %s: %q %v", k, b, v, ok)
		}
		if out, err := handle([]byte("get " + k)); err != nil || string(out) != "Vvalue "+k {
			t.Fatalf("get %s: %q, %v", k, out, err)
		}
	}
	if len(per) != 3 {
		t.Fatalf("keys landed on %d backends: %v", len(per), per)
	}
	if out, err := handle([]byte("get nope")); err != nil || string(out) != "M" {
		t.Fatalf("miss: %q %v", out, err)
	}
	if wpnet.Host.Dials > 3*2+3 {
		t.Fatalf("%d dials for 180 requests: connections are not pooled", wpnet.Host.Dials)
	}
	for _, bad := range []string{"get a b", "frob x", "set k", "get " + strings.Repeat("k", 300)} {
		if _, err := handle([]byte(bad)); wasmpod.CodeOf(err) != 2 {
			t.Errorf("%q: %v, want code 2", bad, err)
		}
	}
}

func TestBackendDown(t *testing.T) {
	up := startMemcached(t)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	down := ln.Addr().String()
	ln.Close() // nothing listens there
	wpnet.Host = wpnet.NewFakeHost()
	wpnet.Host.Allow = []string{up, down}
	client = memcache.New([]string{up, down}, dial)
	defer client.Close()
	var okN, downN int
	for i := range 40 {
		k := fmt.Sprintf("k%d", i)
		_, err := handle([]byte("set " + k + "\nv"))
		if client.Backend(k) == up {
			if err != nil {
				t.Fatalf("key %s of the live backend failed: %v", k, err)
			}
			okN++
			continue
		}
		if wasmpod.CodeOf(err) != 3 || !errors.Is(err, memcache.ErrBackend) || !strings.Contains(err.Error(), down) {
			t.Fatalf("key %s of the dead backend: %v, want code 3 naming %s", k, err, down)
		}
		downN++
	}
	if okN == 0 || downN == 0 {
		t.Fatalf("keys: %d on the live backend, %d on the dead one", okN, downN)
	}
}

// FuzzParseRequest checks the request decoder on arbitrary input from main.
func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{"get k", "set k\nv", "where k", "set k\n", "get", "get k\nx", "set  \n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseRequest(b)
		if err != nil {
			return
		}
		if r.Key == "" || strings.ContainsAny(r.Key, "\n") {
			t.Fatalf("key %q from %q", r.Key, b)
		}
		if r.Op != OpSet && r.Value != nil {
			t.Fatalf("value on %c", r.Op)
		}
	})
}
