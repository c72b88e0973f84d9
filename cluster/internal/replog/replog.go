// Package replog is the cluster's replicated log: it hosts hashicorp/raft (its transport over
// the node's mutual-TLS stream port, the append-only log store, voter reconciliation with the
// membership view, snapshots) and offers one seam to every feature replicated through it.
//
// A feature registers a Kind: a tag byte, a Machine (the replicated state: Apply, Snapshot,
// Restore) and a Lead function (what the leader does with one command: check it against the
// node that sent it, read the replica, propose entries). Callers anywhere in the cluster run a
// command with Log.Do, which runs Lead here when this node leads and otherwise forwards the
// command to the leader over one size-bounded framing on the mTLS port, with one retry policy
// and leader-side cancellation when the forwarding node hangs up. Adding a replicated feature
// is one Kind; no other feature's code changes.
package replog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/wasmpod/wasmpod/cluster/internal/mtls"
)

// Errors callers test.
var (
	// ErrNoLeader: no leader answered within the caller's time (no quorum, or an election that
	// outlasted it). Do retries it internally; Lead returns it when this node stops leading.
	ErrNoLeader = errors.New("no raft leader (no quorum)")
	// ErrClosed: the log was shut down.
	ErrClosed = errors.New("replicated log closed")
	// ErrUnknownKind: no Kind is registered with the tag (here or on the leader).
	ErrUnknownKind = errors.New("unknown command kind")
	// ErrTooLarge: a command or answer exceeded its kind's bound.
	ErrTooLarge = errors.New("request too large")
	// ErrMixedVersion: the command's kind is unknown to a release some voter still runs, so it
	// is not proposed until every voter is upgraded.
	ErrMixedVersion = errors.New("command kind not supported while voters of an older release remain")
)

// Machine is the replicated state of one command kind. Apply, Snapshot and Restore are called
// by Raft's state-machine goroutine, one at a time and never concurrently with each other; the
// persist function Snapshot returns runs concurrently with later Applies. Reads of the state
// by other goroutines are the machine's own business (it locks what it shares).
type Machine interface {
	// Apply applies one committed entry's body (the entry without its tag byte) at the log
	// index. It must be deterministic: every replica applies the same entries in the same
	// order. Its result goes to the leader's Propose caller.
	Apply(index uint64, body []byte) any
	// Snapshot captures the state at this point of the log: persist streams it (it may run
	// while later entries are applied), release frees what it held.
	Snapshot() (persist func(io.Writer) error, release func(), err error)
	// Restore replaces the state with what persist wrote. An empty stream means the snapshot
	// did not cover this kind (written by an older release): keep or reset the state as the
	// kind's format requires.
	Restore(r io.Reader) error
}

// BatchMachine is a Machine that can apply consecutive committed entries of its kind at once
// (Raft hands them over in batches), for example in one storage transaction. ApplyBatch must
// leave the state and give the results that Apply, called on each entry in order, would.
type BatchMachine interface {
	Machine
	// ApplyBatch applies the bodies at the log indexes, in order (len(bodies) ==
	// len(indexes) >= 2), and returns one result per body.
	ApplyBatch(indexes []uint64, bodies [][]byte) []any
}

// Caller is who asked for a command: the forwarding node's name from its certificate (or this
// node's own name for a local call).
type Caller struct {
	Node string
	// Local: the command was run by this node itself (never forwarded).
	Local bool
	// Secure: the cluster authenticates its members (mTLS); without it Node is "" for
	// forwarded commands and nothing can be checked.
	Secure bool
}

// Lead runs one command on the leader for the caller. It may run concurrently with itself and
// with Apply. It returns the kind's answer; domain errors belong in the answer bytes. An error
// wrapping ErrNoLeader makes Do retry; any other error is returned to Do's caller as text.
// ctx ends when the caller gives up or, for a forwarded command, hangs up.
type Lead func(ctx context.Context, from Caller, cmd []byte) ([]byte, error)

// Kind is one replicated feature.
type Kind struct {
	// Tag is the first byte of the kind's log entries and forwarded commands (not 0).
	Tag byte
	// Name names the kind in errors.
	Name    string
	Machine Machine
	Lead    Lead
	// MaxCommand and MaxAnswer bound a forwarded command and its answer (0: 64 KiB, 1 MiB).
	MaxCommand, MaxAnswer int
	// Legacy is the kind's forwarding stream in releases before replog; nil for a kind those
	// releases do not know (Do refuses it with ErrMixedVersion while such a voter remains).
	Legacy *Legacy
}

