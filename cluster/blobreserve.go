package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
	"time"

	"github.com/wasmpod/wasmpod/cluster/internal/blobs"
	"github.com/wasmpod/wasmpod/cluster/internal/replog"
)

// Blob reservations: a node pushes a file to another node only after the replicated log has
// committed a reservation of it (its sha256, size and the pushing node, until an expiry), and
// the receiving node checks its replica before it reads a byte of content. A member therefore
// cannot fill another node's disk with files no command refers to; the per-peer quota
// (blobQuota) stays as a second bound on what a member may have reserved and pushed.

// tagReserve is the reservation kind's tag in the replicated log.
const tagReserve byte = 'B'

const (
	// reserveTTL is how long a reservation admits pushes: a push follows its reservation at
	// once, so this only needs to outlast a slow transfer.
	reserveTTL = 10 * time.Minute
	// maxReservations bounds the live reservations of one node (a member cannot grow the
	// replicated state without bound).
	maxReservations = 4096
	// reserveWait is how long a receiving node waits for its replica to apply a reservation the
	// leader has committed (a follower learns the commit with the next heartbeat).
	reserveWait = 3 * time.Second
)

// errNotReserved refuses a push of a file no reservation of the pushing node covers.
var errNotReserved = errors.New("no replicated reservation of this file for the pushing node")

type reservation struct {
	SHA   string    `json:"sha"`
	Size  int64     `json:"size"`
	Owner string    `json:"owner"`
	Until time.Time `json:"until"` // on the leader's clock
}

// reserveCmd is the kind's forwarded command ({sha, size}) and, stamped by the leader with
// the owner and times, its log entry.
type reserveCmd struct {
	SHA   string        `json:"sha"`
	Size  int64         `json:"size"`
	Owner string        `json:"owner,omitempty"`
	At    time.Time     `json:"at,omitempty"`
	TTL   time.Duration `json:"ttl,omitempty"`
}

// reservations is the replicated table of reservations. Apply, Snapshot and Restore run on
// the log's goroutine; covered and the leader's Lead run on others: mu guards the table.
type reservations struct {
	log      func() *replog.Log
	maxBytes int64

	mu      sync.Mutex
	byKey   map[string]reservation // sha + "/" + owner
	changed chan struct{}          // closed and replaced on every change
}

func newReservations(log func() *replog.Log, maxBytes int64) *reservations {
	return &reservations{log: log, maxBytes: maxBytes, byKey: map[string]reservation{}, changed: make(chan struct{})}
}

func (r *reservations) kind() replog.Kind {
	return replog.Kind{Tag: tagReserve, Name: "blob reservation", Machine: r, Lead: r.lead, MaxCommand: 1024, MaxAnswer: 1024}
}

