package cluster

import "time"

// MemberState is a member's state as this node sees it.
type MemberState string

const (
	MemberAlive MemberState = "alive"
	MemberDead  MemberState = "dead" // failed: stopped answering probes
	MemberLeft  MemberState = "left" // left gracefully
)

// Meta is what a node advertises by gossip (JSON, at most ~500 bytes).
type Meta struct {
	// RaftAddr is set by the cluster package itself.
	RaftAddr string `json:"raft,omitempty"`
	// AdminAddr, Pods, Modules and Shards are set by the host (SetMeta), for
	// scatter/gather routing and the work queue.
	AdminAddr string   `json:"admin,omitempty"`
	Pods      []string `json:"pods,omitempty"`
	Modules   []string `json:"modules,omitempty"`
	Shards    []string `json:"shards,omitempty"`
	// ScatterAddr is the host:port of the node's internal scatter endpoint, where roots on
	// other nodes call the Shards it holds; empty when it serves none. Set by the host. Nodes
	// that predate it omit it, and their shards are not routed to.
	ScatterAddr string `json:"scatter,omitempty"`
}

// Member is one node of the cluster.
type Member struct {
	Name    string      `json:"name"`
	Addr    string      `json:"addr"`
	State   MemberState `json:"state"`
	Since   time.Time   `json:"since"`
	Meta    Meta        `json:"meta"`
	Voter   bool        `json:"voter"`
	Leader  bool        `json:"leader"` // Raft leader
	IsLocal bool        `json:"local"`
}

// MemberEvent is sent to subscribers on every membership change.
type MemberEvent struct {
	Type   string `json:"type"` // join, leave, update
	Member Member `json:"member"`
}

// Lease is the state of a named election.
type Lease struct {
	Name string `json:"name"`
	// Held is false when nobody holds the lease.
	Held bool `json:"held"`
	// Holder is the node, Session the holder's identity on it (pod/module).
	Holder  string `json:"holder,omitempty"`
	Session string `json:"session,omitempty"`
	// Token is the fencing token: the Raft log index of the grant. It only
	// grows; writes must carry it and stores must reject smaller ones.
	Token uint64 `json:"token"`
	// TTL of the lease.
	TTLMillis int64 `json:"ttl_ms"`
	// Expiry: for the holder, the conservative local deadline (request send
	// time + TTL, shortened by the clock-drift margin) after which it must
	// stop acting as leader unless renewed. For others, the leader's view.
	Expiry time.Time `json:"expiry"`
	// Index changes on every grant, renew and release (for Watch).
	Index uint64 `json:"index"`
	// RaftLeader is the Raft leader that answered.
	RaftLeader string `json:"raft_leader,omitempty"`
}

// ValidFor is the time left before Expiry (0 if past).
func (l Lease) ValidFor() time.Duration {
	d := time.Until(l.Expiry)
	if d < 0 || !l.Held {
		return 0
	}
	return d
}

// CampaignRequest asks for a named lease.
type CampaignRequest struct {
	// Session identifies the holder on this node, e.g. "pod/module".
	Session string `json:"session"`
	// TTLMillis: 0 means the configured default.
	TTLMillis int64 `json:"ttl_ms"`
}

// RenewRequest extends a held lease.
type RenewRequest struct {
	Session   string `json:"session"`
	Token     uint64 `json:"token"`
	TTLMillis int64  `json:"ttl_ms"`
}

// ResignRequest gives a lease up.
type ResignRequest struct {
	Session string `json:"session"`
	Token   uint64 `json:"token"`
}

// Status is the local view of the cluster.
type Status struct {
	Node       string   `json:"node"`
	RaftState  string   `json:"raft_state"` // Leader, Follower, Candidate, Shutdown
	RaftLeader string   `json:"raft_leader"`
	Term       uint64   `json:"term"`
	Voters     []string `json:"voters"`
	Members    int      `json:"alive_members"`
}