// Peer is what the membership layer knows about a possible voter.
type Peer struct {
	ID       string
	RaftAddr string
	Alive    bool
	Left     bool
	Since    time.Time // of the last state change
	// NoVote: alive but must not be added as a voter, as it would not apply the log (a
	// release that does not know commands the log holds). It is left as it is when already
	// one: removal follows Left and Alive alone.
	NoVote bool
}

// Timing groups the clock-related settings.
type Timing struct {
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration
	ReconcileInterval  time.Duration // how often the leader reconciles voters with membership
	RemoveDeadAfter    time.Duration // 0: never remove dead voters
	MinVoters          int           // never remove a dead voter below this many
}

// Config of the log.
type Config struct {
	NodeID    string
	BindAddr  string // host:port for Raft and the streams
	Advertise string // host:port others dial; defaults to BindAddr
	DataDir   string // "" keeps Raft state in memory
	Bootstrap bool   // bootstrap a one-voter cluster if there is no state yet
	Timing    Timing
	LogOutput io.Writer
	Peers     func() []Peer // membership view; nil means no peers
	// ForwardWait is how long Do keeps retrying while there is no leader, when ctx has no
	// earlier deadline.
	ForwardWait time.Duration
	Kinds       []Kind
	// Streams serve extra connection kinds on the port (not 'R', 'D' or a legacy stream). A
	// handler can learn the verified peer node with mtls.PeerName.
	Streams map[byte]func(net.Conn)
	// SnapshotThreshold, SnapshotInterval and TrailingLogs are Raft's (0: 4096 entries, Raft's
	// interval, 4096 entries kept after a snapshot for followers that lag).
	SnapshotThreshold uint64
	SnapshotInterval  time.Duration
	TrailingLogs      uint64
	// TLS is the cluster identity every connection of the port uses; nil means plain TCP (an
	// insecure cluster).
	TLS *mtls.Identity
	// Legacy reports whether the named node runs a release before replog (nil: none does).
	Legacy func(id string) bool
}

// Log is a running replicated log.
type Log struct {
	cfg   Config
	kinds map[byte]*Kind
	fsm   *fsm
	raft  *raft.Raft
	// ready is closed once raft and the pools are set: the mux accepts streams while Raft
	// still restores its snapshots, and a forwarded command must wait for it (waitReady).
	ready chan struct{}
	trans *raft.NetworkTransport
	mux   *mux
	store *walStore // nil when Raft state is in memory
	// dialer opens every outgoing connection to another node's port.
	dialer Dialer
	// fwdPool keeps forwarding connections to the leader; legacyPools those of the old
	// streams; pools are every pool made here, closed at Shutdown.
	fwdPool     *Pool
	legacyPools map[byte]*Pool
	poolMu      sync.Mutex
	pools       []*Pool

	stop chan struct{}
	// raftStopping is closed when Raft begins to stop (stoppingOnce), raftDown once
	// Log.Shutdown's Raft shutdown has returned: see await.
	raftStopping chan struct{}
	stoppingOnce sync.Once
	raftDown     chan struct{}
	wg           sync.WaitGroup
	closeOnce    sync.Once
	// closed is closed when the shutdown has ended; closeErr (written before) is its error.
	closed   chan struct{}
	closeErr error
	kick     chan struct{}
	// barrierTerm is the Raft term in which this leader has applied every entry of earlier
	// terms (a Barrier is a log write: once per term).
	barrierTerm atomic.Uint64

	logger hclog.Logger
	// checks is what this leader learnt from checking members on their Raft port (see
	// admission), by member id; checksTerm the term they were made in. Only the leader loop's
	// goroutine touches them.
	checks     map[string]*memberCheck
	checksTerm uint64
}

