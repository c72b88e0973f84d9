// Package membership wraps hashicorp/memberlist: gossip membership with
// encryption, node metadata, a member table that remembers dead and departed
// nodes, change events, and a periodic rejoin of known peers so that the
// cluster converges to one view after a partition heals.
//
// memberlist never probes a node again once it has declared it dead, so two
// halves of a healed partition only merge when someone pushes state to the
// other side. The rejoin loop does that: every RejoinInterval it joins every
// known address that is not currently alive.
package membership

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// State of a member as seen by this node.
type State string

const (
	StateAlive State = "alive"
	StateDead  State = "dead"
	StateLeft  State = "left"
)

// Member is one node of the gossip pool.
type Member struct {
	Name    string
	Addr    string // host:port of the gossip endpoint
	Meta    []byte
	State   State
	Changed time.Time
}

// EventKind says what happened to a member.
type EventKind int

const (
	EventJoin EventKind = iota
	EventLeave
	EventUpdate
)

// Event is a membership change.
type Event struct {
	Kind   EventKind
	Member Member
}

// Config of the gossip layer.
type Config struct {
	Name          string
	BindAddr      string
	BindPort      int
	AdvertiseAddr string
	AdvertisePort int
	Join          []string
	Key           []byte // nil: no encryption
	Label         string
	// Profile: "lan" or "local".
	Profile        string
	RejoinInterval time.Duration
	// Meta returns this node's metadata; called by memberlist.
	Meta      func() []byte
	LogOutput io.Writer
	// OnEvent is called synchronously for every event, in order. It must not block.
	OnEvent func(Event)
	// Faults injects gossip packet loss and delay (tests only).
	Faults Faults
}

// Gossip is a running membership agent.
type Gossip struct {
	cfg  Config
	ml   *memberlist.Memberlist
	stop chan struct{}
	wg   sync.WaitGroup

	mu      sync.Mutex
	members map[string]*Member
	known   map[string]struct{} // addresses ever seen or configured
	closed  bool
	leaving bool
}

// ErrMetaTooLarge is returned when metadata exceed memberlist's limit.
var ErrMetaTooLarge = fmt.Errorf("membership: node metadata exceed %d bytes", memberlist.MetaMaxSize)

// MetaMaxSize is the largest metadata a node may advertise.
const MetaMaxSize = memberlist.MetaMaxSize

// Start creates the memberlist and joins the configured peers (errors joining
// are not fatal: the rejoin loop retries).
func Start(cfg Config) (*Gossip, int, error) {
	var mc *memberlist.Config
	switch cfg.Profile {
	case "local":
		mc = memberlist.DefaultLocalConfig()
	default:
		mc = memberlist.DefaultLANConfig()
	}
	mc.Name = cfg.Name
	mc.BindAddr = cfg.BindAddr
	mc.BindPort = cfg.BindPort
	mc.AdvertiseAddr = cfg.AdvertiseAddr
	mc.AdvertisePort = cfg.AdvertisePort
	if mc.AdvertisePort == 0 {
		mc.AdvertisePort = cfg.BindPort
	}
	mc.Label = cfg.Label
	if len(cfg.Key) > 0 {
		kr, err := memberlist.NewKeyring(nil, cfg.Key)
		if err != nil {
			return nil, 0, fmt.Errorf("membership: gossip key: %w", err)
		}
		mc.Keyring = kr
		mc.GossipVerifyIncoming = true
		mc.GossipVerifyOutgoing = true
	}
	// A restarted node may come back on another address under the same name.
	mc.DeadNodeReclaimTime = 30 * time.Second
	out := cfg.LogOutput
	if out == nil {
		out = io.Discard
	}
	mc.Logger = log.New(out, "memberlist "+cfg.Name+" ", log.LstdFlags|log.Lmicroseconds)
	g := &Gossip{
		cfg:     cfg,
		stop:    make(chan struct{}),
		members: map[string]*Member{},
		known:   map[string]struct{}{},
	}
	for _, a := range cfg.Join {
		g.known[a] = struct{}{}
	}
	mc.Delegate = delegate{g}
	mc.Events = events{g}
	if cfg.Faults.Active() {
		lt, err := newLossyTransport(mc.BindAddr, mc.BindPort, cfg.Faults, mc)
		if err != nil {
			return nil, 0, fmt.Errorf("membership: start: %w", err)
		}
		mc.Transport = lt
	}
	ml, err := memberlist.Create(mc)
	if err != nil && mc.AdvertiseAddr == "" && len(cfg.Join) == 0 && net.ParseIP(mc.BindAddr).IsUnspecified() {
		// A lone node on a host with no private IP (a laptop on a public
		// address, a bare container): advertise loopback rather than fail.
		mc.AdvertiseAddr = "127.0.0.1"
		ml, err = memberlist.Create(mc)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("membership: start: %w", err)
	}
	g.ml = ml
	n := 0
	if len(cfg.Join) > 0 {
		n, err = ml.Join(cfg.Join)
		if err != nil && n == 0 {
			err = fmt.Errorf("membership: join %v: %w", cfg.Join, err)
		} else {
			err = nil
		}
	}
	if cfg.RejoinInterval > 0 {
		g.wg.Add(1)
		go g.rejoinLoop()
	}
	return g, n, err
}

// LocalName is the node name.
func (g *Gossip) LocalName() string { return g.cfg.Name }

