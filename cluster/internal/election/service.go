// Package election runs hashicorp/raft over a lease state machine: named
// leases with a holder, a fencing token (the Raft log index of the grant)
// and a TTL measured by the leader. Followers forward operations to the
// leader over the same TCP port as Raft.
package election

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/wasmpod/wasmpod/cluster/internal/mtls"
	"github.com/wasmpod/wasmpod/cluster/queue"
)

// Errors, mapped to the public sentinels by package cluster.
var (
	ErrNoLeader   = errors.New("no raft leader (no quorum)")
	ErrHeld       = errors.New("lease held by another holder")
	ErrStaleToken = errors.New("stale token: lease no longer held with this token")
	ErrClosed     = errors.New("election service closed")
	ErrBadRequest = errors.New("bad request")
	// ErrForbidden: a forwarded request acts for another node than the one that sent it.
	ErrForbidden = errors.New("forbidden: a node may act only for its own sessions")
)

// Peer is what the membership layer knows about a possible voter.
type Peer struct {
	ID       string
	RaftAddr string
	Alive    bool
	Left     bool
	Since    time.Time // of the last state change
}

// Config of the service.
type Config struct {
	NodeID      string
	BindAddr    string // host:port for Raft + RPC
	Advertise   string // host:port others dial; defaults to BindAddr
	DataDir     string // "" keeps Raft state in memory
	Bootstrap   bool   // bootstrap a one-voter cluster if there is no state yet
	Timing      Timing
	LogOutput   io.Writer
	Peers       func() []Peer // membership view; nil means no peers
	ForwardWait time.Duration // how long an operation waits for a leader

	// Queue, if set, is the work queue's state machine, replicated in the same log.
	Queue *queue.Machine
	// Streams serve extra connection kinds on the Raft port (not 'R' or 'F'). A handler can
	// learn the verified peer node with mtls.PeerName.
	Streams map[byte]func(net.Conn)
	// SnapshotThreshold and SnapshotInterval are Raft's (0: 4096 entries, Raft's interval).
	SnapshotThreshold uint64
	SnapshotInterval  time.Duration
	// TLS is the cluster identity every connection of the Raft port uses; nil means plain TCP
	// (an insecure cluster).
	TLS *mtls.Identity
	// MinTTL and MaxTTL bound the TTL of a campaign or renewal the leader accepts, forwarded or
	// not (zero: no bound).
	MinTTL, MaxTTL time.Duration
}

// maxRPCBytes bounds one forwarded lease request: a name, a node, a session and numbers.
const maxRPCBytes = 64 << 10

// rpcTimeout bounds one forwarded lease request, reading it to writing its answer.
const rpcTimeout = 10 * time.Second

// rpcIdle is how long a forwarding connection may wait for its next request; the forwarding
// side keeps idle connections for less (rpcPoolTTL).
const (
	rpcIdle    = 60 * time.Second
	rpcPoolTTL = 30 * time.Second
)

// Timing groups the clock-related settings.
type Timing struct {
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration
	MaxClockDrift      float64       // relative clock-rate error allowed between nodes
	ReapInterval       time.Duration // how often the leader looks for expired leases
	ReconcileInterval  time.Duration // how often the leader reconciles voters with membership
	RemoveDeadAfter    time.Duration // 0: never remove dead voters
	MinVoters          int           // never remove a dead voter below this many
}

// Lease is the answer to every operation.
type Lease struct {
	Record
	// Remaining is the leader's view of the time left (0 when free or expired).
	Remaining time.Duration `json:"remaining"`
	Leader    string        `json:"leader"` // raft leader that answered
}

// Service is a running election node.
type Service struct {
	cfg   Config
	fsm   *FSM
	raft  *raft.Raft
	trans *raft.NetworkTransport
	mux   *mux
	bolt  *raftboltdb.BoltStore
	// dialer opens every outgoing connection to another node's Raft port.
	dialer Dialer
	// rpcPool keeps forwarding connections to the leader; pools are every pool made here,
	// closed at Shutdown.
	rpcPool *Pool
	poolMu  sync.Mutex
	pools   []*Pool

	stop      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
	kick      chan struct{}
	// barrierTerm is the Raft term in which this leader has applied every
	// entry of earlier terms (a Barrier is a log write: once per term).
	barrierTerm atomic.Uint64
}