// Start opens the Raft state and starts the node.
func Start(cfg Config) (*Log, error) {
	if cfg.Advertise == "" {
		cfg.Advertise = cfg.BindAddr
	}
	if cfg.ForwardWait == 0 {
		cfg.ForwardWait = 3 * cfg.Timing.ElectionTimeout
	}
	if cfg.Timing.ReconcileInterval <= 0 {
		cfg.Timing.ReconcileInterval = time.Second
	}
	kinds := map[byte]*Kind{}
	streams := map[byte]func(net.Conn){}
	for i := range cfg.Kinds {
		k := cfg.Kinds[i]
		if k.Tag == 0 || k.Machine == nil || k.Lead == nil || kinds[k.Tag] != nil {
			return nil, fmt.Errorf("replog: kind %q: needs a unique non-zero tag, a machine and a lead function", k.Name)
		}
		if k.MaxCommand <= 0 {
			k.MaxCommand = 64 << 10
		}
		if k.MaxAnswer <= 0 {
			k.MaxAnswer = 1 << 20
		}
		kinds[k.Tag] = &k
	}
	for b, h := range cfg.Streams {
		streams[b] = h
	}
	adv, err := net.ResolveTCPAddr("tcp", cfg.Advertise)
	if err != nil {
		return nil, fmt.Errorf("replog: advertise address: %w", err)
	}
	if adv.IP == nil || adv.IP.IsUnspecified() {
		return nil, fmt.Errorf("replog: advertise address %q must be a routable IP", cfg.Advertise)
	}
	ln, err := net.Listen("tcp", cfg.BindAddr)
	if err != nil {
		return nil, fmt.Errorf("replog: listen: %w", err)
	}
	if adv.Port == 0 { // bound to an ephemeral port (tests)
		adv.Port = ln.Addr().(*net.TCPAddr).Port
		cfg.Advertise = adv.String()
	}
	out := cfg.LogOutput
	if out == nil {
		out = io.Discard
	}
	logger := hclog.New(&hclog.LoggerOptions{Name: "raft " + cfg.NodeID, Output: out, Level: hclog.Info})

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeID)
	rc.HeartbeatTimeout = cfg.Timing.HeartbeatTimeout
	rc.ElectionTimeout = cfg.Timing.ElectionTimeout
	rc.LeaderLeaseTimeout = cfg.Timing.LeaderLeaseTimeout
	rc.CommitTimeout = cfg.Timing.CommitTimeout
	rc.Logger = logger
	rc.SnapshotThreshold = 4096
	rc.TrailingLogs = 4096
	if cfg.SnapshotThreshold > 0 {
		rc.SnapshotThreshold = cfg.SnapshotThreshold
	}
	if cfg.SnapshotInterval > 0 {
		rc.SnapshotInterval = cfg.SnapshotInterval
	}
	if cfg.TrailingLogs > 0 {
		rc.TrailingLogs = cfg.TrailingLogs
	}

	var (
		logs   raft.LogStore
		stable raft.StableStore
		snaps  raft.SnapshotStore
		store  *walStore
	)
	if cfg.DataDir == "" {
		ms := raft.NewInmemStore()
		logs, stable, snaps = ms, ms, raft.NewInmemSnapshotStore()
	} else {
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			ln.Close()
			return nil, fmt.Errorf("replog: data dir: %w", err)
		}
		store, err = openStore(cfg.DataDir, logger)
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("replog: raft store: %w", err)
		}
		fs, err := raft.NewFileSnapshotStoreWithLogger(cfg.DataDir, 2, logger)
		if err != nil {
			ln.Close()
			store.Close()
			return nil, fmt.Errorf("replog: snapshot store: %w", err)
		}
		logs, stable, snaps = store, store, fs
	}
	stored := &receipts{}
	logs = receiptStore{LogStore: logs, r: stored}
	closeStore := func() {
		if store != nil {
			store.Close()
		}
	}

	l := &Log{cfg: cfg, kinds: kinds, store: store, dialer: Dialer{TLS: cfg.TLS}, logger: logger, checks: map[string]*memberCheck{},
		stop: make(chan struct{}), raftStopping: make(chan struct{}), raftDown: make(chan struct{}), closed: make(chan struct{}), ready: make(chan struct{}), kick: make(chan struct{}, 1), legacyPools: map[byte]*Pool{}}
	streams[connDo] = l.serveDo
	for _, k := range kinds {
		if k.Legacy != nil {
			k := k
			streams[k.Legacy.Stream] = func(c net.Conn) { l.serveLegacy(c, k) }
		}
	}
	m := newMux(ln, adv, streams, l.dialer)
	// MaxRPCsInFlight 1 turns Raft's pipelined replication off (see RATIONALE, "No pipelined
	// replication"): a leader that steps down while a pipeline is busy can leave raft.Shutdown
	// waiting forever.
	trans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: raftLayer{m}, MaxPool: 3, Timeout: 2 * time.Second, Logger: logger, MaxRPCsInFlight: 1,
	})
	l.mux, l.trans = m, trans
	l.fsm = &fsm{kinds: kinds, legacyVoters: l.anyLegacyVoter, stored: stored}

	if cfg.Bootstrap {
		has, err := raft.HasExistingState(logs, stable, snaps)
		if err == nil && !has {
			err = raft.BootstrapCluster(rc, logs, stable, snaps, trans, raft.Configuration{Servers: []raft.Server{{
				Suffrage: raft.Voter, ID: rc.LocalID, Address: raft.ServerAddress(cfg.Advertise),
			}}})
		}
		if err != nil {
			trans.Close()
			m.close()
			closeStore()
			return nil, fmt.Errorf("replog: bootstrap: %w", err)
		}
	}
	r, err := raft.NewRaft(rc, l.fsm, logs, stable, snaps, trans)
	if err != nil {
		trans.Close()
		m.close()
		closeStore()
		return nil, fmt.Errorf("replog: raft: %w", err)
	}
	l.raft = r
	l.watchStop()
	l.fwdPool = l.NewPool(connDo, 8, fwdPoolTTL)
	for _, k := range kinds {
		if k.Legacy != nil {
			l.legacyPools[k.Legacy.Stream] = l.NewPool(k.Legacy.Stream, 4, fwdPoolTTL)
		}
	}
	close(l.ready)
	l.wg.Add(1)
	go l.leaderLoop()
	return l, nil
}

