package mtls

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

var key = []byte("0123456789abcdef0123456789abcdef")

func TestDeriveCADeterministic(t *testing.T) {
	a, err := DeriveCA(key, "prod")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := DeriveCA(append([]byte(nil), key...), "prod")
	if !bytes.Equal(a.Cert.Raw, b.Cert.Raw) {
		t.Fatal("the same key and label derived two different CA certificates")
	}
	for _, tc := range []struct {
		name  string
		key   []byte
		label string
	}{
		{"other label", key, "staging"},
		{"other key", []byte("fedcba9876543210fedcba9876543210"), "prod"},
	} {
		c, err := DeriveCA(tc.key, tc.label)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(c.Cert.Raw, a.Cert.Raw) {
			t.Errorf("%s: same CA", tc.name)
		}
	}
	if _, err := DeriveCA([]byte("short"), ""); err == nil {
		t.Error("a 5-byte key derived a CA")
	}
}

// server serves connections with id's config on a loopback listener: each handshake's peer
// name goes to the returned channel ("" when it failed), then one byte is echoed.
func server(t *testing.T, id *Identity) (string, <-chan string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	seen := make(chan string, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			tc := id.Server(c)
			_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
			if err := tc.Handshake(); err != nil {
				seen <- ""
				c.Close()
				continue
			}
			seen <- PeerName(tc)
			_, _ = io.CopyN(tc, tc, 1)
			c.Close()
		}
	}()
	return ln.Addr().String(), seen
}

// dial connects to addr as client: handshake and one echoed byte. It reports whether the
// session was resumed.
func dial(t *testing.T, addr string, client *Identity) (bool, error) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tc := client.Client(c)
	_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
	err = tc.Handshake()
	if err == nil {
		_, err = tc.Write([]byte{'x'})
	}
	if err == nil {
		var b [1]byte
		_, err = io.ReadFull(tc, b[:])
	}
	return tc.ConnectionState().DidResume, err
}

func pair(t *testing.T, srv, client *Identity) (string, error) {
	addr, seen := server(t, srv)
	_, err := dial(t, addr, client)
	return <-seen, err
}

func ident(t *testing.T, ca *CA, name string, member func(string) bool) *Identity {
	t.Helper()
	cert, err := ca.Issue(name, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	id, err := NewIdentity(name, ca.Cert, cert, member)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestIdentityAcceptsOnlyMembersOfTheCA(t *testing.T) {
	ca, _ := DeriveCA(key, "")
	other, _ := DeriveCA([]byte("another-key-another-key-another!!"), "")
	members := map[string]bool{"a": true, "b": true}
	isMember := func(n string) bool { return members[n] }
	srv := ident(t, ca, "a", isMember)
	for _, tc := range []struct {
		name   string
		client *Identity
		ok     bool
	}{
		{"member", ident(t, ca, "b", isMember), true},
		{"same CA, not a member", ident(t, ca, "mallory", func(string) bool { return true }), false},
		{"member name, other CA", ident(t, other, "b", func(string) bool { return true }), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			seen, err := pair(t, srv, tc.client)
			if tc.ok && (err != nil || seen != "b") {
				t.Fatalf("refused a member: %v (server saw %q)", err, seen)
			}
			if !tc.ok && err == nil {
				t.Fatalf("accepted (server saw %q)", seen)
			}
		})
	}
}

// A session resumed after the peer left is refused: VerifyConnection runs on resumption too.
func TestResumedSessionRechecksMembership(t *testing.T) {
	ca, _ := DeriveCA(key, "")
	var bMember atomic.Bool
	bMember.Store(true)
	isMember := func(n string) bool { return n == "a" || (n == "b" && bMember.Load()) }
	addr, _ := server(t, ident(t, ca, "a", isMember))
	cli := ident(t, ca, "b", isMember)
	if _, err := dial(t, addr, cli); err != nil {
		t.Fatalf("first connection: %v", err)
	}
	if resumed, err := dial(t, addr, cli); err != nil || !resumed { // from the client's session cache
		t.Fatalf("second connection: resumed %v, %v", resumed, err)
	}
	bMember.Store(false)
	if resumed, err := dial(t, addr, cli); err == nil {
		t.Fatalf("a departed member got in again (resumed %v)", resumed)
	}
}

func TestNewIdentityChecksTheCertificate(t *testing.T) {
	ca, _ := DeriveCA(key, "")
	other, _ := DeriveCA([]byte("another-key-another-key-another!!"), "")
	cert, _ := ca.Issue("a", time.Hour)
	if _, err := NewIdentity("b", ca.Cert, cert, nil); err == nil {
		t.Error("a certificate naming a was accepted for node b")
	}
	if _, err := NewIdentity("a", other.Cert, cert, nil); !errors.Is(err, ErrBadPeer) {
		t.Errorf("a certificate of another CA: %v, want ErrBadPeer", err)
	}
	var plain tls.Certificate
	if _, err := NewIdentity("a", ca.Cert, plain, nil); err == nil {
		t.Error("no certificate accepted")
	}
}

func TestPEMRoundTrip(t *testing.T) {
	ca, err := NewCA("test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	kp, err := EncodeKey(ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseCA(EncodeCert(ca.Cert.Raw), kp)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := back.Issue("n1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewIdentity("n1", ca.Cert, cert, nil); err != nil {
		t.Fatal(err)
	}
	for _, bad := range [][]byte{nil, []byte("not pem"), EncodeCert([]byte("garbage"))} {
		if _, err := ParseCA(bad, nil); !errors.Is(err, ErrPEM) {
			t.Errorf("ParseCA(%q): %v, want ErrPEM", bad, err)
		}
	}
	leaf, _ := back.Issue("n2", time.Hour)
	if _, err := ParseCA(EncodeCert(leaf.Certificate[0]), nil); !errors.Is(err, ErrPEM) {
		t.Errorf("a node certificate taken for a CA: %v", err)
	}
}
