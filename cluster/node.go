package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	stdlog "log"
	"net"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wasmpod/wasmpod/cluster/internal/election"
	"github.com/wasmpod/wasmpod/cluster/internal/membership"
	"github.com/wasmpod/wasmpod/cluster/internal/mtls"
	"github.com/wasmpod/wasmpod/cluster/internal/replog"
)

// Node is one member of a wasmpod cluster: gossip membership plus a Raft
// voter for named elections. A single node is a cluster of one.
type Node struct {
	cfg      Config
	gossip   *membership.Gossip
	log      *replog.Log
	election *election.Service
	wq       *workQueue
	tls      *mtls.Identity // nil: an insecure cluster
	// reserveOn latches once every member makes blob reservations.
	reserveOn atomic.Bool

	metaMu   sync.Mutex
	meta     Meta   // the host's part
	raftAddr string // the cluster's part
	queueOps int    // the cluster's part: queueOps (tests advertise less, as an earlier release)
	metaB    []byte

	subMu sync.Mutex
	subs  map[int]chan MemberEvent
	subID int

	logger *stdlog.Logger // cfg.LogOutput
	// noVote: the members peers() has logged as kept from the voters (see noVote).
	noVoteMu sync.Mutex
	noVote   map[string]int

	electionsAPI Elections
	queueAPI     Queue

	closeOnce sync.Once
	closeErr  error
	closed    chan struct{}
}

// Start starts gossip, joins cfg.Join (failures are retried by the rejoin
// loop; an error is returned only when nothing can start), and starts Raft.
func Start(cfg Config) (*Node, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	host, port, _ := splitHostPort(cfg.BindAddr)
	n := &Node{cfg: cfg, subs: map[int]chan MemberEvent{}, closed: make(chan struct{}), queueOps: queueOps,
		noVote: map[string]int{}}
	out := cfg.LogOutput
	if out == nil {
		out = io.Discard
	}
	n.logger = stdlog.New(out, "cluster "+cfg.NodeName+" ", stdlog.LstdFlags|stdlog.Lmicroseconds)
	n.electionsAPI.n, n.queueAPI.n = n, n
	n.setMetaLocked(nil)
	id, err := n.identity()
	if err != nil {
		return nil, err
	}
	n.tls = id

	mc := membership.Config{
		Name: cfg.NodeName, BindAddr: host, BindPort: port, Join: cfg.Join,
		Key: cfg.GossipKey, Label: cfg.ClusterLabel, Profile: cfg.Gossip.Profile,
		RejoinInterval: cfg.Gossip.RejoinInterval, LogOutput: cfg.LogOutput,
		Meta: n.metaBytes, OnEvent: n.onEvent,
		Faults: membership.Faults{DropRate: cfg.Gossip.DropRate, Delay: cfg.Gossip.Delay},
	}
	if cfg.AdvertiseAddr != "" {
		ah, ap, err := splitHostPort(cfg.AdvertiseAddr)
		if err != nil {
			return nil, fmt.Errorf("%w: advertise address: %v", ErrInvalid, err)
		}
		mc.AdvertiseAddr, mc.AdvertisePort = ah, ap
	}
	g, _, err := membership.Start(mc)
	if g == nil {
		return nil, err
	}
	// A failed initial join is not fatal (peers may start later): the
	// rejoin loop keeps trying. err is reported by Join() if callers care.
	n.gossip = g

	raftBind := cfg.RaftAddr
	gh, gp, _ := splitHostPort(g.LocalAddr())
	raftAdv := raftBind
	if raftBind == "" {
		raftBind = net.JoinHostPort(host, strconv.Itoa(gp+1))
		raftAdv = net.JoinHostPort(gh, strconv.Itoa(gp+1))
	} else if h, p, err := splitHostPort(raftBind); err == nil && (h == "" || net.ParseIP(h).IsUnspecified()) {
		raftAdv = net.JoinHostPort(gh, strconv.Itoa(p))
	}
	dataDir, queueDir := "", ""
	if cfg.StateDir != "" {
		dataDir = filepath.Join(cfg.StateDir, "raft")
		queueDir = filepath.Join(cfg.StateDir, "queue")
	}
	wq, err := openWorkQueue(n, queueDir, cfg.Queue)
	if err != nil {
		_ = g.Shutdown()
		return nil, err
	}
	n.wq = wq
	bootstrap := cfg.Bootstrap == BootstrapAlways || (cfg.Bootstrap == BootstrapAuto && len(cfg.Join) == 0)
	e := cfg.Election
	leases := election.New(election.Config{MaxClockDrift: e.MaxClockDrift, ReapInterval: e.ReapInterval, MinTTL: e.MinTTL, MaxTTL: e.MaxTTL})
	log, err := replog.Start(replog.Config{
		NodeID: cfg.NodeName, BindAddr: raftBind, Advertise: raftAdv, DataDir: dataDir,
		Bootstrap: bootstrap, LogOutput: cfg.LogOutput, Peers: n.peers, ForwardWait: e.ForwardWait,
		Kinds:   []replog.Kind{leases.Kind(), wq.kind(), wq.reservations.kind()},
		Streams: wq.streams(), SnapshotThreshold: e.SnapshotThreshold, SnapshotInterval: e.SnapshotInterval,
		TLS: n.tls, Legacy: n.legacy,
		Timing: replog.Timing{
			HeartbeatTimeout: e.HeartbeatTimeout, ElectionTimeout: e.ElectionTimeout,
			LeaderLeaseTimeout: e.LeaderLeaseTimeout, CommitTimeout: e.CommitTimeout,
			ReconcileInterval: e.ReconcileInterval, RemoveDeadAfter: e.RemoveDeadAfter, MinVoters: e.MinVoters,
		},
	})
	if err != nil {
		wq.close()
		_ = g.Shutdown()
		return nil, err
	}
	leases.Attach(log)
	n.log, n.election = log, leases
	wq.blobPool = log.NewPool(connBlob, 4, blobPoolTTL)
	wq.log.Store(log)
	n.metaMu.Lock()
	n.raftAddr = log.Addr()
	n.setMetaLocked(n.meta)
	n.metaMu.Unlock()
	_ = g.UpdateMeta(time.Second)
	wq.startJanitor()
	wq.startFlusher()
	return n, nil
}

