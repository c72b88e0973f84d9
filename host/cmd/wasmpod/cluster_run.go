package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/wasmpod/wasmpod/cluster"
	"github.com/wasmpod/wasmpod/host/internal/clusterlog"
)

// clusterOptions are the cluster flags of `wasmpod run`.
type clusterOptions struct {
	nodeName  string
	bind      string
	advertise string
	raftAddr  string
	join      []string
	keyFile   string
	label     string
	// TLS between nodes: bring-your-own PKI, or an explicitly insecure lab cluster.
	tlsCA, tlsCert, tlsKey string
	insecure               bool
	// bootstrapNode names the one node that forms a new cluster (see the flag).
	bootstrapNode string

	queueLease    time.Duration
	queueAttempts int
	queueBackoff  time.Duration
	queueKeep     time.Duration

	snapshotThreshold uint64
	snapshotInterval  time.Duration
}

// Gossip bind defaults. A host given no cluster flag at all is a cluster of one that nobody
// joins, so it binds loopback on ephemeral ports: several standalone hosts (tests, a laptop)
// never fight for a port and nothing is exposed. Any of --bind, --join, --advertise or
// --raft-addr makes it a cluster member, bound to memberlist's conventional port on every
// interface (Raft on the gossip port + 1).
const (
	standaloneBind = "127.0.0.1:0"
	standaloneRaft = "127.0.0.1:0"
	clusterBind    = "0.0.0.0:7946"
)

func addClusterFlags(cmd *cobra.Command, o *clusterOptions) {
	f := cmd.Flags()
	f.StringVar(&o.nodeName, "node-name", "", "unique node name in the cluster (default: the hostname)")
	f.StringVar(&o.bind, "bind", "", "gossip address, TCP and UDP (default: "+clusterBind+" in a cluster; "+standaloneBind+" when no cluster flag is given)")
	f.StringVar(&o.advertise, "advertise", "", "gossip address peers dial (default: the bind address, or a private IP when bound to 0.0.0.0)")
	f.StringVar(&o.raftAddr, "raft-addr", "", "Raft and forwarding RPC address, TCP (default: gossip port + 1)")
	f.StringSliceVar(&o.join, "join", nil, "gossip addresses of existing members, comma-separated; omit on the first node")
	f.StringVar(&o.keyFile, "gossip-key-file", "", "gossip encryption key (base64 of 16, 24 or 32 bytes, e.g. `openssl rand -base64 32`); members need the same key")
	f.StringVar(&o.label, "cluster-label", "", "cluster label bound into every gossip packet; members need the same label")
	f.StringVar(&o.tlsCA, "tls-ca", "", "cluster CA certificate (PEM) for mutual TLS between nodes, with --tls-cert and --tls-key (`wasmpod tls ca`); default: a CA derived from the gossip key")
	f.StringVar(&o.tlsCert, "tls-cert", "", "this node's certificate (PEM), signed by --tls-ca, naming --node-name (`wasmpod tls cert`)")
	f.StringVar(&o.tlsKey, "tls-key", "", "this node's private key (PEM) for --tls-cert")
	f.BoolVar(&o.insecure, "insecure-cluster", false, "LAB ONLY: allow a multi-node cluster with no gossip key and no certificates; every node-to-node port then accepts anyone (a warning is logged and shown in /readyz)")
	f.StringVar(&o.bootstrapNode, "bootstrap-node", "", "name of the one node that forms the cluster: it bootstraps when it has no Raft state, every other node waits to be added; for nodes started from one template with the same --join list (a StatefulSet: --bootstrap-node=wasmpod-0). Default: a node bootstraps when it has no Raft state and no --join")
	q := cluster.DefaultQueueConfig()
	f.DurationVar(&o.queueLease, "queue-lease", q.LeaseDuration, "work queue: how long a worker holds a task without a heartbeat (a dead worker's task is redelivered after it; the leader's value applies)")
	f.IntVar(&o.queueAttempts, "queue-max-attempts", q.MaxAttempts, "work queue: deliveries before a task is dead-lettered, for pipelines that set no maxAttempts")
	f.DurationVar(&o.queueBackoff, "queue-backoff", q.Backoff, "work queue: delay before the second delivery, doubling after, for pipelines that set no backoff")
	f.DurationVar(&o.queueKeep, "queue-retention", q.Retention, "work queue: how long finished jobs, their outputs and dead letters are kept (0: forever)")
	e := cluster.DefaultElectionConfig()
	f.Uint64Var(&o.snapshotThreshold, "raft-snapshot-threshold", e.SnapshotThreshold, "Raft: snapshot the replicated state (elections and work queue) once this many log entries were added since the last snapshot")
	f.DurationVar(&o.snapshotInterval, "raft-snapshot-interval", e.SnapshotInterval, "Raft: how often to check --raft-snapshot-threshold (randomized up to twice this)")
}

// standalone reports whether no flag asks for a multi-node cluster.
func (o clusterOptions) standalone() bool {
	// TLS flags and --insecure-cluster say how to secure a cluster, not that this is one.
	return o.bind == "" && o.advertise == "" && o.raftAddr == "" && len(o.join) == 0
}

