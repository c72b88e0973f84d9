// Package scatterservice is a pod's scatter/gather service on one node (spec.scatter): the root
// that the ingress's scatter route calls, which fans a request out to the shards' replicas and
// merges their answers, and the internal endpoint where other nodes' roots call the shards this
// node holds. It routes by the cluster's member list and the shards each member advertises.
package scatterservice

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wasmpod/wasmpod/cluster"
	"github.com/wasmpod/wasmpod/cluster/scatter"
	"github.com/wasmpod/wasmpod/host/internal/console"
	"github.com/wasmpod/wasmpod/host/internal/listener"
	"github.com/wasmpod/wasmpod/host/internal/nodemeta"
	"github.com/wasmpod/wasmpod/host/internal/podspec"
	"github.com/wasmpod/wasmpod/host/internal/supervisor"
	"github.com/wasmpod/wasmpod/internal/peerhttp"
)

// Scatter transports between nodes (--scatter-transport).
const (
	TransportFastHTTP = "fasthttp" // pooled keep-alive fasthttp client: the default
	TransportNetHTTP  = "nethttp"  // net/http client: the baseline of the transport comparison
)

// resyncInterval is how often the routing table is rebuilt from the member list even without a
// membership event: events are dropped when the subscriber falls behind, and a member's
// metadata (its shards) changes at most every interval of the node metadata keeper (nodemeta).
const resyncInterval = 2 * time.Second

// Service is the pod's scatter/gather service on this node (spec.scatter): the root
// that the ingress path calls, and the internal endpoint other nodes' roots call for the shards
// this node holds.
//
// Routing: the shards of the spec, in spec order, each with its replicas: the local leaf module
// first (when this node holds the shard), then the nodes whose gossip metadata advertise the
// shard and an internal endpoint, alive ones first, rotated by shard so that the shards' first
// remote replicas spread over the nodes; at most spec.replicas in all. A scatter.Gather is
// immutable, so when the routing changes (a node joins, leaves or advertises other shards) a
// new one is built and swapped in, and the old one closed once its requests are done.
// Membership events also mark nodes dead or alive on the current Gather at once.
type Service struct {
	spec      *podspec.Scatter
	sup       *supervisor.Supervisor
	node      *cluster.Node
	log       *slog.Logger
	cfg       scatter.Config
	transport string
	local     map[string]*supervisor.Handle // shard -> its leaf module on this node
	merge     *supervisor.Handle

	endpoint *scatter.Endpoint
	server   *peerhttp.Server
	ln       net.Listener
	addr     string // advertised internal endpoint address

	cur atomic.Pointer[scatter.Gather]

	answers console.AnswerLog // recent answers and their totals, for the console and /metrics

	mu    sync.Mutex // guards peers and table; held while the routing is rebuilt
	peers map[string]scatter.Peer
	table string // fingerprint of the current routing

	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

// SpecConfig turns the spec's tuning into a scatter.Config.
func SpecConfig(sc *podspec.Scatter) scatter.Config {
	cfg := scatter.DefaultConfig()
	cfg.Deadline = sc.Deadline.Std()
	cfg.MergeReserve = sc.MergeReserve.Std()
	cfg.NoHedge = sc.Hedge.Disabled
	cfg.HedgeMin = sc.Hedge.Min.Std()
	cfg.HedgeInitial = sc.Hedge.Initial.Std()
	cfg.HedgePercentile = float64(sc.Hedge.Percentile) / 100
	return cfg
}

// New prepares the service of sup's pod (which must have spec.scatter): module
// handles and the internal endpoint with its shards. ln is the internal listener, advertised as
// advertise. Nothing is served or routed until Start.
func New(sup *supervisor.Supervisor, node *cluster.Node, ln net.Listener, advertise, transport string, log *slog.Logger) (*Service, error) {
	sc := sup.Pod().Spec.Scatter
	if transport != TransportFastHTTP && transport != TransportNetHTTP {
		return nil, fmt.Errorf("--scatter-transport %q: use %s or %s", transport, TransportFastHTTP, TransportNetHTTP)
	}
	s := &Service{spec: sc, sup: sup, node: node, log: log, cfg: SpecConfig(sc), transport: transport,
		local: map[string]*supervisor.Handle{}, peers: map[string]scatter.Peer{}, ln: ln, addr: advertise}
	var err error
	if s.merge, err = sup.Handle(sc.Merge, podspec.RoleMerge); err != nil {
		return nil, fmt.Errorf("scatter merge: %w", err)
	}
	if s.endpoint, err = scatter.NewEndpoint(scatter.DefaultEndpointConfig()); err != nil {
		return nil, fmt.Errorf("scatter endpoint: %w", err)
	}
	for _, sh := range sc.Shards {
		if !sh.Local() {
			continue
		}
		h, err := sup.Handle(sh.Leaf, podspec.RoleLeaf)
		if err != nil {
			return nil, fmt.Errorf("scatter shard %s: %w", sh.Name, err)
		}
		s.local[sh.Name] = h
		if err := s.endpoint.Register(sh.Name, admitted{sup: sup, h: h}); err != nil {
			return nil, fmt.Errorf("scatter shard %s: %w", sh.Name, err)
		}
	}
	s.server = peerhttp.NewServer(s.endpoint, peerhttp.DefaultConfig())
	return s, nil
}

// Start serves the internal endpoint, builds the first routing table and follows membership.
func (s *Service) Start() error {
	if err := s.rebuild(); err != nil {
		return err
	}
	events, unsubscribe := s.node.Subscribe(64)
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = func() { cancel(); unsubscribe() }
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		// Wrapped: an accept error (EMFILE) must not stop the endpoint for good.
		if err := s.server.Serve(listener.Wrap(s.ln, "scatter", s.log)); err != nil {
			s.log.Error("scatter internal endpoint stopped", "err", err)
		}
	}()
	go func() {
		defer s.wg.Done()
		s.follow(ctx, events)
	}()
	s.log.Info("scatter service", "path", s.spec.Path, "shards", len(s.spec.Shards), "local", len(s.local),
		"internal", s.addr, "transport", s.transport)
	return nil
}

