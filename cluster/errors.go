package cluster

import (
	"errors"

	"github.com/wasmpod/wasmpod/cluster/internal/election"
)

// Sentinel errors. Hosts map them to status codes, e.g. ErrNotLeader ->
// 409, ErrStaleToken -> 409, ErrNoQuorum -> 503, ErrInvalid -> 400.
var (
	// ErrNotLeader: a campaign found the lease held by someone else.
	ErrNotLeader = errors.New("cluster: not the leader: lease held by another holder")
	// ErrStaleToken: renew, resign or a fenced write used a token that is
	// no longer the current one.
	ErrStaleToken = errors.New("cluster: stale fencing token")
	// ErrNoQuorum: no Raft leader could be reached (this node is on the
	// minority side of a partition, or the cluster is still electing).
	ErrNoQuorum = errors.New("cluster: no quorum: no raft leader reachable")
	// ErrInvalid: a malformed request (empty name, bad TTL, ...).
	ErrInvalid = errors.New("cluster: invalid request")
	// ErrClosed: the node is shut down.
	ErrClosed = errors.New("cluster: node is shut down")
	// ErrMetaTooLarge: node metadata do not fit in a gossip message.
	ErrMetaTooLarge = errors.New("cluster: node metadata too large for gossip (512 bytes)")
)

func mapErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, election.ErrHeld):
		return ErrNotLeader
	case errors.Is(err, election.ErrStaleToken):
		return ErrStaleToken
	case errors.Is(err, election.ErrNoLeader):
		return ErrNoQuorum
	case errors.Is(err, election.ErrBadRequest):
		return ErrInvalid
	case errors.Is(err, election.ErrClosed):
		return ErrClosed
	}
	return err
}