// clusterConfig turns the flags into a cluster.Config; Raft state goes to <stateDir>/cluster.
func clusterConfig(o clusterOptions, stateDir string, log *slog.Logger) (cluster.Config, error) {
	cfg := cluster.DefaultConfig()
	if o.nodeName != "" {
		cfg.NodeName = o.nodeName
	}
	if cfg.NodeName == "" {
		return cfg, fmt.Errorf("--node-name: the hostname is empty, name this node")
	}
	if o.standalone() {
		cfg.BindAddr, cfg.RaftAddr = standaloneBind, standaloneRaft
	} else {
		cfg.BindAddr = clusterBind
		if o.bind != "" {
			cfg.BindAddr = o.bind
		}
		cfg.AdvertiseAddr, cfg.RaftAddr = o.advertise, o.raftAddr
	}
	for _, j := range o.join {
		if j = strings.TrimSpace(j); j != "" {
			cfg.Join = append(cfg.Join, j)
		}
	}
	if o.keyFile != "" {
		k, err := cluster.LoadGossipKey(o.keyFile)
		if err != nil {
			return cfg, fmt.Errorf("--gossip-key-file: %w", err)
		}
		cfg.GossipKey = k
	}
	cfg.ClusterLabel = o.label
	if o.tlsCA != "" || o.tlsCert != "" || o.tlsKey != "" {
		t, err := cluster.LoadTLS(o.tlsCA, o.tlsCert, o.tlsKey)
		if err != nil {
			return cfg, fmt.Errorf("--tls-ca/--tls-cert/--tls-key: %w", err)
		}
		cfg.TLS = t
	}
	cfg.InsecureCluster = o.insecure
	if o.bootstrapNode != "" {
		if o.standalone() {
			return cfg, errors.New("--bootstrap-node: only for a cluster (give --join, --bind or --advertise)")
		}
		// A template gives every node the same --join list, its own address included (joining
		// itself does no harm), so Join says nothing about who comes first.
		cfg.Bootstrap = cluster.BootstrapNever
		if cfg.NodeName == o.bootstrapNode {
			cfg.Bootstrap = cluster.BootstrapAlways
		}
	}
	if o.queueLease > 0 {
		cfg.Queue.LeaseDuration = o.queueLease
	}
	if o.snapshotThreshold > 0 {
		cfg.Election.SnapshotThreshold = o.snapshotThreshold
	}
	if o.snapshotInterval > 0 {
		cfg.Election.SnapshotInterval = o.snapshotInterval
	}
	if o.queueAttempts > 0 {
		cfg.Queue.MaxAttempts = o.queueAttempts
	}
	if o.queueBackoff > 0 {
		cfg.Queue.Backoff = o.queueBackoff
	}
	switch {
	case o.queueKeep > 0:
		cfg.Queue.Retention = o.queueKeep
	case o.queueKeep == 0:
		cfg.Queue.Retention = -1 // keep everything
	}
	cfg.StateDir = filepath.Join(stateDir, "cluster")
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return cfg, fmt.Errorf("cluster state dir: %w", err)
	}
	cfg.LogOutput = clusterlog.New(log)
	return cfg, nil
}

// internalListenAddr is the default --internal address: loopback and an ephemeral port for a
// standalone node (as its gossip), else the gossip bind host with the gossip port + 2 (Raft
// has + 1).
func internalListenAddr(o clusterOptions) (string, error) {
	if o.standalone() {
		return "127.0.0.1:0", nil
	}
	bind := o.bind
	if bind == "" {
		bind = clusterBind
	}
	host, port, err := net.SplitHostPort(bind)
	if err != nil {
		return "", fmt.Errorf("--bind %q: %w", bind, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p == 0 {
		return net.JoinHostPort(host, "0"), nil
	}
	return net.JoinHostPort(host, strconv.Itoa(p+2)), nil
}

// clusterAPI is what the admin API serves of the cluster node: the node itself (status,
// members) and its election API, as one value (admin.ClusterNode and the console's list).
type clusterAPI struct {
	*cluster.Node
	el *cluster.Elections
}

func (c clusterAPI) Get(ctx context.Context, name string) (cluster.Lease, error) {
	return c.el.Get(ctx, name)
}

func (c clusterAPI) Campaign(ctx context.Context, name string, r cluster.CampaignRequest) (cluster.Lease, error) {
	return c.el.Campaign(ctx, name, r)
}

func (c clusterAPI) Renew(ctx context.Context, name string, r cluster.RenewRequest) (cluster.Lease, error) {
	return c.el.Renew(ctx, name, r)
}

func (c clusterAPI) Resign(ctx context.Context, name string, r cluster.ResignRequest) (cluster.Lease, error) {
	return c.el.Resign(ctx, name, r)
}

func (c clusterAPI) Watch(ctx context.Context, name string, afterIndex uint64) (cluster.Lease, error) {
	return c.el.Watch(ctx, name, afterIndex)
}

// Elections lists the elections of the node's replica (for the console).
func (c clusterAPI) Elections() []cluster.Lease { return c.el.List() }