// readyWait bounds how long a stream accepted during start-up waits for Raft (snapshot restore).
const readyWait = 30 * time.Second

// waitReady waits until Raft is running, for a stream the mux accepted during start-up; false
// (and the connection closed: the peer retries) if the log stops or start-up takes too long.
func (l *Log) waitReady(c net.Conn) bool {
	select {
	case <-l.ready:
		return true
	default:
	}
	t := time.NewTimer(readyWait)
	defer t.Stop()
	select {
	case <-l.ready:
		return true
	case <-l.stop:
	case <-t.C:
	}
	c.Close()
	return false
}

// NodeID is this node's Raft id.
func (l *Log) NodeID() string { return l.cfg.NodeID }

// Secure reports whether members are authenticated (the port runs mutual TLS).
func (l *Log) Secure() bool { return l.cfg.TLS != nil }

// ForwardWait is the configured retry window of Do.
func (l *Log) ForwardWait() time.Duration { return l.cfg.ForwardWait }

// Stopped is closed at Shutdown.
func (l *Log) Stopped() <-chan struct{} { return l.stop }

// Dial opens a connection of the given stream kind to another node's port, with the cluster's
// TLS identity.
func (l *Log) Dial(addr string, kind byte, timeout time.Duration) (net.Conn, error) {
	return l.dialer.Dial(addr, kind, timeout)
}

// NewPool returns a pool of connections of the given stream kind to other nodes, closed at
// Shutdown.
func (l *Log) NewPool(kind byte, maxIdle int, ttl time.Duration) *Pool {
	p := NewPool(l.dialer, kind, maxIdle, ttl)
	l.poolMu.Lock()
	l.pools = append(l.pools, p)
	l.poolMu.Unlock()
	return p
}

