package election

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/wasmpod/wasmpod/cluster/queue"
)

// QueueTag is the first byte of a log entry that belongs to the work queue; lease commands
// are JSON objects and start with '{'.
const QueueTag byte = 'Q'

// snapshotMagic starts a snapshot holding both the leases and the work queue. An older
// snapshot is the bare JSON lease list.
var snapshotMagic = []byte("WPS2")

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

	// appliedAt is when this replica applied the entry at Index, on its own
	// monotonic clock. It is never replicated: each replica measures the
	// lease from its own apply time, which is never earlier than the moment
	// the holder sent the request, so a leader elected later inherits a
	// conservative expiry instead of restarting the full TTL.
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

	queue *queue.Machine // nil: entries tagged for the queue are refused
}

// SetQueue attaches the work queue's state machine. Call before Raft starts.
func (f *FSM) SetQueue(m *queue.Machine) { f.queue = m }

// Queue returns the attached work-queue machine (nil if none).
func (f *FSM) Queue() *queue.Machine { return f.queue }

// NewFSM returns an empty lease table.
func NewFSM() *FSM {
	return &FSM{leases: map[string]*Record{}, change: make(chan struct{}), now: time.Now}
}

// Apply implements raft.FSM.
func (f *FSM) Apply(l *raft.Log) interface{} {
	if l.Type != raft.LogCommand {
		return nil
	}
	if len(l.Data) > 0 && l.Data[0] == QueueTag {
		if f.queue == nil {
			return []byte(`{"code":"other","error":"no work queue on this node"}`)
		}
		return f.queue.Apply(l.Data[1:])
	}
	var c Command
	if err := json.Unmarshal(l.Data, &c); err != nil {
		return Result{}
	}
	return f.apply(l.Index, c)
}

func (f *FSM) apply(index uint64, c Command) Result {
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
		cur.appliedAt = f.now()
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

// Snapshot implements raft.FSM.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	s := &snapshot{leases: f.List()}
	if f.queue != nil {
		var err error
		if s.persistQueue, s.release, err = f.queue.Snapshot(); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Restore implements raft.FSM. Restored leases are timed from now: later
// than any holder's own view, hence safe.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	br := bufio.NewReader(rc)
	head, _ := br.Peek(len(snapshotMagic))
	var recs []Record
	if bytes.Equal(head, snapshotMagic) {
		var hdr [8]byte
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			return fmt.Errorf("snapshot header: %w", err)
		}
		var n [8]byte
		if _, err := io.ReadFull(br, n[:]); err != nil {
			return fmt.Errorf("snapshot lease length: %w", err)
		}
		size := binary.BigEndian.Uint64(n[:])
		if size > 1<<30 {
			return fmt.Errorf("snapshot: lease table of %d bytes", size)
		}
		if err := json.NewDecoder(io.LimitReader(br, int64(size))).Decode(&recs); err != nil {
			return fmt.Errorf("snapshot leases: %w", err)
		}
		hasQueue := hdr[4] == 1
		if hasQueue && f.queue != nil {
			if err := f.queue.Restore(br); err != nil {
				return err
			}
		}
	} else if err := json.NewDecoder(br).Decode(&recs); err != nil {
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

type snapshot struct {
	leases       []Record
	persistQueue func(io.Writer) error
	release      func()
}

// Persist writes: magic "WPS2", a flag byte (1: a queue follows), 3 zero bytes, the lease
// table's JSON length (uint64) and JSON, then the queue's file to the end.
func (s *snapshot) Persist(sink raft.SnapshotSink) error {
	err := s.persist(sink)
	if err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s *snapshot) persist(w io.Writer) error {
	js, err := json.Marshal(s.leases)
	if err != nil {
		return err
	}
	hdr := append([]byte(nil), snapshotMagic...)
	flag := byte(0)
	if s.persistQueue != nil {
		flag = 1
	}
	hdr = append(hdr, flag, 0, 0, 0)
	hdr = binary.BigEndian.AppendUint64(hdr, uint64(len(js)))
	if _, err := w.Write(hdr); err != nil {
		return err
	}
	if _, err := w.Write(js); err != nil {
		return err
	}
	if s.persistQueue != nil {
		if err := s.persistQueue(w); err != nil {
			return errors.Join(errors.New("snapshot: work queue"), err)
		}
	}
	return nil
}

func (s *snapshot) Release() {
	if s.release != nil {
		s.release()
	}
}
