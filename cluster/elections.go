package cluster

// Elections is the node's API of named elections: leases with fencing tokens, decided by the
// replicated log. Safe for concurrent use.
type Elections struct{ n *Node }

// Elections returns the node's election API.
func (n *Node) Elections() *Elections { return &n.electionsAPI }

// List lists every named lease in this node's replica of the election state, sorted by
// name, as Get would describe it to a node that does not hold it. It reads the local replica
// (no Raft round trip), so a follower may lag the leader by a heartbeat: for a console or
// metrics, not for deciding who may write.
func (e *Elections) List() []Lease {
	n := e.n
	recs := n.election.FSM().List()
	out := make([]Lease, 0, len(recs))
	for _, r := range recs {
		out = append(out, n.local(r))
	}
	return out
}
