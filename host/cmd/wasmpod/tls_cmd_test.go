package main

import (
	"bytes"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wasmpod/wasmpod/cluster"
)

// `wasmpod tls ca` and `wasmpod tls cert` make files a node starts with (--tls-*), even as a
// member of a multi-node cluster with no gossip key; a certificate for another node name is
// refused at start.
func TestTLSCommands(t *testing.T) {
	dir := t.TempDir()
	run := func(args ...string) (string, error) {
		root := newRoot()
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetErr(&out)
		root.SetArgs(args)
		err := root.Execute()
		return out.String(), err
	}
	if out, err := run("tls", "ca", "--dir", dir); err != nil {
		t.Fatalf("tls ca: %v: %s", err, out)
	}
	if _, err := run("tls", "ca", "--dir", dir); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("tls ca over an existing CA: %v", err)
	}
	ca, caKey := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem")
	if out, err := run("tls", "cert", "--ca", ca, "--ca-key", caKey, "--name", "n1", "--dir", dir); err != nil {
		t.Fatalf("tls cert: %v: %s", err, out)
	}
	if _, err := run("tls", "cert", "--ca", ca, "--ca-key", caKey, "--dir", dir); err == nil {
		t.Fatal("tls cert without --name")
	}
	for _, tc := range []struct {
		node string
		err  error
	}{{"n1", nil}, {"n2", cluster.ErrInvalid}} {
		o := clusterOptions{nodeName: tc.node, bind: "127.0.0.1:0", raftAddr: "127.0.0.1:0", join: []string{"127.0.0.1:1"},
			tlsCA: ca, tlsCert: filepath.Join(dir, "n1.pem"), tlsKey: filepath.Join(dir, "n1-key.pem")}
		cfg, err := clusterConfig(o, t.TempDir(), slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		n, err := cluster.Start(cfg)
		if !errors.Is(err, tc.err) {
			t.Fatalf("node %s with n1's certificate: %v, want %v", tc.node, err, tc.err)
		}
		if err == nil {
			if !n.Secure() {
				t.Error("not secure")
			}
			_ = n.Shutdown(t.Context())
		}
	}
	// A multi-node node with neither key nor certificates is refused, and told how to fix it.
	cfg, err := clusterConfig(clusterOptions{nodeName: "n3", bind: "127.0.0.1:0", join: []string{"127.0.0.1:1"}}, t.TempDir(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cluster.Start(cfg); !errors.Is(err, cluster.ErrInsecure) || !strings.Contains(err.Error(), "--gossip-key-file") {
		t.Fatalf("insecure multi-node start: %v", err)
	}
}
