package cluster

import (
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/wasmpod/wasmpod/cluster/internal/membership"
)

// Config of a cluster node. Start from DefaultConfig(); a zero-flag single
// node only needs a NodeName (DefaultConfig uses the hostname).
type Config struct {
	// NodeName is unique in the cluster; it is the Raft server ID too.
	NodeName string
	// BindAddr is the gossip address (TCP and UDP), host:port.
	BindAddr string
	// AdvertiseAddr is the gossip address peers use; "" lets memberlist pick
	// a private IP of this host.
	AdvertiseAddr string
	// RaftAddr is the Raft + forwarding RPC address (TCP); "" means the
	// gossip IP with the gossip port + 1.
	RaftAddr string
	// Join lists gossip addresses of existing members.
	Join []string
	// GossipKey encrypts and authenticates gossip (16, 24 or 32 bytes). Use
	// LoadGossipKey for a key file. nil disables encryption.
	GossipKey []byte
	// ClusterLabel is bound into every gossip packet; nodes with another
	// label drop them. It is bound into the derived cluster CA too.
	ClusterLabel string
	// TLS gives the certificates of the node-to-node connections (bring-your-own PKI). When
	// empty, every node derives the cluster CA from GossipKey and issues its own certificate:
	// a key is all a secure cluster needs.
	TLS TLSConfig
	// InsecureCluster lets a multi-node cluster run with neither a key nor certificates, every
	// node-to-node connection in the clear and unauthenticated (labs only). Without it such a
	// configuration is refused with ErrInsecure.
	InsecureCluster bool
	// StateDir holds Raft state in StateDir/raft; "" keeps it in memory (a
	// restarted node then starts from nothing).
	StateDir string
	// Bootstrap decides whether this node may form a one-voter cluster.
	Bootstrap BootstrapMode
	// Queue tunes the replicated work queue.
	Queue QueueConfig
	// Gossip and election timings.
	Gossip   GossipConfig
	Election ElectionConfig
	// LogOutput receives memberlist and Raft logs; nil discards them.
	LogOutput io.Writer
}

// BootstrapMode says when a node bootstraps a one-voter Raft cluster.
type BootstrapMode int

const (
	// BootstrapAuto bootstraps when there is no Raft state and no Join
	// address: the first node of a cluster, or a single node.
	BootstrapAuto BootstrapMode = iota
	// BootstrapNever waits to be added as a voter by an existing leader.
	BootstrapNever
	// BootstrapAlways bootstraps when there is no state, even with Join
	// addresses (for restoring a cluster from one node).
	BootstrapAlways
)

// GossipConfig tunes memberlist.
type GossipConfig struct {
	// Profile is "lan" (memberlist's DefaultLANConfig) or "local".
	Profile string
	// RejoinInterval: how often to re-join known peers that are not alive,
	// because memberlist never probes a dead node again.
	RejoinInterval time.Duration
	// DropRate and Delay inject faults into gossip in user space (tests on kernels without tc
	// netem): each outgoing UDP packet is dropped with probability DropRate, and packets and
	// stream dials are delayed uniformly in [Delay/2, 3*Delay/2]. Zero in production.
	DropRate float64
	Delay    time.Duration
}

// DefaultGossipConfig: LAN timings (1 s probes, suspicion 4*log(N)) and a
// rejoin every 5 s.
func DefaultGossipConfig() GossipConfig {
	return GossipConfig{
		Profile:        "lan",           // memberlist's LAN profile: tested, tolerant of a loaded host
		RejoinInterval: 5 * time.Second, // bounds how long a healed partition stays split
	}
}

// ElectionConfig tunes Raft and the leases.
type ElectionConfig struct {
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration
	// DefaultTTL applies when a campaign gives no TTL; MinTTL and MaxTTL bound it.
	DefaultTTL, MinTTL, MaxTTL time.Duration
	// MaxClockDrift is the relative clock-rate error tolerated between two
	// nodes: holders shorten their view of a lease by it, the leader
	// lengthens its own.
	MaxClockDrift float64
	// ReapInterval: how often the leader frees expired leases.
	ReapInterval time.Duration
	// ReconcileInterval: how often the leader aligns voters with membership.
	ReconcileInterval time.Duration
	// RemoveDeadAfter: a voter dead this long is removed (0: never); a dead
	// voter is never removed when fewer than MinVoters would remain.
	RemoveDeadAfter time.Duration
	MinVoters       int
	// ForwardWait: how long an operation waits for a leader to appear.
	ForwardWait time.Duration
	// SnapshotThreshold: Raft snapshots its state (and may compact its log) once this many
	// entries were added since the last snapshot; SnapshotInterval is how often it checks
	// (randomized up to twice that). Zero takes the default.
	SnapshotThreshold uint64
	SnapshotInterval  time.Duration
}

