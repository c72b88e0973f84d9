// Package election is the guest side of the election sidecar API (guest-sdk/ABI.md §4,
// imports `election` and `fenced_write`): named leases with fencing tokens, decided by the
// cluster's Raft group, with the same meaning as the host's /v1/election admin routes.
//
// A module campaigns on every tick; while it holds the lease it renews it and writes with its
// token, and the store rejects tokens older than the newest it has seen, so a leader that was
// paused past its lease cannot overwrite its successor:
//
//	var lead = election.NewLeader("compactor", 0)
//
//	func init() {
//		wasmpod.OnTick(func(now time.Time) error {
//			l, ok := lead.Tick()
//			if !ok {
//				return nil // not the leader (or no quorum): do nothing
//			}
//			return election.Write("compactor", l.Token, []byte("work done"))
//		})
//	}
//
// The session (who holds the lease) is "pod/module", set by the host: every instance of a
// module on a node is the same holder.
package election

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Operations of the election import.
const (
	opGet      = 0
	opCampaign = 1
	opRenew    = 2
	opResign   = 3
)

// Sentinel errors, one per status the host returns.
var (
	// ErrNotLeader: a campaign found the lease held by someone else (the Lease says who).
	ErrNotLeader = errors.New("election: not the leader")
	// ErrStaleToken: renew, resign or a fenced write used a token that is no longer current.
	ErrStaleToken = errors.New("election: stale fencing token")
	// ErrNoQuorum: the cluster could not decide (partition, election in progress): act as not
	// leader.
	ErrNoQuorum = errors.New("election: no quorum")
	// ErrInvalid: a bad name, TTL or token.
	ErrInvalid = errors.New("election: invalid request")
	// ErrUnavailable: the host runs no cluster node, is shutting down, or (fenced writes) the
	// store could not be reached.
	ErrUnavailable = errors.New("election: unavailable")
	// ErrNoStore: the module's config has no fenced_store key.
	ErrNoStore = errors.New("election: no fenced store configured (config key fenced_store)")
	// ErrHost: the host answered something this SDK does not know.
	ErrHost = errors.New("election: unexpected host answer")
)

// Lease is a named election's state, as the host reports it.
type Lease struct {
	Name string `json:"name"`
	// Held is false when nobody holds the lease.
	Held bool `json:"held"`
	// Holder is the node, Session the holder on it ("pod/module").
	Holder  string `json:"holder,omitempty"`
	Session string `json:"session,omitempty"`
	// Token is the fencing token: it only grows. Write with it.
	Token     uint64 `json:"token"`
	TTLMillis int64  `json:"ttl_ms"`
	// Expiry is the wall-clock deadline; ValidMillis the time left when the host answered
	// (for the holder: a conservative local deadline). Stop acting as leader after it.
	Expiry      time.Time `json:"expiry"`
	ValidMillis int64     `json:"valid_ms"`
	// Index changes on every grant, renew and release.
	Index      uint64 `json:"index"`
	RaftLeader string `json:"raft_leader,omitempty"`
}

// statusErr maps the import's status to an error.
func statusErr(status uint32) error {
	switch status {
	case 0:
		return nil
	case 1:
		return ErrNotLeader
	case 2:
		return ErrStaleToken
	case 3:
		return ErrNoQuorum
	case 4:
		return ErrInvalid
	case 5:
		return ErrUnavailable
	}
	return fmt.Errorf("%w: status %d", ErrHost, status)
}

// call runs one election operation, growing the output buffer if the lease does not fit.
func call(op int32, name string, token uint64, ttl time.Duration) (Lease, error) {
	var l Lease
	ttlMs := ttl.Milliseconds()
	if ttl < 0 || ttlMs > 1<<31-1 {
		return l, ErrInvalid
	}
	var small [512]byte
	out := small[:]
	for {
		r := hostElection(op, name, token, int32(ttlMs), out)
		status, n := uint32(r>>32), uint32(r)
		if status != 0 && n == 0 {
			return l, statusErr(status)
		}
		if int(n) > len(out) {
			out = make([]byte, n) // too small: ask again with room for the whole lease
			continue
		}
		if err := json.Unmarshal(out[:n], &l); err != nil {
			return l, fmt.Errorf("%w: lease JSON: %v", ErrHost, err)
		}
		return l, statusErr(status)
	}
}