// Apply records a reservation; entries past their expiry (at the entry's leader time) go.
func (r *reservations) Apply(_ uint64, body []byte) any {
	var c reserveCmd
	if err := json.Unmarshal(body, &c); err != nil {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for k, v := range r.byKey {
		if !v.Until.After(c.At) {
			delete(r.byKey, k)
		} else if v.Owner == c.Owner {
			n++
		}
	}
	key := c.SHA + "/" + c.Owner
	if _, ok := r.byKey[key]; !ok && n >= maxReservations {
		return false
	}
	r.byKey[key] = reservation{SHA: c.SHA, Size: c.Size, Owner: c.Owner, Until: c.At.Add(c.TTL)}
	close(r.changed)
	r.changed = make(chan struct{})
	return true
}

func (r *reservations) Snapshot() (func(io.Writer) error, func(), error) {
	r.mu.Lock()
	list := make([]reservation, 0, len(r.byKey))
	for _, v := range r.byKey {
		list = append(list, v)
	}
	r.mu.Unlock()
	sort.Slice(list, func(i, j int) bool {
		if list[i].SHA != list[j].SHA {
			return list[i].SHA < list[j].SHA
		}
		return list[i].Owner < list[j].Owner
	})
	return func(w io.Writer) error { return json.NewEncoder(w).Encode(list) }, nil, nil
}

// Restore replaces the table; an empty stream (a snapshot of an older release) empties it.
func (r *reservations) Restore(rd io.Reader) error {
	var list []reservation
	if err := json.NewDecoder(rd).Decode(&list); err != nil && err != io.EOF {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.byKey = map[string]reservation{}
	for _, v := range list {
		r.byKey[v.SHA+"/"+v.Owner] = v
	}
	close(r.changed)
	r.changed = make(chan struct{})
	return nil
}

type reserveAnswer struct {
	Error string `json:"error,omitempty"`
}

// lead commits a reservation for the node that asked (from its certificate).
func (r *reservations) lead(ctx context.Context, from replog.Caller, b []byte) ([]byte, error) {
	var c reserveCmd
	if err := json.Unmarshal(b, &c); err != nil {
		return json.Marshal(reserveAnswer{Error: "undecodable reservation: " + err.Error()})
	}
	if err := blobs.ValidSHA(c.SHA); err != nil {
		return json.Marshal(reserveAnswer{Error: err.Error()})
	}
	if c.Size < 0 || c.Size > r.maxBytes {
		return json.Marshal(reserveAnswer{Error: fmt.Sprintf("reservation of %d bytes (limit %d)", c.Size, r.maxBytes)})
	}
	if from.Secure && from.Node == "" {
		return json.Marshal(reserveAnswer{Error: "reservation from an unauthenticated node"})
	}
	c.Owner, c.At, c.TTL = from.Node, time.Now(), reserveTTL
	entry, _ := json.Marshal(c)
	timeout := 5 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = max(min(timeout, time.Until(dl)), 100*time.Millisecond)
	}
	log := r.log()
	if err := log.CaughtUp(timeout); err != nil {
		return nil, err
	}
	res, err := log.Propose(tagReserve, entry, timeout)
	if err != nil {
		return nil, err
	}
	if ok, _ := res.(bool); !ok {
		return json.Marshal(reserveAnswer{Error: fmt.Sprintf("node %s has %d live reservations", from.Node, maxReservations)})
	}
	return json.Marshal(reserveAnswer{})
}

// covered waits up to reserveWait for this replica to hold a live reservation of sha (size
// bytes) by owner.
func (r *reservations) covered(owner, sha string, size int64) bool {
	deadline := time.NewTimer(reserveWait)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		v, ok := r.byKey[sha+"/"+owner]
		ch := r.changed
		r.mu.Unlock()
		if ok && v.Size == size && time.Now().Before(v.Until) {
			return true
		}
		select {
		case <-ch:
		case <-deadline.C:
			return false
		}
	}
}

// reserve commits a reservation of a local blob before it is pushed. In a cluster that still
// has voters of a release without reservations it does nothing (they neither make nor check
// them).
func (w *workQueue) reserve(ctx context.Context, sha string, size int64) error {
	log := w.log.Load()
	if log == nil {
		return ErrNoQuorum
	}
	b, _ := json.Marshal(reserveCmd{SHA: sha, Size: size})
	out, err := log.Do(ctx, tagReserve, b)
	switch {
	case errors.Is(err, replog.ErrMixedVersion):
		return nil
	case errors.Is(err, replog.ErrNoLeader):
		return fmt.Errorf("blob %s: reservation: %w", sha, ErrNoQuorum)
	case err != nil:
		return fmt.Errorf("blob %s: reservation: %w", sha, err)
	}
	var a reserveAnswer
	if err := json.Unmarshal(out, &a); err != nil {
		return fmt.Errorf("blob %s: reservation: undecodable answer: %v", sha, err)
	}
	if a.Error != "" {
		return fmt.Errorf("blob %s: reservation refused: %s", sha, a.Error)
	}
	return nil
}

// admitPush decides whether peer may push sha (size bytes) to this node: it must hold a
// reservation (once every member makes them) and stay within its quota.
func (w *workQueue) admitPush(peer, sha string, size int64) error {
	if w.node.enforceReservations() && !w.reservations.covered(peer, sha, size) {
		return fmt.Errorf("blob %s from %s: %w", sha, peerLabel(peer), errNotReserved)
	}
	return w.quota.admit(peer, sha, size)
}
