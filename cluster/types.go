package cluster

import (
	"encoding/json"
	"fmt"
	"time"
)

// MemberState is a member's state as this node sees it.
type MemberState string

const (
	MemberAlive MemberState = "alive"
	MemberDead  MemberState = "dead" // failed: stopped answering probes
	MemberLeft  MemberState = "left" // left gracefully
)

// Meta is the host's part of what a node advertises by gossip: a small map from keys the
// host chooses to JSON values (at most ~500 bytes with the cluster's own keys). The cluster
// neither reads nor names the host's keys; it encodes the map as one JSON object with its own
// keys beside them ("raft", "rv", "qo"), which SetMeta refuses. A host that gives a key a new
// meaning gives it a new name, so that nodes of different releases keep understanding each
// other. Use Set, String and Strings, or the map directly.
type Meta map[string]json.RawMessage

// reservedMeta are the cluster's own keys.
var reservedMeta = map[string]bool{metaRaftAddr: true, metaLogVersion: true, metaQueueOps: true}

// Set stores v's JSON under key.
func (m Meta) Set(key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("%w: meta %q: %v", ErrInvalid, key, err)
	}
	m[key] = b
	return nil
}

// String reads a string value ("" when absent or not a string).
func (m Meta) String(key string) string {
	var s string
	_ = json.Unmarshal(m[key], &s)
	return s
}

// Strings reads a list of strings (nil when absent or not a list of strings).
func (m Meta) Strings(key string) []string {
	var s []string
	_ = json.Unmarshal(m[key], &s)
	return s
}

// Equal reports whether two maps hold the same keys and encoded values.
func (m Meta) Equal(o Meta) bool {
	if len(m) != len(o) {
		return false
	}
	for k, v := range m {
		w, ok := o[k]
		if !ok || string(v) != string(w) {
			return false
		}
	}
	return true
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
