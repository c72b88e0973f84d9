package main

import (
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/wasmpod/wasmpod/cluster"
)

func TestClusterConfig(t *testing.T) {
	key := filepath.Join(t.TempDir(), "key")
	os.WriteFile(key, []byte("c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MTI=\n"), 0o600)
	bad := filepath.Join(t.TempDir(), "bad")
	os.WriteFile(bad, []byte("short"), 0o600)
	for _, c := range []struct {
		name       string
		o          clusterOptions
		bind, raft string
		join       []string
		keyLen     int
		wantErr    bool
		bootstrap  cluster.BootstrapMode
	}{
		{"no flags: standalone on loopback, ephemeral ports", clusterOptions{nodeName: "a"}, standaloneBind, standaloneRaft, nil, 0, false, cluster.BootstrapAuto},
		{"join: cluster defaults", clusterOptions{nodeName: "a", join: []string{"10.0.0.1:7946", " ", "10.0.0.2:7946"}}, clusterBind, "", []string{"10.0.0.1:7946", "10.0.0.2:7946"}, 0, false, cluster.BootstrapAuto},
		{"bind and raft", clusterOptions{nodeName: "a", bind: "10.0.0.3:8000", raftAddr: "10.0.0.3:9000"}, "10.0.0.3:8000", "10.0.0.3:9000", nil, 0, false, cluster.BootstrapAuto},
		{"key file", clusterOptions{nodeName: "a", bind: "127.0.0.1:0", keyFile: key}, "127.0.0.1:0", "", nil, 32, false, cluster.BootstrapAuto},
		{"bad key file", clusterOptions{nodeName: "a", keyFile: bad}, "", "", nil, 0, true, cluster.BootstrapAuto},
		{"missing key file", clusterOptions{nodeName: "a", keyFile: bad + "-nope"}, "", "", nil, 0, true, cluster.BootstrapAuto},
		{"bootstrap node: this one", clusterOptions{nodeName: "w-0", join: []string{"w-0.w:7946", "w-1.w:7946"}, bootstrapNode: "w-0"}, clusterBind, "", []string{"w-0.w:7946", "w-1.w:7946"}, 0, false, cluster.BootstrapAlways},
		{"bootstrap node: another one", clusterOptions{nodeName: "w-1", join: []string{"w-0.w:7946", "w-1.w:7946"}, bootstrapNode: "w-0"}, clusterBind, "", []string{"w-0.w:7946", "w-1.w:7946"}, 0, false, cluster.BootstrapNever},
		{"bootstrap node without a cluster", clusterOptions{nodeName: "a", bootstrapNode: "a"}, "", "", nil, 0, true, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg, err := clusterConfig(c.o, dir, slog.New(slog.DiscardHandler))
			if (err != nil) != c.wantErr {
				t.Fatalf("err = %v, want error %v", err, c.wantErr)
			}
			if err != nil {
				return
			}
			if cfg.BindAddr != c.bind || cfg.RaftAddr != c.raft || !slices.Equal(cfg.Join, c.join) || len(cfg.GossipKey) != c.keyLen {
				t.Fatalf("config bind %q raft %q join %v key %d", cfg.BindAddr, cfg.RaftAddr, cfg.Join, len(cfg.GossipKey))
			}
			if cfg.Bootstrap != c.bootstrap {
				t.Fatalf("bootstrap %v, want %v", cfg.Bootstrap, c.bootstrap)
			}
			if cfg.StateDir != filepath.Join(dir, "cluster") {
				t.Fatalf("state dir %q", cfg.StateDir)
			}
		})
	}
}

func TestInternalListenAddr(t *testing.T) {
	for _, tc := range []struct {
		o    clusterOptions
		want string
	}{
		{clusterOptions{}, "127.0.0.1:0"},
		{clusterOptions{join: []string{"x:1"}}, "0.0.0.0:7948"},
		{clusterOptions{bind: "10.0.0.1:8000"}, "10.0.0.1:8002"},
		{clusterOptions{bind: "10.0.0.1:0"}, "10.0.0.1:0"},
	} {
		if got, err := internalListenAddr(tc.o); err != nil || got != tc.want {
			t.Errorf("internalListenAddr(%+v) = %q, %v; want %q", tc.o, got, err, tc.want)
		}
	}
	if _, err := internalListenAddr(clusterOptions{bind: "nonsense"}); err == nil {
		t.Error("internalListenAddr accepted a bind without a port")
	}
}