// Name is this node's name.
func (n *Node) Name() string { return n.cfg.NodeName }

// GossipAddr is the advertised gossip address (what others pass to --join).
func (n *Node) GossipAddr() string { return n.gossip.LocalAddr() }

// Join contacts more peers; it returns how many answered.
func (n *Node) Join(addrs []string) (int, error) { return n.gossip.Join(addrs) }

// SetMeta replaces the host's part of this node's metadata and gossips it. It refuses the
// cluster's own keys, and a map whose encoding would not fit (ErrMetaTooLarge).
func (n *Node) SetMeta(m Meta) error {
	for k := range m {
		if reservedMeta[k] {
			return fmt.Errorf("%w: meta key %q is the cluster's own", ErrInvalid, k)
		}
	}
	own := make(Meta, len(m))
	for k, v := range m {
		own[k] = append(json.RawMessage(nil), v...)
	}
	n.metaMu.Lock()
	old := n.meta
	n.setMetaLocked(own)
	if len(n.metaB)+1 > membership.MetaMaxSize {
		n.setMetaLocked(old)
		n.metaMu.Unlock()
		return ErrMetaTooLarge
	}
	n.metaMu.Unlock()
	return n.gossip.UpdateMeta(time.Second)
}

func (n *Node) metaBytes() []byte {
	n.metaMu.Lock()
	defer n.metaMu.Unlock()
	return n.metaB
}

// raftStopFloor is the least time Shutdown gives Raft to stop, whatever is left of its ctx:
// Raft stops in milliseconds when nothing is stuck, and a second keeps a leave that used the
// caller's whole budget from turning a clean stop into an error.
const raftStopFloor = time.Second