// Kick asks the leader loop to reconcile voters now (on membership events).
func (l *Log) Kick() {
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// Addr is the advertised address of the port.
func (l *Log) Addr() string { return l.cfg.Advertise }

// Status is a snapshot of the Raft node.
type Status struct {
	State   string   `json:"state"`
	Leader  string   `json:"leader"`
	Term    uint64   `json:"term"`
	Applied uint64   `json:"applied_index"`
	Voters  []string `json:"voters"`
}

// Status reports the local Raft view.
func (l *Log) Status() Status {
	_, id := l.raft.LeaderWithID()
	st := Status{State: l.raft.State().String(), Leader: string(id), Term: l.raft.CurrentTerm(), Applied: l.raft.AppliedIndex()}
	st.Voters = l.voters()
	sort.Strings(st.Voters)
	return st
}

// Voters lists the voters of the latest Raft configuration (unsorted; nil when it cannot be
// read).
func (l *Log) Voters() []string { return l.voters() }

func (l *Log) voters() []string {
	var out []string
	if f := l.raft.GetConfiguration(); f.Error() == nil {
		for _, srv := range f.Configuration().Servers {
			if srv.Suffrage == raft.Voter {
				out = append(out, string(srv.ID))
			}
		}
	}
	return out
}

// anyLegacyVoter reports whether some voter runs a release before replog.
func (l *Log) anyLegacyVoter() bool {
	if l.cfg.Legacy == nil || l.raft == nil {
		return false
	}
	for _, v := range l.voters() {
		if v != l.cfg.NodeID && l.cfg.Legacy(v) {
			return true
		}
	}
	return false
}

// ReplicaCurrent reports whether this node's state machines are known to be up to date: a
// leader is known (so the commit index came from it) and everything committed is applied.
// Right after a restart, or cut off from the majority, it is false.
func (l *Log) ReplicaCurrent() bool {
	if l.LeaderAddr() == "" {
		return false
	}
	c := l.raft.CommitIndex()
	return c > 0 && l.raft.AppliedIndex() >= c
}

// LeaderAddr is the current leader's address ("" when unknown).
func (l *Log) LeaderAddr() string {
	addr, _ := l.raft.LeaderWithID()
	return string(addr)
}

// LeaderID is the current leader's id ("" when unknown).
func (l *Log) LeaderID() string {
	_, id := l.raft.LeaderWithID()
	return string(id)
}

// IsLeader reports whether this node is the Raft leader.
func (l *Log) IsLeader() bool { return l.raft.State() == raft.Leader }

// CaughtUp makes sure this leader has applied every entry committed before its term, so that
// reads of its replica see every acknowledged change. Within the term, entries it has not
// applied yet are its own proposals. ErrNoLeader when it is not (or no longer) the leader.
func (l *Log) CaughtUp(timeout time.Duration) error {
	if l.raft.State() != raft.Leader {
		return ErrNoLeader
	}
	term := l.raft.CurrentTerm()
	if l.barrierTerm.Load() == term {
		return nil
	}
	if err := l.await(context.Background(), l.raft.Barrier(timeout)); err != nil {
		return ErrNoLeader
	}
	l.barrierTerm.Store(term)
	return nil
}

// VerifyLeader confirms with a quorum that this node still leads (for linearizable reads).
func (l *Log) VerifyLeader() error {
	if err := l.await(context.Background(), l.raft.VerifyLeader()); err != nil {
		return ErrNoLeader
	}
	return nil
}

// Propose commits one entry of the kind tagged tag (on the leader) and returns its machine's
// Apply result. ErrNoLeader when this node does not lead or loses its quorum before the entry
// commits.
func (l *Log) Propose(tag byte, body []byte, timeout time.Duration) (any, error) {
	if l.kinds[tag] == nil {
		return nil, fmt.Errorf("%w: %q", ErrUnknownKind, tag)
	}
	if l.raft.State() != raft.Leader {
		return nil, ErrNoLeader
	}
	entry := make([]byte, 0, len(body)+1)
	entry = append(append(entry, tag), body...)
	f := l.raft.Apply(entry, timeout)
	if err := l.await(context.Background(), f); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoLeader, err)
	}
	return f.Response(), nil
}

// await waits for f's answer, until ctx ends, or until Raft has stopped. Raft answers a future
// it was handed once the entry commits, fails, or loses its leader, but not always when it
// shuts down: an entry it held (committed, queued for the state machine) when it stopped is
// never answered, and its futures have no shutdown channel (hashicorp/raft#498). A Propose
// waiting for one held the stream that proposed, and with it Shutdown (which waits for the
// streams), for ever (TestNoPipelineAndShutdownAfterStepDowns hung so once on a loaded
// machine; TestProposeAnsweredAtShutdown makes it happen). So the wait for the answer is a
// goroutine of its own. Once Raft has begun to stop (raftStopping: Log.Shutdown, or Raft's own
// shutdown when the node was removed from the voters), await gives it awaitGrace to answer
// what it still can, and gives up at once when Log.Shutdown's Raft shutdown has returned
// (raftDown). An answer never given leaves that goroutine behind, one per such future, for
// the rest of the process (it ends if Raft ever answers).
func (l *Log) await(ctx context.Context, f raft.Future) error {
	answer := make(chan error, 1)
	go func() { answer <- f.Error() }()
	select {
	case err := <-answer:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-l.raftStopping:
	}
	t := time.NewTimer(awaitGrace)
	defer t.Stop()
	select {
	case err := <-answer:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
	case <-l.raftDown:
		select {
		case err := <-answer:
			return err
		default:
		}
	}
	return raft.ErrRaftShutdown
}