// caughtUp makes sure the leader's state machine has applied everything
// committed before its term began. Within the term, entries it has not
// applied yet are its own proposals, and the compare-and-set on index
// makes decisions taken on an older view fail.
func (s *Service) caughtUp(timeout time.Duration) error {
	term := s.raft.CurrentTerm()
	if s.barrierTerm.Load() == term {
		return nil
	}
	if err := s.raft.Barrier(timeout).Error(); err != nil {
		return err
	}
	s.barrierTerm.Store(term)
	return nil
}

// Start opens the Raft state and starts the node.
func Start(cfg Config) (*Service, error) {
	if cfg.Advertise == "" {
		cfg.Advertise = cfg.BindAddr
	}
	if cfg.ForwardWait == 0 {
		cfg.ForwardWait = 3 * cfg.Timing.ElectionTimeout
	}
	adv, err := net.ResolveTCPAddr("tcp", cfg.Advertise)
	if err != nil {
		return nil, fmt.Errorf("election: advertise address: %w", err)
	}
	if adv.IP == nil || adv.IP.IsUnspecified() {
		return nil, fmt.Errorf("election: advertise address %q must be a routable IP", cfg.Advertise)
	}
	ln, err := net.Listen("tcp", cfg.BindAddr)
	if err != nil {
		return nil, fmt.Errorf("election: listen: %w", err)
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

	var (
		logs   raft.LogStore
		stable raft.StableStore
		snaps  raft.SnapshotStore
		bolt   *raftboltdb.BoltStore
	)
	if cfg.DataDir == "" {
		ms := raft.NewInmemStore()
		logs, stable, snaps = ms, ms, raft.NewInmemSnapshotStore()
	} else {
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			ln.Close()
			return nil, fmt.Errorf("election: data dir: %w", err)
		}
		bolt, err = raftboltdb.NewBoltStore(filepath.Join(cfg.DataDir, "raft.db"))
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("election: raft store: %w", err)
		}
		fs, err := raft.NewFileSnapshotStoreWithLogger(cfg.DataDir, 2, logger)
		if err != nil {
			ln.Close()
			bolt.Close()
			return nil, fmt.Errorf("election: snapshot store: %w", err)
		}
		logs, stable, snaps = bolt, bolt, fs
	}
	closeStore := func() {
		if bolt != nil {
			bolt.Close()
		}
	}

	dialer := Dialer{TLS: cfg.TLS}
	m := newMux(ln, adv, cfg.Streams, dialer)
	trans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: raftLayer{m}, MaxPool: 3, Timeout: 2 * time.Second, Logger: logger,
	})

	fsm := NewFSM()
	fsm.SetQueue(cfg.Queue)
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
			return nil, fmt.Errorf("election: bootstrap: %w", err)
		}
	}
	r, err := raft.NewRaft(rc, fsm, logs, stable, snaps, trans)
	if err != nil {
		trans.Close()
		m.close()
		closeStore()
		return nil, fmt.Errorf("election: raft: %w", err)
	}
	s := &Service{cfg: cfg, fsm: fsm, raft: r, trans: trans, mux: m, bolt: bolt, dialer: dialer,
		stop: make(chan struct{}), kick: make(chan struct{}, 1)}
	s.rpcPool = s.NewPool(connRPC, 4, rpcPoolTTL)
	s.wg.Add(2)
	go s.serveRPC()
	go s.leaderLoop()
	return s, nil
}

// Dial opens a connection of the given stream kind to another node's Raft port, with the
// cluster's TLS identity.
func (s *Service) Dial(addr string, kind byte, timeout time.Duration) (net.Conn, error) {
	return s.dialer.Dial(addr, kind, timeout)
}