// follow applies membership events until ctx ends: the node's liveness on the current Gather at
// once, then a rebuild if the routing changed; and a rebuild every resyncInterval.
func (s *Service) follow(ctx context.Context, events <-chan cluster.MemberEvent) {
	t := time.NewTicker(resyncInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				return
			}
			if g := s.cur.Load(); g != nil {
				g.SetNodeAlive(ev.Member.Name, ev.Member.State == cluster.MemberAlive)
			}
		case <-t.C:
		}
		if err := s.rebuild(); err != nil {
			s.log.Warn("scatter: routing not updated", "err", err)
		}
	}
}

// shardRoute is one shard's replicas: local says the first is this node's leaf module, and
// remotes are the nodes after it, in order of preference.
type shardRoute struct {
	name    string
	local   bool
	remotes []remoteReplica
}

type remoteReplica struct {
	node, addr string
	alive      bool
}

// routeTable computes the routing of spec from the member list (self excluded): see
// Service. It is a pure function of its arguments.
func routeTable(spec *podspec.Scatter, members []cluster.Member) []shardRoute {
	holders := map[string][]remoteReplica{}
	for _, m := range members {
		hm := nodemeta.Of(m.Meta)
		if m.IsLocal || m.State == cluster.MemberLeft || hm.ScatterAddr == "" {
			continue
		}
		for _, sh := range hm.Shards {
			holders[sh] = append(holders[sh], remoteReplica{node: m.Name, addr: hm.ScatterAddr, alive: m.State == cluster.MemberAlive})
		}
	}
	out := make([]shardRoute, len(spec.Shards))
	for i, sh := range spec.Shards {
		r := shardRoute{name: sh.Name, local: sh.Local()}
		hs := holders[sh.Name]
		slices.SortFunc(hs, func(a, b remoteReplica) int { return strings.Compare(a.node, b.node) })
		if len(hs) > 0 {
			k := i % len(hs)
			hs = append(hs[k:len(hs):len(hs)], hs[:k]...)
		}
		slices.SortStableFunc(hs, func(a, b remoteReplica) int {
			switch {
			case a.alive == b.alive:
				return 0
			case a.alive:
				return -1
			}
			return 1
		})
		n := int(spec.Replicas)
		if r.local {
			n--
		}
		r.remotes = hs[:min(n, len(hs))]
		out[i] = r
	}
	return out
}

// fingerprint identifies a routing table: equal tables, equal fingerprints.
func fingerprint(t []shardRoute) string {
	var b strings.Builder
	for _, r := range t {
		b.WriteString(r.name)
		b.WriteString(strconv.FormatBool(r.local))
		for _, rr := range r.remotes {
			b.WriteString("|" + rr.node + "@" + rr.addr)
		}
		b.WriteByte(';')
	}
	return b.String()
}

// rebuild swaps in a new Gather if the routing changed, closes the old one once its requests
// are done, and closes the peers nothing routes to any more.
func (s *Service) rebuild() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	members := s.node.Members()
	table := routeTable(s.spec, members)
	fp := fingerprint(table)
	if fp == s.table && s.cur.Load() != nil {
		return nil
	}
	used := map[string]bool{}
	shards := make([]scatter.Shard, len(table))
	for i, r := range table {
		sh := scatter.Shard{Name: r.name}
		if r.local {
			sh.Replicas = append(sh.Replicas, scatter.Replica{Leaf: s.local[r.name]})
		}
		for _, rr := range r.remotes {
			p, err := s.peer(rr.addr)
			if err != nil {
				return err
			}
			used[rr.addr] = true
			sh.Replicas = append(sh.Replicas, scatter.Replica{Node: rr.node, Leaf: p.Leaf(r.name)})
		}
		if len(sh.Replicas) == 0 {
			sh.Replicas = []scatter.Replica{{Leaf: unavailable{}}}
		}
		shards[i] = sh
	}
	g, err := scatter.New(shards, s.merge, s.cfg)
	if err != nil {
		return fmt.Errorf("scatter: %w", err)
	}
	g.SyncMembers(members)
	old := s.cur.Swap(g)
	s.table = fp
	if old != nil {
		old.Close() // waits for its requests, each bounded by its deadline
	}
	for addr, p := range s.peers {
		if !used[addr] {
			p.Close()
			delete(s.peers, addr)
		}
	}
	s.log.Debug("scatter: routing updated", "table", fp)
	return nil
}