// QueueConfig tunes the work queue; zero fields take the defaults. The leader's values apply to every node's replica: they
// travel with each command.
type QueueConfig struct {
	// LeaseDuration is how long a worker holds a task without a heartbeat.
	LeaseDuration time.Duration
	// MaxAttempts is the number of deliveries before a task is dead-lettered, for pipelines
	// that set none.
	MaxAttempts int
	// Backoff is the delay before the second delivery (doubling after), for pipelines that
	// set none.
	Backoff time.Duration
	// MaxBlobBytes bounds one stored file.
	MaxBlobBytes int64
	// LeaseWait is how long an idle worker's lease request waits on the leader for work.
	LeaseWait time.Duration
	// Retention is how long a finished job (its tasks, outputs and dead letters) is kept;
	// negative keeps everything.
	Retention time.Duration
	// BlobGrace is how long a stored file no job refers to is kept (an upload waiting for its
	// submit, an output waiting for its completion) before garbage collection removes it.
	BlobGrace time.Duration
	// PeerBlobBytes and PeerBlobFiles bound what one peer may push into this node's store that
	// no replicated command refers to yet (files pushed ahead of their submit or completion).
	PeerBlobBytes int64
	PeerBlobFiles int
	// InlineOutputMax is the largest task output that travels in its completion's log entry,
	// made durable by the log (on a quorum's disks) instead of by an fsync of its own file and
	// a copy to a peer before the completion is proposed; the file is written at the next
	// flush (four times a second, and before every snapshot). 0: the default; negative: every
	// output is a file first.
	InlineOutputMax int64
}

// DefaultQueueConfig returns the defaults.
func DefaultQueueConfig() QueueConfig {
	return QueueConfig{
		// 15 s: a worker heartbeats every third of it, so a killed worker's task is redelivered
		// within 15 s while a live one costs one log entry every 5 s.
		LeaseDuration: 15 * time.Second,
		// 5: enough to ride out a node restart or two; a task failing five times is poison.
		MaxAttempts: 5,
		// 1 s: transient failures (a node restarting) last seconds.
		Backoff: time.Second,
		// 1 GiB: a stage's file, not a data set; larger inputs should be split.
		MaxBlobBytes: 1 << 30,
		// 5 s: an idle worker's request waits on the leader (no log entry while nothing is
		// ready) and is answered the moment a task becomes ready.
		LeaseWait: 5 * time.Second,
		// 7 days: long enough to fetch a job's outputs and look at its dead letters after a
		// weekend, short enough that a busy queue's disk use stays bounded.
		Retention: 7 * 24 * time.Hour,
		// 1 h: far longer than an upload takes to be submitted or a stage run to complete.
		BlobGrace: time.Hour,
		// 8 GiB and 10,000 files: a node's uploads and outputs in flight (eight files of the
		// largest size), while a misbehaving member cannot fill another's disk.
		PeerBlobBytes: 8 << 30,
		PeerBlobFiles: 10_000,
		// 16 KiB: a record-sized output, whose own fsyncs (file, directory) and copy to a peer
		// cost far more than its bytes in the log entry; larger outputs would make the log,
		// which every voter writes and replays, grow faster than its snapshots trim it.
		InlineOutputMax: 16 << 10,
	}
}

// DefaultElectionConfig gives a failover of about one lease TTL (2-2.2 s) on a LAN.
func DefaultElectionConfig() ElectionConfig {
	return ElectionConfig{
		HeartbeatTimeout:   500 * time.Millisecond, // followers notice a dead leader in 0.5-1.5 s: inside one lease TTL
		ElectionTimeout:    500 * time.Millisecond, // split votes retry within 0.5-1 s
		LeaderLeaseTimeout: 500 * time.Millisecond, // a cut-off leader steps down after 0.5 s
		CommitTimeout:      50 * time.Millisecond,  // Raft's default
		DefaultTTL:         2 * time.Second,        // failover = TTL-ish; renew every TTL/3
		MinTTL:             500 * time.Millisecond, // below this, renewals race Raft commits
		MaxTTL:             time.Hour,              // guards against a forgotten, immortal lease
		MaxClockDrift:      0.02,                   // 2 %: far above real quartz drift, cheap margin
		ReapInterval:       100 * time.Millisecond, // adds at most 0.1 s to failover
		ReconcileInterval:  time.Second,            // catches membership events that were missed
		RemoveDeadAfter:    time.Minute,            // a crash is usually a restart; don't churn voters
		MinVoters:          3,                      // never shrink below a quorum that survives one failure
		ForwardWait:        3 * time.Second,        // covers one Raft election
		SnapshotThreshold:  4096,                   // a snapshot per ~4096 grants, renews and queue commands
		SnapshotInterval:   2 * time.Minute,        // Raft's default: the check is cheap, snapshots are not
	}
}