// Get returns the named lease as the cluster's Raft leader sees it.
func Get(name string) (Lease, error) { return call(opGet, name, 0, 0) }

// Campaign asks for the named lease (becomeLeader) with ttl (0: the cluster's default, 2 s).
// It returns nil when this module holds it, or ErrNotLeader and the holder's lease.
func Campaign(name string, ttl time.Duration) (Lease, error) {
	return call(opCampaign, name, 0, ttl)
}

// Renew extends the lease held with token (renewLeadership).
func Renew(name string, token uint64, ttl time.Duration) (Lease, error) {
	return call(opRenew, name, token, ttl)
}

// Resign gives the lease up.
func Resign(name string, token uint64) (Lease, error) { return call(opResign, name, token, 0) }

// Write asks the host to write data to the module's fenced store (config key fenced_store)
// under name, carrying token; the store rejects a token older than the newest it has admitted
// (ErrStaleToken).
func Write(name string, token uint64, data []byte) error {
	switch r := hostFencedWrite(name, token, data); r {
	case 0:
		return nil
	case 1:
		return ErrStaleToken
	case 2:
		return ErrUnavailable
	case 3:
		return ErrNoStore
	case 4:
		return ErrInvalid
	default:
		return fmt.Errorf("%w: fenced_write returned %d", ErrHost, r)
	}
}

// Leader keeps one lease: Tick campaigns when it holds nothing and renews what it holds.
// It is not safe for concurrent use (a module ticks on one instance at a time).
type Leader struct {
	name  string
	ttl   time.Duration
	lease Lease
	held  bool
	until time.Time // local deadline: now + ValidMillis at the last grant or renew
	renew time.Time // when to renew: a third of the validity after the last grant or renew
	now   func() time.Time
}

// NewLeader returns a Leader for name with ttl (0: the cluster's default).
func NewLeader(name string, ttl time.Duration) *Leader {
	return &Leader{name: name, ttl: ttl, now: time.Now}
}

// Tick campaigns or renews and reports whether this module leads, with the lease. While a third
// of the lease's validity has not passed since the last grant or renew it asks the host nothing
// (each renew is a Raft write). A failed renew (stale token, no quorum) drops leadership at
// once: the caller must stop acting as leader, and the next Tick campaigns again.
func (l *Leader) Tick() (Lease, bool) {
	now := l.now()
	if l.held && now.Before(l.renew) && now.Before(l.until) {
		return l.lease, true
	}
	var lease Lease
	var err error
	if l.held && now.Before(l.until) {
		lease, err = Renew(l.name, l.lease.Token, l.ttl)
	} else {
		lease, err = Campaign(l.name, l.ttl)
	}
	if err != nil {
		l.held = false
		if lease.Name != "" {
			l.lease = lease
		}
		return l.lease, false
	}
	l.lease, l.held = lease, true
	valid := time.Duration(lease.ValidMillis) * time.Millisecond
	l.until, l.renew = now.Add(valid), now.Add(valid/3)
	return lease, true
}

// Leading reports whether the last Tick won the lease and its local deadline has not passed.
func (l *Leader) Leading() bool { return l.held && l.now().Before(l.until) }

// Lease returns the last lease seen (held by this module or not).
func (l *Leader) Lease() Lease { return l.lease }

// Resign gives the lease up if held (for a stop hook).
func (l *Leader) Resign() error {
	if !l.held {
		return nil
	}
	l.held = false
	_, err := Resign(l.name, l.lease.Token)
	return err
}