// peer returns the client to addr, creating it. Called with mu held.
func (s *Service) peer(addr string) (scatter.Peer, error) {
	if p := s.peers[addr]; p != nil {
		return p, nil
	}
	newPeer := scatter.NewFastHTTPPeer
	if s.transport == TransportNetHTTP {
		newPeer = scatter.NewNetHTTPPeer
	}
	pc := scatter.DefaultPeerConfig()
	pc.Dial = s.node.DialMember // the cluster's mutual TLS: the peer must be a member, and so must we
	p, err := newPeer(addr, pc)
	if err != nil {
		return nil, fmt.Errorf("scatter peer %s: %w", addr, err)
	}
	s.peers[addr] = p
	return p, nil
}

// Do answers one root request (ingress.ScatterRoot): admitted as ingress traffic, so Drain waits
// for it and it is refused once the pod shuts down.
func (s *Service) Do(ctx context.Context, req, dst []byte) ([]byte, scatter.Result, error) {
	release, err := s.sup.AdmitIngress()
	if err != nil {
		return dst, scatter.Result{}, err
	}
	defer release()
	start := time.Now()
	for {
		g := s.cur.Load()
		out, res, err := g.Do(ctx, req, dst)
		if errors.Is(err, scatter.ErrClosed) && s.cur.Load() != g {
			continue // swapped out between Load and Do: use the new one
		}
		s.answers.Record(start, res, err)
		return out, res, err
	}
}

// Answers is the log of this root's recent answers (the console's scatter view, the
// wasmpod_scatter_* metrics).
func (s *Service) Answers() *console.AnswerLog { return &s.answers }

// ShardLatencies is every shard's recent remote-call latency, from the current routing.
func (s *Service) ShardLatencies() []scatter.ShardLatency {
	if g := s.cur.Load(); g != nil {
		return g.ShardLatencies()
	}
	return nil
}

// ShardLeaves maps every shard to the leaf module that serves it on this node.
func (s *Service) ShardLeaves() map[string]string {
	out := make(map[string]string, len(s.spec.Shards))
	for _, sh := range s.spec.Shards {
		out[sh.Name] = sh.Leaf
	}
	return out
}

// LocalShards lists the shards whose leaf module runs and is ready here, in spec order: what
// this node advertises by gossip.
func (s *Service) LocalShards() []string {
	var out []string
	for _, sh := range s.spec.Shards {
		if h := s.local[sh.Name]; h != nil && h.Ready() {
			out = append(out, sh.Name)
		}
	}
	return out
}

// Addr is the internal endpoint's address as other nodes should dial it (advertised by gossip).
func (s *Service) Addr() string { return s.addr }

// Close stops following membership and the internal endpoint (in-flight calls finish within
// ctx), then closes the Gather and the peers. Idempotent.
func (s *Service) Close(ctx context.Context) error {
	var err error
	s.once.Do(func() {
		if s.cancel != nil {
			s.cancel()
		}
		s.endpoint.Close()
		err = s.server.Shutdown(ctx)
		s.ln.Close()
		s.wg.Wait()
		s.mu.Lock()
		defer s.mu.Unlock()
		if g := s.cur.Load(); g != nil {
			g.Close()
		}
		for addr, p := range s.peers {
			p.Close()
			delete(s.peers, addr)
		}
	})
	return err
}

// admitted serves a local shard to other nodes' roots as ingress traffic: refused while the pod
// shuts down (the root fails over to another replica), waited for by Drain.
type admitted struct {
	sup *supervisor.Supervisor
	h   *supervisor.Handle
}

func (a admitted) Call(ctx context.Context, id scatter.RequestID, in, dst []byte) ([]byte, error) {
	release, err := a.sup.AdmitIngress()
	if err != nil {
		return dst, err
	}
	defer release()
	return a.h.Call(ctx, id, in, dst)
}

// unavailable is the replica of a shard no node holds yet: it fails at once, so the shard is
// reported missing.
type unavailable struct{}

func (unavailable) RunsLocally() bool { return true }

func (unavailable) Call(_ context.Context, _ scatter.RequestID, _, dst []byte) ([]byte, error) {
	return dst, fmt.Errorf("%w: no node advertises the shard", scatter.ErrNoReplica)
}

// AdvertiseAddr is the address other nodes dial for a listener bound to bound: bound itself,
// or, when bound to every interface, the gossip address's host with bound's port.
func AdvertiseAddr(bound net.Addr, gossip string) string {
	host, port, err := net.SplitHostPort(bound.String())
	if err != nil {
		return bound.String()
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		if gh, _, err := net.SplitHostPort(gossip); err == nil {
			return net.JoinHostPort(gh, port)
		}
	}
	return bound.String()
}