// NewPool returns a pool of connections of the given stream kind to other nodes, closed at
// Shutdown.
func (s *Service) NewPool(kind byte, maxIdle int, ttl time.Duration) *Pool {
	p := NewPool(s.dialer, kind, maxIdle, ttl)
	s.poolMu.Lock()
	s.pools = append(s.pools, p)
	s.poolMu.Unlock()
	return p
}

// FSM exposes the local replica (for watches and local reads).
func (s *Service) FSM() *FSM { return s.fsm }

// Kick asks the leader loop to reconcile voters now (on membership events).
func (s *Service) Kick() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Addr is the advertised Raft/RPC address.
func (s *Service) Addr() string { return s.cfg.Advertise }

// Status is a snapshot of the Raft node.
type Status struct {
	State   string   `json:"state"`
	Leader  string   `json:"leader"`
	Term    uint64   `json:"term"`
	Applied uint64   `json:"applied_index"`
	Voters  []string `json:"voters"`
}

// Status reports the local Raft view.
func (s *Service) Status() Status {
	_, id := s.raft.LeaderWithID()
	st := Status{State: s.raft.State().String(), Leader: string(id), Term: s.raft.CurrentTerm(), Applied: s.raft.AppliedIndex()}
	if f := s.raft.GetConfiguration(); f.Error() == nil {
		for _, srv := range f.Configuration().Servers {
			if srv.Suffrage == raft.Voter {
				st.Voters = append(st.Voters, string(srv.ID))
			}
		}
	}
	sort.Strings(st.Voters)
	return st
}

// ReplicaCurrent reports whether this node's state machine is known to be up to date: a
// leader is known (so the commit index came from it) and everything committed is applied.
// Right after a restart, or cut off from the majority, it is false.
func (s *Service) ReplicaCurrent() bool {
	if s.LeaderAddr() == "" {
		return false
	}
	c := s.raft.CommitIndex()
	return c > 0 && s.raft.AppliedIndex() >= c
}

// LeaderAddr is the current leader's Raft/RPC address ("" when unknown).
func (s *Service) LeaderAddr() string {
	addr, _ := s.raft.LeaderWithID()
	return string(addr)
}

// ApplyQueue commits one work-queue command (encoded queue.Command) through the log and
// returns the machine's encoded response. It runs only on the leader (ErrNoLeader elsewhere,
// or when the leader loses its quorum before the entry commits).
func (s *Service) ApplyQueue(cmd []byte, timeout time.Duration) ([]byte, error) {
	if s.raft.State() != raft.Leader {
		return nil, ErrNoLeader
	}
	if err := s.caughtUp(timeout); err != nil {
		return nil, ErrNoLeader
	}
	f := s.raft.Apply(append([]byte{QueueTag}, cmd...), timeout)
	if err := f.Error(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoLeader, err)
	}
	b, ok := f.Response().([]byte)
	if !ok {
		return nil, errors.New("election: work queue answered nothing")
	}
	return b, nil
}

// CaughtUp makes sure this leader has applied every entry committed before its term, so that
// reads of its replica see every acknowledged change.
func (s *Service) CaughtUp(timeout time.Duration) error {
	if s.raft.State() != raft.Leader {
		return ErrNoLeader
	}
	if err := s.caughtUp(timeout); err != nil {
		return ErrNoLeader
	}
	return nil
}

// IsLeader reports whether this node is the Raft leader.
func (s *Service) IsLeader() bool { return s.raft.State() == raft.Leader }

// Request is one lease operation, local or forwarded.
type Request struct {
	Kind    string        `json:"kind"` // get, campaign, renew, resign
	Name    string        `json:"name"`
	Node    string        `json:"node"`
	Session string        `json:"session"`
	TTL     time.Duration `json:"ttl"`
	Token   uint64        `json:"token"`
}

type response struct {
	Lease Lease  `json:"lease"`
	Err   string `json:"err,omitempty"`
}

var errByText = map[string]error{}

func init() {
	for _, e := range []error{ErrNoLeader, ErrHeld, ErrStaleToken, ErrClosed, ErrBadRequest, ErrForbidden} {
		errByText[e.Error()] = e
	}
}

