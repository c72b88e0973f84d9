// Package cluster is wasmpod's cluster layer: gossip membership
// (hashicorp/memberlist) with node metadata, encryption and periodic
// rejoin, and named leader elections with fencing tokens on hashicorp/raft.
//
// A Node is both a gossip member and a Raft voter. Voters follow
// membership: the Raft leader adds alive members and removes members that
// left (and, after Election.RemoveDeadAfter, dead ones). A node started
// without Join addresses bootstraps a cluster of one, so a single node needs
// no flags.
//
// Every node-to-node connection (Raft, leader forwarding, blob transfer, and
// through SecureListener and DialMember the scatter endpoint) is mutual TLS
// 1.3 between current members, with a CA derived from the gossip key or
// given in Config.TLS; a multi-node Config with neither fails with
// ErrInsecure unless InsecureCluster is set. See "Cluster trust model" in
// the root RATIONALE.md.
//
// Elections are leases in a Raft state machine: Campaign, Renew, Resign,
// Get and Watch. The fencing token is the Raft log index of the grant, so
// it only grows. See the "Election" section of the root RATIONALE.md for the clock assumptions.
//
// The API returns plain structs with JSON tags and sentinel errors
// (ErrNotLeader, ErrStaleToken, ErrNoQuorum, ErrInvalid, ErrClosed); the
// host exposes them over HTTP and as guest host functions.
package cluster