// awaitGrace is how long await still waits for an answer once Raft has begun to stop.
const awaitGrace = time.Second

// watchStop registers the Raft observer that closes raftStopping when Raft begins to stop.
// Its filter does it as Raft reports the change (and delivers nothing): no goroutine to own.
func (l *Log) watchStop() {
	l.raft.RegisterObserver(raft.NewObserver(nil, false, func(o *raft.Observation) bool {
		if st, ok := o.Data.(raft.RaftState); ok && st == raft.Shutdown {
			l.stoppingOnce.Do(func() { close(l.raftStopping) })
		}
		return false
	}))
}

// leaderLoop reconciles voters while leader.
func (l *Log) leaderLoop() {
	defer l.wg.Done()
	rec := time.NewTicker(l.cfg.Timing.ReconcileInterval)
	defer rec.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-rec.C:
		case <-l.kick:
		}
		if l.IsLeader() {
			l.reconcile()
		}
	}
}

// reconcile adds alive members as voters (but none marked NoVote, and none that has not proven
// itself on its Raft port: see admission) and removes left ones, dead ones after
// RemoveDeadAfter and voters that fail the check (see removable), never below MinVoters for the
// last two. It first makes sure this leader has applied every entry committed before its term,
// so that the view Peers builds from its state machines (NoVote) does not lag the log a new
// voter would replay.
func (l *Log) reconcile() {
	if l.cfg.Peers == nil {
		return
	}
	timeout := 2 * l.cfg.Timing.ElectionTimeout
	if l.CaughtUp(timeout) != nil {
		return
	}
	f := l.raft.GetConfiguration()
	if f.Error() != nil {
		return
	}
	inCfg := map[string]raft.Server{}
	for _, srv := range f.Configuration().Servers {
		inCfg[string(srv.ID)] = srv
	}
	voters := len(inCfg)
	peers := l.cfg.Peers()
	l.checkMembers(peers, inCfg)
	for _, p := range peers {
		if p.ID == l.cfg.NodeID || p.RaftAddr == "" {
			continue
		}
		srv, ok := inCfg[p.ID]
		switch {
		case p.Alive && !p.NoVote && (!ok || string(srv.Address) != p.RaftAddr):
			if c := l.checks[p.ID]; c != nil && c.passed && c.addr == p.RaftAddr {
				_ = l.await(context.Background(), l.raft.AddVoter(raft.ServerID(p.ID), raft.ServerAddress(p.RaftAddr), 0, timeout))
			}
		case ok && p.Left:
			if l.await(context.Background(), l.raft.RemoveServer(raft.ServerID(p.ID), 0, timeout)) == nil {
				voters--
			}
		case ok && !p.Alive && l.cfg.Timing.RemoveDeadAfter > 0 &&
			time.Since(p.Since) > l.cfg.Timing.RemoveDeadAfter && voters-1 >= l.cfg.Timing.MinVoters:
			if l.await(context.Background(), l.raft.RemoveServer(raft.ServerID(p.ID), 0, timeout)) == nil {
				voters--
			}
		case ok && p.Alive && voters-1 >= l.cfg.Timing.MinVoters && l.removable(p.ID):
			c := l.checks[p.ID]
			if err := l.await(context.Background(), l.raft.RemoveServer(raft.ServerID(p.ID), 0, timeout)); err == nil {
				voters--
				l.logger.Warn("removed a voter that fails the check on its Raft port",
					"member", p.ID, "address", c.addr, "failures", c.fails, "since", c.since, "reason", c.err)
			}
		}
	}
}