// Do runs a request on the leader, forwarding if needed, and retrying while
// there is no leader for up to ForwardWait (bounded by ctx).
func (s *Service) Do(ctx context.Context, req Request) (Lease, error) {
	deadline := time.Now().Add(s.cfg.ForwardWait)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	for {
		select {
		case <-s.stop:
			return Lease{}, ErrClosed
		default:
		}
		lease, err, retry := s.try(ctx, req, deadline)
		if !retry || time.Now().After(deadline) {
			return lease, err
		}
		t := time.NewTimer(50 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return Lease{}, ErrNoLeader
		case <-s.stop:
			t.Stop()
			return Lease{}, ErrClosed
		case <-t.C:
		}
	}
}

func (s *Service) try(ctx context.Context, req Request, deadline time.Time) (Lease, error, bool) {
	if s.raft.State() == raft.Leader {
		l, err := s.handle(req, time.Until(deadline))
		return l, err, errors.Is(err, ErrNoLeader)
	}
	addr, id := s.raft.LeaderWithID()
	if addr == "" {
		return Lease{}, ErrNoLeader, true
	}
	l, err := s.forward(ctx, string(addr), req, deadline)
	if err != nil && !errors.Is(err, ErrHeld) && !errors.Is(err, ErrStaleToken) && !errors.Is(err, ErrBadRequest) && !errors.Is(err, ErrForbidden) {
		return Lease{}, ErrNoLeader, true
	}
	if l.Leader == "" {
		l.Leader = string(id)
	}
	return l, err, false
}

func (s *Service) forward(ctx context.Context, addr string, req Request, deadline time.Time) (Lease, error) {
	dl := deadline
	if d, ok := ctx.Deadline(); ok && d.Before(dl) {
		dl = d
	}
	var resp response
	for attempt := 0; ; attempt++ {
		c, reused, err := s.rpcPool.Get(addr, time.Until(deadline))
		if err != nil {
			return Lease{}, err
		}
		_ = c.SetDeadline(dl)
		err = json.NewEncoder(c).Encode(req)
		if err == nil {
			err = json.NewDecoder(io.LimitReader(c, maxRPCBytes)).Decode(&resp)
		}
		if err != nil {
			c.Close()
			if reused && attempt == 0 { // the leader may have closed it while idle
				continue
			}
			return Lease{}, err
		}
		s.rpcPool.Put(addr, c)
		break
	}
	if resp.Err != "" {
		if e, ok := errByText[resp.Err]; ok {
			return resp.Lease, e
		}
		return resp.Lease, errors.New(resp.Err)
	}
	return resp.Lease, nil
}

func (s *Service) serveRPC() {
	defer s.wg.Done()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		var c net.Conn
		select {
		case <-s.stop:
			return
		case c = <-s.mux.rpcCh:
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			// One request after another, each bounded in size and time, until the forwarding
			// side closes the connection or leaves it idle for rpcIdle.
			done := make(chan struct{})
			defer close(done)
			go func() { // Shutdown closes idle connections
				select {
				case <-s.stop:
					c.Close()
				case <-done:
				}
			}()
			lr := &LimitedReader{R: c}
			dec := json.NewDecoder(lr)
			for s.serveOneRPC(c, lr, dec) {
			}
		}()
	}
}

// serveOneRPC answers one forwarded lease request on c and reports whether c is still in step.
func (s *Service) serveOneRPC(c net.Conn, lr *LimitedReader, dec *json.Decoder) bool {
	_ = c.SetDeadline(time.Now().Add(rpcIdle))
	lr.N = maxRPCBytes
	var req Request
	if err := dec.Decode(&req); err != nil {
		return false
	}
	_ = c.SetDeadline(time.Now().Add(rpcTimeout))
	var resp response
	var err error
	// The forwarding node's identity comes from its certificate: it may act only for its own
	// sessions (Node is the holder's node name). Without TLS (an insecure cluster) there is no
	// identity to check.
	peer := mtls.PeerName(c)
	if s.cfg.TLS != nil && (peer == "" || (req.Kind != "get" && req.Node != peer)) {
		err = ErrForbidden
	} else if s.raft.State() != raft.Leader {
		err = ErrNoLeader
	} else {
		resp.Lease, err = s.handle(req, s.cfg.ForwardWait)
	}
	if err != nil {
		resp.Err = err.Error()
	}
	return json.NewEncoder(c).Encode(resp) == nil
}