// The cluster's own keys in the gossiped metadata. metaRaftAddr is the node's Raft address;
// metaLogVersion is logVersion for a node of this release, which runs the replicated log of
// package replog (the 'D' forwarding stream, WPS3 snapshots, blob reservations); nodes of
// earlier releases advertise nothing there.
const (
	metaRaftAddr   = "raft"
	metaLogVersion = "rv"
	logVersion     = 1
	// metaQueueOps is queueOps for a node of this release: the queue commands it applies
	// beyond those of the first replicated queue. 1: complete_lease (a completion and the
	// next lease in one log entry); 2: completions that carry their output's content
	// (queuestate.Command.Content); 3: lease commands whose worker is checked against the
	// lease's (queuestate.Command.CheckWorker). Earlier releases advertise nothing there.
	metaQueueOps     = "qo"
	queueOps         = 3
	opsCompleteLease = 1
	opsContent       = 2
	opsWorkerChecked = 3
)

// setMetaLocked encodes the host's map with the cluster's keys: one JSON object, the encoding
// (and, for the keys older hosts set, the content) of every earlier release.
func (n *Node) setMetaLocked(m Meta) {
	n.meta = m
	all := make(map[string]json.RawMessage, len(m)+2)
	for k, v := range m {
		all[k] = v
	}
	if n.raftAddr != "" {
		all[metaRaftAddr], _ = json.Marshal(n.raftAddr)
	}
	all[metaLogVersion] = json.RawMessage(strconv.Itoa(logVersion))
	if n.queueOps > 0 {
		all[metaQueueOps] = json.RawMessage(strconv.Itoa(n.queueOps))
	}
	n.metaB, _ = json.Marshal(all)
}

// splitMeta reads a member's gossiped metadata: the host's map and the cluster's keys.
func splitMeta(b []byte) (host Meta, raftAddr string, version int) {
	var all map[string]json.RawMessage
	if json.Unmarshal(b, &all) != nil {
		return Meta{}, "", 0
	}
	_ = json.Unmarshal(all[metaRaftAddr], &raftAddr)
	_ = json.Unmarshal(all[metaLogVersion], &version)
	delete(all, metaRaftAddr)
	delete(all, metaLogVersion)
	delete(all, metaQueueOps)
	if all == nil {
		all = map[string]json.RawMessage{}
	}
	return all, raftAddr, version
}

// legacy reports whether the named member runs a release before replog (unknown members are
// taken for current ones).
func (n *Node) legacy(id string) bool {
	for _, m := range n.gossip.Members() {
		if m.Name == id {
			_, _, v := splitMeta(m.Meta)
			return v < logVersion
		}
	}
	return false
}