// Admission of voters. A gossip member is only a claim: gossip takes the gossip key (with
// bring-your-own PKI and no key, nothing at all), and a member that cannot take part in Raft
// (a certificate of another CA, none, or no Raft port at all) would still count in every
// quorum once a voter. A few of them made a quorum the real nodes could not reach, and since
// only a leader removes voters, Raft stopped for good. So the leader adds a member only after a
// check on the member's advertised Raft address: a mutual TLS handshake with the cluster's
// identity, the very one the transport makes (the peer's certificate chains to the cluster CA
// and names a current member), whose certificate names exactly that member. An insecure
// cluster (no TLS) has nothing to prove, and the check is that the port answers. A member that
// fails is logged with the reason and checked again with backoff (ReconcileInterval doubling
// to checkBackoffMax), never added meanwhile.
//
// Voters are checked too, every recheckInterval while they pass (and anew by every new
// leader). One added before this check existed (by an earlier release or by hand) that fails
// it is removed, as long as MinVoters remain (see removable), while a leader exists. What no
// leader can undo: voters without a quorum among the real nodes (three real nodes and three or
// more impostors made by an earlier release) elect no leader, and nothing here runs; the
// operator recovers Raft's configuration by hand (hashicorp/raft's peers.json), as after losing
// a quorum of nodes.
const (
	checkTimeout    = 2 * time.Second // the transport's own dial timeout
	checkBackoffMax = 30 * time.Second
	recheckInterval = 30 * time.Second
	// impostorStrikes: consecutive certificate failures (spaced by the backoff) after which a
	// voter is taken for an impostor rather than for a node whose check raced a membership
	// change (the leader's membership test not knowing it yet).
	impostorStrikes = 3
)

// errWrongMember: the certificate at a member's Raft address, valid for the cluster, names
// another node.
var errWrongMember = errors.New("the certificate at the member's Raft address names another node")

// memberCheck is the latest outcome of checking one member on its Raft port.
type memberCheck struct {
	addr   string    // the Raft address checked
	passed bool      // the last check passed
	fails  int       // consecutive failures
	since  time.Time // the first of those failures
	next   time.Time // not checked again before, unless the address changes
	err    error     // the last failure
}

// certFailure reports whether err is the peer failing the certificate check (as opposed to a
// port that does not answer, which a crashed or partitioned node does too).
func certFailure(err error) bool {
	return errors.Is(err, mtls.ErrBadPeer) || errors.Is(err, mtls.ErrNotMember) || errors.Is(err, errWrongMember)
}

// removable reports whether the voter id has failed the check long enough to be removed: the
// certificate check impostorStrikes times in a row, or any check for RemoveDeadAfter (a voter
// that gossip calls alive but whose Raft port never answers counts for no quorum, like a dead
// one).
func (l *Log) removable(id string) bool {
	c := l.checks[id]
	if c == nil || c.passed || c.fails == 0 {
		return false
	}
	if certFailure(c.err) && c.fails >= impostorStrikes {
		return true
	}
	return l.cfg.Timing.RemoveDeadAfter > 0 && time.Since(c.since) > l.cfg.Timing.RemoveDeadAfter
}

// checkMembers checks, concurrently, every alive member that this leader would add as a voter
// and every alive voter, when its last check is due, and records the outcomes in l.checks.
func (l *Log) checkMembers(peers []Peer, inCfg map[string]raft.Server) {
	if term := l.raft.CurrentTerm(); term != l.checksTerm {
		// A new term: what an earlier leadership learnt may be stale (and a new leader
		// checks the voters it inherited).
		l.checks, l.checksTerm = map[string]*memberCheck{}, term
	}
	now := time.Now()
	known := map[string]bool{}
	var due []Peer
	for _, p := range peers {
		if p.ID == l.cfg.NodeID || p.RaftAddr == "" {
			continue
		}
		known[p.ID] = true
		srv, ok := inCfg[p.ID]
		add := p.Alive && !p.NoVote && (!ok || string(srv.Address) != p.RaftAddr)
		voter := ok && p.Alive && srv.Suffrage == raft.Voter
		if !add && !voter {
			continue
		}
		if c := l.checks[p.ID]; c != nil && c.addr == p.RaftAddr && now.Before(c.next) {
			continue
		}
		due = append(due, p)
	}
	for id := range l.checks {
		if !known[id] {
			delete(l.checks, id)
		}
	}
	if len(due) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), checkTimeout)
	defer cancel()
	go func() {
		select {
		case <-l.stop: // a shutdown does not wait for the checks
			cancel()
		case <-ctx.Done():
		}
	}()
	errs := make([]error, len(due))
	var wg sync.WaitGroup
	for i, p := range due {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = l.checkMember(ctx, p.ID, p.RaftAddr)
		}()
	}
	wg.Wait()
	for i, p := range due {
		l.record(p, inCfg, errs[i])
	}
}