// handle runs on the leader.
func (s *Service) handle(req Request, timeout time.Duration) (Lease, error) {
	if req.Name == "" {
		return Lease{}, ErrBadRequest
	}
	if timeout < 100*time.Millisecond {
		timeout = 100 * time.Millisecond
	}
	// A leader must have applied everything committed before it reads
	// the table (renewals in flight could otherwise look expired).
	if err := s.caughtUp(timeout); err != nil {
		return Lease{}, ErrNoLeader
	}
	rec, _, _ := s.fsm.Get(req.Name)
	switch req.Kind {
	case "get":
		if err := s.raft.VerifyLeader().Error(); err != nil {
			return Lease{}, ErrNoLeader
		}
		return s.view(rec), nil
	case "campaign":
		if req.Node == "" || !s.ttlOK(req.TTL) {
			return Lease{}, ErrBadRequest
		}
		if rec.Held() && rec.Node == req.Node && rec.Session == req.Session {
			return s.apply(Command{Op: OpRenew, Name: req.Name, Token: rec.Token, TTL: req.TTL}, timeout, ErrHeld)
		}
		if rec.Held() && s.remaining(rec) > 0 {
			return s.view(rec), ErrHeld
		}
		return s.apply(Command{Op: OpAcquire, Name: req.Name, Node: req.Node, Session: req.Session, TTL: req.TTL, PrevIndex: rec.Index}, timeout, ErrHeld)
	case "renew":
		if req.TTL != 0 && !s.ttlOK(req.TTL) {
			return Lease{}, ErrBadRequest
		}
		if !rec.Held() || rec.Token != req.Token || rec.Node != req.Node || rec.Session != req.Session {
			return s.view(rec), ErrStaleToken
		}
		return s.apply(Command{Op: OpRenew, Name: req.Name, Token: req.Token, TTL: req.TTL}, timeout, ErrStaleToken)
	case "resign":
		if !rec.Held() || rec.Token != req.Token || rec.Node != req.Node || rec.Session != req.Session {
			return s.view(rec), ErrStaleToken
		}
		return s.apply(Command{Op: OpRelease, Name: req.Name, Token: req.Token}, timeout, ErrStaleToken)
	}
	return Lease{}, ErrBadRequest
}

// ttlOK reports whether a requested TTL is within the configured bounds: the leader checks
// what it is asked, whoever forwarded it (the admin API's bounds, on the log's side).
func (s *Service) ttlOK(d time.Duration) bool {
	if d <= 0 {
		return false
	}
	if s.cfg.MinTTL > 0 && d < s.cfg.MinTTL {
		return false
	}
	return s.cfg.MaxTTL <= 0 || d <= s.cfg.MaxTTL
}

func (s *Service) apply(c Command, timeout time.Duration, lost error) (Lease, error) {
	b, _ := json.Marshal(c)
	f := s.raft.Apply(b, timeout)
	if err := f.Error(); err != nil {
		return Lease{}, ErrNoLeader
	}
	res, _ := f.Response().(Result)
	l := s.view(res.Record)
	if !res.OK {
		return l, lost
	}
	return l, nil
}

// remaining is the leader's view of the time left on a held lease: TTL
// stretched by the allowed clock drift, from this replica's apply time.
func (s *Service) remaining(r Record) time.Duration {
	if !r.Held() || r.appliedAt.IsZero() {
		return 0
	}
	ttl := time.Duration(float64(r.TTL) * (1 + s.cfg.Timing.MaxClockDrift))
	left := time.Until(r.appliedAt.Add(ttl))
	if left < 0 {
		return 0
	}
	return left
}

