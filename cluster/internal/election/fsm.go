package election

import (
	"encoding/json"
	"io"
	"sort"
	"sync"
	"time"
)

// Op is a replicated lease operation.
type Op string

const (
	OpAcquire Op = "acquire" // grant if the lease is still at PrevIndex
	OpRenew   Op = "renew"   // extend if the holder still has Token
	OpRelease Op = "release" // free if the holder still has Token (resign, or expiry with PrevIndex)
)

// Command is the body of one Raft log entry.
type Command struct {
	Op        Op            `json:"op"`
	Name      string        `json:"name"`
	Node      string        `json:"node,omitempty"`
	Session   string        `json:"session,omitempty"`
	TTL       time.Duration `json:"ttl,omitempty"`
	Token     uint64        `json:"token,omitempty"`
	PrevIndex uint64        `json:"prev_index,omitempty"`
	Expire    bool          `json:"expire,omitempty"` // release by the leader's reaper
}

// Record is the replicated state of one named lease.
type Record struct {
	Name    string        `json:"name"`
	Node    string        `json:"node"`    // "" when free
	Session string        `json:"session"` // holder's session (pod/module), "" when free
	Token   uint64        `json:"token"`   // log index of the grant; kept after release
	TTL     time.Duration `json:"ttl"`
	Index   uint64        `json:"index"` // log index of the last change (grant, renew, release)

	// appliedAt is when this replica first stored the entry at Index in its
	// log (or, when it does not know, applied it), on its own monotonic
	// clock. It is never replicated: each replica measures the lease from
	// its own store time, which is never earlier than the moment the holder
	// sent the request, so a leader elected later inherits a conservative
	// expiry instead of restarting the full TTL. The store time, not the
	// apply time: a follower applies an entry only when it learns that it
	// committed, and if the leader dies before telling it, that is after the
	// next election, which would add the election to the failover.
	appliedAt time.Time
}

// Held reports whether someone holds the lease (expired or not).
func (r Record) Held() bool { return r.Node != "" }

// Result is what Apply returns to the proposer.
type Result struct {
	OK     bool
	Record Record
}

// FSM holds named leases. Apply is deterministic; only appliedAt, which
// never influences a decision inside Apply, depends on the local clock.
type FSM struct {
	mu     sync.Mutex
	leases map[string]*Record
	change chan struct{} // closed and replaced on every change
	now    func() time.Time
}

// NewFSM returns an empty lease table.
func NewFSM() *FSM {
	return &FSM{leases: map[string]*Record{}, change: make(chan struct{}), now: time.Now}
}

// Apply implements replog.Machine: body is a Command's JSON without its first byte ('{', the
// kind's tag).
func (f *FSM) Apply(index uint64, body []byte) any {
	return f.ApplyStored(index, body, time.Time{})
}

// ApplyStored implements replog.TimedMachine: Apply, timing the entry from stored (when this
// replica stored it; zero: unknown, use the apply time).
func (f *FSM) ApplyStored(index uint64, body []byte, stored time.Time) any {
	var c Command
	if err := json.Unmarshal(append([]byte{'{'}, body...), &c); err != nil {
		return Result{}
	}
	return f.apply(index, c, stored)
}

func (f *FSM) apply(index uint64, c Command, stored time.Time) Result {
	f.mu.Lock()
	defer f.mu.Unlock()
	cur := f.leases[c.Name]
	var res Result
	switch c.Op {
	case OpAcquire:
		var curIndex uint64
		if cur != nil {
			curIndex = cur.Index
		}
		if curIndex != c.PrevIndex {
			break
		}
		cur = &Record{Name: c.Name, Node: c.Node, Session: c.Session, Token: index, TTL: c.TTL, Index: index}
		f.leases[c.Name] = cur
		res.OK = true
	case OpRenew:
		if cur == nil || !cur.Held() || cur.Token != c.Token {
			break
		}
		cur.Index = index
		if c.TTL > 0 {
			cur.TTL = c.TTL
		}
		res.OK = true
	case OpRelease:
		if cur == nil || !cur.Held() || cur.Token != c.Token {
			break
		}
		if c.Expire && cur.Index != c.PrevIndex { // renewed since the reaper looked
			break
		}
		cur.Node, cur.Session, cur.Index = "", "", index
		res.OK = true
	}
	if res.OK {
		cur.appliedAt = stored
		if now := f.now(); stored.IsZero() || stored.After(now) {
			cur.appliedAt = now
		}
		close(f.change)
		f.change = make(chan struct{})
	}
	if cur != nil {
		res.Record = *cur
	}
	return res
}

// Get returns the local replica's record and a channel closed at the next change.
func (f *FSM) Get(name string) (Record, bool, <-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.leases[name]
	if !ok {
		return Record{Name: name}, false, f.change
	}
	return *r, true, f.change
}

// AppliedAt exposes the local apply time of a record (zero if unknown).
func (r Record) AppliedAt() time.Time { return r.appliedAt }

// List returns all records sorted by name.
func (f *FSM) List() []Record {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]Record, 0, len(f.leases))
	for _, r := range f.leases {
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Snapshot implements replog.Machine: the lease table as a JSON list (the format of every
// release).
func (f *FSM) Snapshot() (func(io.Writer) error, func(), error) {
	recs := f.List()
	return func(w io.Writer) error { return json.NewEncoder(w).Encode(recs) }, nil, nil
}

// Restore implements replog.Machine. Restored leases are timed from now: later than any
// holder's own view, hence safe. An empty stream is an empty table.
func (f *FSM) Restore(r io.Reader) error {
	var recs []Record
	if err := json.NewDecoder(r).Decode(&recs); err != nil && err != io.EOF {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.leases = map[string]*Record{}
	now := f.now()
	for i := range recs {
		r := recs[i]
		r.appliedAt = now
		f.leases[r.Name] = &r
	}
	close(f.change)
	f.change = make(chan struct{})
	return nil
}