// record keeps the outcome of checking p and logs a failure, or a pass after failures.
func (l *Log) record(p Peer, inCfg map[string]raft.Server, err error) {
	now := time.Now()
	c := l.checks[p.ID]
	if c == nil || c.addr != p.RaftAddr {
		c = &memberCheck{addr: p.RaftAddr}
		l.checks[p.ID] = c
	}
	_, inConfig := inCfg[p.ID]
	if err == nil {
		if c.fails > 0 {
			l.logger.Info("member passes the check on its Raft port now", "member", p.ID, "address", p.RaftAddr, "failures", c.fails)
		}
		*c = memberCheck{addr: p.RaftAddr, passed: true, next: now.Add(recheckInterval)}
		return
	}
	if c.fails == 0 {
		c.since = now
	}
	c.passed, c.err = false, err
	c.fails++
	backoff := checkBackoffMax
	if base := l.cfg.Timing.ReconcileInterval; c.fails < 16 && base<<(c.fails-1) < backoff {
		backoff = base << (c.fails - 1)
	}
	c.next = now.Add(backoff)
	what := "not adding member as a Raft voter: it fails the check on its Raft port"
	if inConfig {
		what = "voter fails the check on its Raft port"
	}
	l.logger.Warn(what, "member", p.ID, "address", p.RaftAddr, "failures", c.fails, "retry_in", backoff, "reason", err)
}

// checkMember checks that the member id answers on its Raft address addr as itself (see
// admission). Only the handshake runs: no stream kind is sent, and the member's port closes
// the connection when it reads none.
func (l *Log) checkMember(ctx context.Context, id, addr string) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("dial %s: %w", addr, err)
	}
	defer c.Close()
	if l.cfg.TLS == nil {
		return nil
	}
	tc := l.cfg.TLS.Client(c)
	if err := tc.HandshakeContext(ctx); err != nil {
		return fmt.Errorf("mutual TLS with %s: %w", addr, err)
	}
	if got := mtls.PeerName(tc); got != id {
		return fmt.Errorf("%w: %q at %s", errWrongMember, got, addr)
	}
	return nil
}

// Leave removes this node from the voters (when it leads) so that the remaining nodes keep
// their quorum.
func (l *Log) Leave(ctx context.Context) error {
	if l.raft.State() == raft.Leader {
		f := l.raft.GetConfiguration()
		if f.Error() == nil && len(f.Configuration().Servers) > 1 {
			d := 2 * l.cfg.Timing.ElectionTimeout
			if dl, ok := ctx.Deadline(); ok {
				d = time.Until(dl)
			}
			return l.await(ctx, l.raft.RemoveServer(raft.ServerID(l.cfg.NodeID), 0, d))
		}
	}
	return nil
}

// Shutdown stops Raft, the streams and the stores, and waits until they have stopped or ctx
// ends. Idempotent: every call waits for the one shutdown and returns its error.
//
// When ctx ends first (Raft's own shutdown has no deadline: a state machine's Apply stuck on
// a dead disk holds it forever), Shutdown returns an error wrapping ctx's and the shutdown goes
// on in the background, owned by the Log; Done is closed when it ends. Raft's files are
// crash-safe, so a process that exits meanwhile loses nothing that was committed.
func (l *Log) Shutdown(ctx context.Context) error {
	l.closeOnce.Do(func() {
		close(l.stop)
		go func() {
			defer close(l.closed)
			l.poolMu.Lock()
			for _, p := range l.pools {
				p.Close()
			}
			l.poolMu.Unlock()
			err := l.raft.Shutdown().Error()
			close(l.raftDown)
			l.trans.Close()
			l.mux.close()
			l.wg.Wait()
			if l.store != nil {
				if e := l.store.Close(); err == nil {
					err = e
				}
			}
			l.closeErr = err
		}()
	})
	select {
	case <-l.closed:
		return l.closeErr
	case <-ctx.Done():
		return fmt.Errorf("replog: shutdown: raft has not stopped: %w", ctx.Err())
	}
}

// Done is closed once a shutdown has ended (see Shutdown).
func (l *Log) Done() <-chan struct{} { return l.closed }