func (s *Service) view(r Record) Lease {
	_, id := s.raft.LeaderWithID()
	return Lease{Record: r, Remaining: s.remaining(r), Leader: string(id)}
}

// leaderLoop reaps expired leases and reconciles voters while leader.
func (s *Service) leaderLoop() {
	defer s.wg.Done()
	reap := time.NewTicker(s.cfg.Timing.ReapInterval)
	defer reap.Stop()
	rec := time.NewTicker(s.cfg.Timing.ReconcileInterval)
	defer rec.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-reap.C:
			if s.IsLeader() {
				s.reap()
			}
		case <-rec.C:
			if s.IsLeader() {
				s.reconcile()
			}
		case <-s.kick:
			if s.IsLeader() {
				s.reconcile()
			}
		}
	}
}

func (s *Service) reap() {
	if err := s.caughtUp(s.cfg.Timing.ReapInterval * 5); err != nil {
		return
	}
	for _, r := range s.fsm.List() {
		if r.Held() && s.remaining(r) == 0 {
			b, _ := json.Marshal(Command{Op: OpRelease, Name: r.Name, Token: r.Token, PrevIndex: r.Index, Expire: true})
			_ = s.raft.Apply(b, s.cfg.Timing.ReapInterval*5).Error()
		}
	}
}

// reconcile adds alive members as voters and removes left ones (and dead
// ones after RemoveDeadAfter, never below MinVoters).
func (s *Service) reconcile() {
	if s.cfg.Peers == nil {
		return
	}
	f := s.raft.GetConfiguration()
	if f.Error() != nil {
		return
	}
	inCfg := map[string]raft.Server{}
	for _, srv := range f.Configuration().Servers {
		inCfg[string(srv.ID)] = srv
	}
	voters := len(inCfg)
	timeout := 2 * s.cfg.Timing.ElectionTimeout
	for _, p := range s.cfg.Peers() {
		if p.ID == s.cfg.NodeID || p.RaftAddr == "" {
			continue
		}
		srv, ok := inCfg[p.ID]
		switch {
		case p.Alive && (!ok || string(srv.Address) != p.RaftAddr):
			_ = s.raft.AddVoter(raft.ServerID(p.ID), raft.ServerAddress(p.RaftAddr), 0, timeout).Error()
		case ok && p.Left:
			if s.raft.RemoveServer(raft.ServerID(p.ID), 0, timeout).Error() == nil {
				voters--
			}
		case ok && !p.Alive && s.cfg.Timing.RemoveDeadAfter > 0 &&
			time.Since(p.Since) > s.cfg.Timing.RemoveDeadAfter && voters-1 >= s.cfg.Timing.MinVoters:
			if s.raft.RemoveServer(raft.ServerID(p.ID), 0, timeout).Error() == nil {
				voters--
			}
		}
	}
}

// Leave removes this node from the voters (through the leader) so that the
// remaining nodes keep their quorum, then shuts down.
func (s *Service) Leave(ctx context.Context) error {
	if s.raft.State() == raft.Leader {
		f := s.raft.GetConfiguration()
		if f.Error() == nil && len(f.Configuration().Servers) > 1 {
			d := 2 * s.cfg.Timing.ElectionTimeout
			if dl, ok := ctx.Deadline(); ok {
				d = time.Until(dl)
			}
			return s.raft.RemoveServer(raft.ServerID(s.cfg.NodeID), 0, d).Error()
		}
	}
	return nil
}

// Shutdown stops Raft, the RPC server and the stores. Idempotent.
func (s *Service) Shutdown() error {
	var err error
	s.closeOnce.Do(func() {
		close(s.stop)
		s.poolMu.Lock()
		for _, p := range s.pools {
			p.Close()
		}
		s.poolMu.Unlock()
		err = s.raft.Shutdown().Error()
		s.trans.Close()
		s.mux.close()
		s.wg.Wait()
		if s.bolt != nil {
			if e := s.bolt.Close(); err == nil {
				err = e
			}
		}
	})
	return err
}