// votersApply reports whether every voter of the log's configuration advertises queue
// commands of version ops or later (see metaQueueOps): only then may a command that earlier
// releases reject be proposed, since a replica that rejects it would diverge from those that
// apply it. This node answers for itself; a voter missing from the member table, or a
// configuration that cannot be read, counts as not advertising them.
func (n *Node) votersApply(log *replog.Log, ops int) bool {
	voters := log.Voters()
	if len(voters) == 0 {
		return false
	}
	var members []membership.Member
	for _, v := range voters {
		if v == n.cfg.NodeName {
			if n.advertisedQueueOps() < ops {
				return false
			}
			continue
		}
		if members == nil {
			members = n.gossip.Members()
		}
		ok := false
		for _, m := range members {
			if m.Name == v {
				ok = queueOpsOf(m.Meta) >= ops
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// advertisedQueueOps is the queue commands version this node advertises.
func (n *Node) advertisedQueueOps() int {
	n.metaMu.Lock()
	defer n.metaMu.Unlock()
	return n.queueOps
}

// queueOpsOf reads a member's queue commands version from its gossiped metadata (0: none).
func queueOpsOf(b []byte) int {
	var all struct {
		Ops int `json:"qo"`
	}
	_ = json.Unmarshal(b, &all)
	return all.Ops
}

// enforceReservations reports whether blob pushes need a replicated reservation: once every
// live member runs a release that makes them. It stays on from then (a member cannot switch
// it off again by advertising an older release).
func (n *Node) enforceReservations() bool {
	if n.reserveOn.Load() {
		return true
	}
	for _, m := range n.gossip.Members() {
		if _, _, v := splitMeta(m.Meta); m.State == membership.StateAlive && v < logVersion {
			return false
		}
	}
	n.reserveOn.Store(true)
	return true
}

// peers is the membership view the log's leader reconciles its voters with. Once the queue's
// state has applied a complete_lease, a member advertising queue commands of an earlier
// version (see metaQueueOps) is marked NoVote: it would reject those entries while replaying
// the log and its replica would diverge. Voters already in the configuration stay (the gate
// of complete_lease closes while one of them is of an earlier release). Being in this view is
// not enough to become a voter: gossip lets in anyone with the gossip key (with
// bring-your-own PKI and no key, anyone), so the log's leader first checks each member on its
// Raft port with the cluster's mutual TLS (replog, "Admission of voters").
func (n *Node) peers() []replog.Peer {
	ms := n.gossip.Members()
	combined := n.wq != nil && n.wq.m.CombinedApplied()
	out := make([]replog.Peer, 0, len(ms))
	for _, m := range ms {
		_, raftAddr, _ := splitMeta(m.Meta)
		p := replog.Peer{
			ID: m.Name, RaftAddr: raftAddr, Since: m.Changed,
			Alive: m.State == membership.StateAlive, Left: m.State == membership.StateLeft,
		}
		if combined && m.Name != n.cfg.NodeName {
			ops := queueOpsOf(m.Meta)
			p.NoVote = ops < opsCompleteLease // content (opsContent) changes no state: gated per command
			n.noteNoVote(m.Name, ops, p.NoVote && p.Alive)
		}
		out = append(out, p)
	}
	return out
}

// noteNoVote logs, once per member and advertised version, that an alive member is kept
// from the voters and why.
func (n *Node) noteNoVote(name string, ops int, kept bool) {
	n.noVoteMu.Lock()
	defer n.noVoteMu.Unlock()
	if !kept {
		delete(n.noVote, name)
		return
	}
	if was, ok := n.noVote[name]; ok && was == ops {
		return
	}
	n.noVote[name] = ops
	n.logger.Printf("not adding member %s as a Raft voter: it advertises queue commands version %d (%q), "+
		"the replicated log holds complete_lease commands of version %d, which it would not apply; "+
		"upgrade it to a release of version %d or later", name, ops, metaQueueOps, opsCompleteLease, opsCompleteLease)
}

// Members lists every known member, dead and left ones included.
func (n *Node) Members() []Member {
	st := n.log.Status()
	voters := map[string]bool{}
	for _, v := range st.Voters {
		voters[v] = true
	}
	ms := n.gossip.Members()
	out := make([]Member, 0, len(ms))
	for _, m := range ms {
		out = append(out, n.toMember(m, voters, st.Leader))
	}
	return out
}

func (n *Node) toMember(m membership.Member, voters map[string]bool, leader string) Member {
	meta, _, _ := splitMeta(m.Meta)
	return Member{
		Name: m.Name, Addr: m.Addr, State: MemberState(m.State), Since: m.Changed, Meta: meta,
		Voter: voters[m.Name], Leader: leader != "" && leader == m.Name, IsLocal: m.Name == n.cfg.NodeName,
	}
}

// Status reports this node's Raft and gossip view.
func (n *Node) Status() Status {
	st := n.log.Status()
	return Status{Node: n.cfg.NodeName, RaftState: st.State, RaftLeader: st.Leader, Term: st.Term,
		Voters: st.Voters, Members: n.gossip.AliveCount()}
}

// Subscribe returns a channel of membership events (buffered; events are
// dropped, never blocking gossip, when the subscriber falls behind) and a
// cancel function that closes it.
func (n *Node) Subscribe(buffer int) (<-chan MemberEvent, func()) {
	if buffer < 1 {
		buffer = 1
	}
	ch := make(chan MemberEvent, buffer)
	n.subMu.Lock()
	id := n.subID
	n.subID++
	if n.subs == nil { // closed
		close(ch)
		n.subMu.Unlock()
		return ch, func() {}
	}
	n.subs[id] = ch
	n.subMu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			n.subMu.Lock()
			if c, ok := n.subs[id]; ok {
				delete(n.subs, id)
				close(c)
			}
			n.subMu.Unlock()
		})
	}
}

func (n *Node) onEvent(ev membership.Event) {
	if n.log != nil {
		n.log.Kick()
	}
	kind := "update"
	switch ev.Kind {
	case membership.EventJoin:
		kind = "join"
	case membership.EventLeave:
		kind = "leave"
	}
	me := MemberEvent{Type: kind, Member: n.toMember(ev.Member, nil, "")}
	n.subMu.Lock()
	for _, c := range n.subs {
		select {
		case c <- me:
		default:
		}
	}
	n.subMu.Unlock()
}

func (n *Node) ttl(ms int64) (time.Duration, error) {
	if ms == 0 {
		return n.cfg.Election.DefaultTTL, nil
	}
	d := time.Duration(ms) * time.Millisecond
	if d < n.cfg.Election.MinTTL || d > n.cfg.Election.MaxTTL {
		return 0, fmt.Errorf("%w: ttl %v outside [%v, %v]", ErrInvalid, d, n.cfg.Election.MinTTL, n.cfg.Election.MaxTTL)
	}
	return d, nil
}

// Get returns the lease as the Raft leader sees it (linearizable).
func (e *Elections) Get(ctx context.Context, name string) (Lease, error) {
	n := e.n
	if name == "" {
		return Lease{}, fmt.Errorf("%w: empty name", ErrInvalid)
	}
	l, err := n.election.Do(ctx, election.Request{Kind: "get", Name: name})
	if err != nil {
		return Lease{}, mapErr(err)
	}
	return n.others(l), nil
}

// Campaign asks for the named lease for session on this node. It returns
// the lease and nil when this session holds it (new grant or, if it
// already held it, a renewal), or the current lease and ErrNotLeader.
func (e *Elections) Campaign(ctx context.Context, name string, req CampaignRequest) (Lease, error) {
	n := e.n
	ttl, err := n.ttl(req.TTLMillis)
	if err != nil || name == "" {
		return Lease{}, errInvalid(err)
	}
	sent := time.Now()
	l, err := n.election.Do(ctx, election.Request{Kind: "campaign", Name: name, Node: n.cfg.NodeName, Session: req.Session, TTL: ttl})
	return n.result(l, err, sent)
}

// Renew extends a lease this session holds with token.
func (e *Elections) Renew(ctx context.Context, name string, req RenewRequest) (Lease, error) {
	n := e.n
	var ttl time.Duration
	if req.TTLMillis != 0 {
		var err error
		if ttl, err = n.ttl(req.TTLMillis); err != nil {
			return Lease{}, err
		}
	}
	if name == "" || req.Token == 0 {
		return Lease{}, errInvalid(nil)
	}
	sent := time.Now()
	l, err := n.election.Do(ctx, election.Request{Kind: "renew", Name: name, Node: n.cfg.NodeName, Session: req.Session, Token: req.Token, TTL: ttl})
	return n.result(l, err, sent)
}

// Resign gives up a lease held with token.
func (e *Elections) Resign(ctx context.Context, name string, req ResignRequest) (Lease, error) {
	n := e.n
	if name == "" || req.Token == 0 {
		return Lease{}, errInvalid(nil)
	}
	l, err := n.election.Do(ctx, election.Request{Kind: "resign", Name: name, Node: n.cfg.NodeName, Session: req.Session, Token: req.Token})
	if err != nil {
		return n.others(l), mapErr(err)
	}
	return n.others(l), nil
}

// Watch blocks until the lease's Index exceeds afterIndex (or ctx ends) and
// returns the lease from this node's replica. It is a change
// notification: a replica on the minority side stops seeing changes, so
// act on Get/Campaign answers, not on Watch alone. On ctx end it returns
// the current local state and ctx.Err().
func (e *Elections) Watch(ctx context.Context, name string, afterIndex uint64) (Lease, error) {
	n := e.n
	if name == "" {
		return Lease{}, errInvalid(nil)
	}
	for {
		rec, _, ch := n.election.FSM().Get(name)
		if rec.Index > afterIndex {
			return n.local(rec), nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return n.local(rec), ctx.Err()
		case <-n.closed:
			return n.local(rec), ErrClosed
		}
	}
}

func errInvalid(err error) error {
	if err != nil {
		return err
	}
	return ErrInvalid
}

func (n *Node) result(l election.Lease, err error, sent time.Time) (Lease, error) {
	if err != nil {
		return n.others(l), mapErr(err)
	}
	out := n.others(l)
	// The holder's own deadline counts from before the request left, and
	// shrinks by the drift margin: it ends no later than the leader's.
	ttl := time.Duration(float64(l.TTL) * (1 - n.cfg.Election.MaxClockDrift))
	out.Expiry = sent.Add(ttl)
	return out, nil
}

func (n *Node) others(l election.Lease) Lease {
	out := Lease{Name: l.Name, Held: l.Held(), Holder: l.Node, Session: l.Session, Token: l.Token,
		TTLMillis: l.TTL.Milliseconds(), Index: l.Index, RaftLeader: l.Leader}
	if out.Held {
		out.Expiry = time.Now().Add(l.Remaining)
	}
	return out
}

func (n *Node) local(r election.Record) Lease {
	return n.others(election.Lease{Record: r, Remaining: localRemaining(r, n.cfg.Election.MaxClockDrift)})
}

func localRemaining(r election.Record, drift float64) time.Duration {
	if !r.Held() || r.AppliedAt().IsZero() {
		return 0
	}
	left := time.Until(r.AppliedAt().Add(time.Duration(float64(r.TTL) * (1 + drift))))
	if left < 0 {
		return 0
	}
	return left
}

// Shutdown leaves the cluster gracefully within ctx: if Raft leader, it
// removes itself from the voters; it tells gossip it is leaving (so the
// leader removes it too); then it stops Raft and gossip. Idempotent.
//
// With a deadline, Shutdown returns by it (or raftStopFloor after a leave that used it up),
// with an error wrapping context.DeadlineExceeded if Raft had not stopped by then; Raft then
// stops in the background. Without one it waits for Raft however long that takes.
func (n *Node) Shutdown(ctx context.Context) error {
	n.closeOnce.Do(func() {
		close(n.closed)
		// Workers get the caller's budget less a moment for leaving the cluster.
		wctx, wcancel := ctx, context.CancelFunc(func() {})
		if dl, ok := ctx.Deadline(); ok {
			wctx, wcancel = context.WithDeadline(ctx, dl.Add(-min(time.Until(dl)/4, 2*time.Second)))
		}
		n.wq.stopWorkers(wctx)
		wcancel()
		n.wq.halt()
		n.election.Shutdown()
		_ = n.log.Leave(ctx)
		leaveTimeout := time.Second
		if dl, ok := ctx.Deadline(); ok {
			if d := time.Until(dl); d < leaveTimeout {
				leaveTimeout = d
			}
		}
		if leaveTimeout > 0 {
			_ = n.gossip.Leave(leaveTimeout)
		}
		// Raft gets what is left of ctx, and at least raftStopFloor: its shutdown takes
		// milliseconds, and a leave that used the whole budget must not make that an error.
		// Past it, Shutdown returns (the process can exit: Raft's files are crash-safe) and
		// Raft stops in the background; the queue's store, which Raft's state machine writes,
		// closes after Raft has stopped, never under it.
		rctx, rcancel := ctx, context.CancelFunc(func() {})
		if dl, ok := ctx.Deadline(); ok {
			rctx, rcancel = context.WithTimeout(context.WithoutCancel(ctx), max(time.Until(dl), raftStopFloor))
		}
		err1 := n.log.Shutdown(rctx)
		rcancel()
		select {
		case <-n.log.Done():
			n.wq.close()
		default:
			n.logger.Printf("cluster: shutdown: raft has not stopped; the node leaves it to stop in the background: %v", err1)
			go func() { // owned by the log's shutdown: ends when it does
				<-n.log.Done()
				n.wq.close()
			}()
		}
		err2 := n.gossip.Shutdown()
		n.subMu.Lock()
		for id, c := range n.subs {
			close(c)
			delete(n.subs, id)
		}
		n.subs = nil
		n.subMu.Unlock()
		if err1 != nil {
			n.closeErr = err1
		} else {
			n.closeErr = err2
		}
	})
	return n.closeErr
}