// DefaultConfig is a single node on all interfaces, port 7946, no
// encryption, Raft state in memory.
func DefaultConfig() Config {
	host, _ := os.Hostname()
	return Config{
		NodeName:  host,           // unique per host in the usual one-node-per-host deployment
		BindAddr:  "0.0.0.0:7946", // memberlist's conventional port
		Bootstrap: BootstrapAuto,  // a lone node elects itself, a joining node waits to be added
		Gossip:    DefaultGossipConfig(),
		Election:  DefaultElectionConfig(),
		Queue:     DefaultQueueConfig(),
	}
}

// LoadGossipKey reads a key file: base64 text (as `consul keygen` or
// `openssl rand -base64 32` write) or 16/24/32 raw bytes.
func LoadGossipKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cluster: gossip key file: %w", err)
	}
	k, err := membership.ParseKey(b)
	if err != nil {
		return nil, fmt.Errorf("cluster: gossip key file %s: %w", path, err)
	}
	return k, nil
}

func (c *Config) validate() error {
	if c.NodeName == "" {
		return fmt.Errorf("%w: empty node name", ErrInvalid)
	}
	if c.Gossip.DropRate < 0 || c.Gossip.DropRate >= 1 || c.Gossip.Delay < 0 {
		return fmt.Errorf("%w: gossip fault injection: drop rate in [0, 1), delay >= 0", ErrInvalid)
	}
	if _, _, err := splitHostPort(c.BindAddr); err != nil {
		return fmt.Errorf("%w: bind address %q: %v", ErrInvalid, c.BindAddr, err)
	}
	e := c.Election
	if e.MinTTL <= 0 || e.MaxTTL < e.MinTTL || e.DefaultTTL < e.MinTTL || e.DefaultTTL > e.MaxTTL {
		return fmt.Errorf("%w: TTL bounds", ErrInvalid)
	}
	if e.HeartbeatTimeout <= 0 || e.ElectionTimeout <= 0 || e.LeaderLeaseTimeout <= 0 || e.LeaderLeaseTimeout > e.HeartbeatTimeout {
		return fmt.Errorf("%w: raft timings", ErrInvalid)
	}
	if e.MaxClockDrift < 0 || e.MaxClockDrift >= 0.5 {
		return fmt.Errorf("%w: max clock drift", ErrInvalid)
	}
	d, qc := DefaultQueueConfig(), &c.Queue
	if qc.LeaseDuration == 0 {
		qc.LeaseDuration = d.LeaseDuration
	}
	if qc.MaxAttempts == 0 {
		qc.MaxAttempts = d.MaxAttempts
	}
	if qc.Backoff == 0 {
		qc.Backoff = d.Backoff
	}
	if qc.MaxBlobBytes == 0 {
		qc.MaxBlobBytes = d.MaxBlobBytes
	}
	if qc.LeaseWait == 0 {
		qc.LeaseWait = d.LeaseWait
	}
	if qc.Retention == 0 {
		qc.Retention = d.Retention
	}
	if qc.BlobGrace == 0 {
		qc.BlobGrace = d.BlobGrace
	}
	if qc.PeerBlobBytes == 0 {
		qc.PeerBlobBytes = d.PeerBlobBytes
	}
	if qc.PeerBlobFiles == 0 {
		qc.PeerBlobFiles = d.PeerBlobFiles
	}
	if qc.InlineOutputMax == 0 {
		qc.InlineOutputMax = d.InlineOutputMax
	}
	if qc.LeaseDuration < 100*time.Millisecond || qc.MaxAttempts < 1 || qc.Backoff < 0 || qc.MaxBlobBytes < 1 || qc.LeaseWait < 0 || qc.BlobGrace < 0 {
		return fmt.Errorf("%w: queue settings: lease >= 100ms, max attempts >= 1, backoff >= 0, max blob >= 1 byte, blob grace >= 0", ErrInvalid)
	}
	switch c.GossipKeyLen() {
	case 0, 16, 24, 32:
	default:
		return fmt.Errorf("%w: gossip key: %v", ErrInvalid, membership.ErrKeyLength)
	}
	return c.checkSecure()
}

// GossipKeyLen is the key length in bytes (0: no encryption).
func (c *Config) GossipKeyLen() int { return len(c.GossipKey) }

func splitHostPort(a string) (string, int, error) {
	h, p, err := net.SplitHostPort(a)
	if err != nil {
		return "", 0, err
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < 0 || n > 65535 {
		return "", 0, fmt.Errorf("bad port %q", p)
	}
	return h, n, nil
}