// LocalAddr is the advertised gossip address.
func (g *Gossip) LocalAddr() string { return g.ml.LocalNode().Address() }

// Join contacts the given peers now; it returns how many answered.
func (g *Gossip) Join(addrs []string) (int, error) {
	g.mu.Lock()
	for _, a := range addrs {
		g.known[a] = struct{}{}
	}
	g.mu.Unlock()
	return g.ml.Join(addrs)
}

// UpdateMeta re-broadcasts the local metadata.
func (g *Gossip) UpdateMeta(timeout time.Duration) error {
	if m := g.cfg.Meta; m != nil && len(m())+1 > MetaMaxSize {
		return ErrMetaTooLarge
	}
	return g.ml.UpdateNode(timeout)
}

// Members returns every member this node knows of, dead and left ones
// included, sorted by name.
func (g *Gossip) Members() []Member {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]Member, 0, len(g.members))
	for _, m := range g.members {
		c := *m
		c.Meta = append([]byte(nil), m.Meta...)
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// AliveCount is the number of alive members, this node included.
func (g *Gossip) AliveCount() int { return g.ml.NumMembers() }

// HealthScore is memberlist's local health (0 is healthy).
func (g *Gossip) HealthScore() int { return g.ml.GetHealthScore() }

func (g *Gossip) rejoinLoop() {
	defer g.wg.Done()
	t := time.NewTicker(g.cfg.RejoinInterval)
	defer t.Stop()
	for {
		select {
		case <-g.stop:
			return
		case <-t.C:
		}
		var targets []string
		self := g.LocalAddr() // outside g.mu: memberlist calls us back under its own lock
		g.mu.Lock()
		alive := map[string]bool{}
		for _, m := range g.members {
			if m.State == StateAlive {
				alive[m.Addr] = true
			}
		}
		for a := range g.known {
			if !alive[a] && a != self {
				targets = append(targets, a)
			}
		}
		g.mu.Unlock()
		if len(targets) == 0 {
			continue
		}
		sort.Strings(targets)
		// Errors are expected while peers are down or unreachable.
		_, _ = g.ml.Join(targets)
	}
}

// Leave broadcasts a graceful leave, waiting at most timeout.
func (g *Gossip) Leave(timeout time.Duration) error {
	g.mu.Lock()
	g.leaving = true
	g.mu.Unlock()
	_ = g.ml.UpdateNode(timeout / 2)
	return g.ml.Leave(timeout / 2)
}

// Shutdown stops the rejoin loop and the memberlist. Idempotent.
func (g *Gossip) Shutdown() error {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return nil
	}
	g.closed = true
	g.mu.Unlock()
	close(g.stop)
	g.wg.Wait()
	return g.ml.Shutdown()
}

func (g *Gossip) record(kind EventKind, n *memberlist.Node, st State) {
	addr := net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))
	var meta []byte
	if len(n.Meta) > 0 {
		if n.Meta[0] == 1 && st == StateDead {
			st = StateLeft
		}
		meta = append([]byte(nil), n.Meta[1:]...)
	}
	m := Member{Name: n.Name, Addr: addr, Meta: meta, State: st, Changed: time.Now()}
	g.mu.Lock()
	g.members[n.Name] = &m
	g.known[addr] = struct{}{}
	g.mu.Unlock()
	if g.cfg.OnEvent != nil {
		g.cfg.OnEvent(Event{Kind: kind, Member: m})
	}
}

type events struct{ g *Gossip }

func (e events) NotifyJoin(n *memberlist.Node) { e.g.record(EventJoin, n, StateAlive) }
func (e events) NotifyUpdate(n *memberlist.Node) {
	e.g.record(EventUpdate, n, StateAlive)
}
func (e events) NotifyLeave(n *memberlist.Node) { e.g.record(EventLeave, n, StateDead) }

type delegate struct{ g *Gossip }

// NodeMeta prefixes the application's metadata with one flag byte: 1 while
// the node is leaving, so that peers can tell a graceful leave from a death
// (memberlist reports both through NotifyLeave without saying which).
func (d delegate) NodeMeta(limit int) []byte {
	flag := byte(0)
	d.g.mu.Lock()
	if d.g.leaving {
		flag = 1
	}
	d.g.mu.Unlock()
	var b []byte
	if d.g.cfg.Meta != nil {
		b = d.g.cfg.Meta()
	}
	if len(b)+1 > limit {
		b = nil
	}
	return append([]byte{flag}, b...)
}
func (delegate) NotifyMsg([]byte)                {}
func (delegate) GetBroadcasts(int, int) [][]byte { return nil }
func (delegate) LocalState(bool) []byte          { return nil }
func (delegate) MergeRemoteState([]byte, bool)   {}

// ErrKeyLength is returned for a gossip key of the wrong size.
var ErrKeyLength = errors.New("gossip key must be 16, 24 or 32 bytes (raw, or base64 text)")

// ParseKey decodes a gossip key file: base64 text (like `consul keygen`) or
// raw bytes, 16, 24 or 32 bytes long once decoded.
func ParseKey(b []byte) ([]byte, error) {
	txt := strings.TrimSpace(string(b))
	if dec, err := base64.StdEncoding.DecodeString(txt); err == nil && validKeyLen(len(dec)) {
		return dec, nil
	}
	if validKeyLen(len(b)) {
		return append([]byte(nil), b...), nil
	}
	return nil, ErrKeyLength
}

func validKeyLen(n int) bool { return n == 16 || n == 24 || n == 32 }
