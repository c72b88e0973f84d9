package replog

import (
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// TimedMachine is a Machine that also wants, with each entry it applies, the time this
// replica first stored the entry in its log, on its own monotonic clock. The time is zero
// when the replica does not know it (an entry read back from disk after a restart, or stored
// too long ago to be remembered); a machine then times the entry from its apply, which is
// later and so the conservative choice.
//
// Why a machine wants it: an entry is stored by a replica only after the client that asked for
// it sent its request, so the store time is a safe lower bound for "since when the client
// counts" that is known before the entry commits. A follower learns that an entry committed
// only with the leader's next message; when the leader dies in between, the follower applies it
// after the next election — up to a whole election later than it stored it. Leases timed from
// the apply would then outlive their holder by that election (issue: failover over 3 s).
type TimedMachine interface {
	Machine
	// ApplyStored is Apply with the entry's store time (zero if unknown). It replaces Apply
	// for a machine that implements it; the same rules hold (deterministic, one at a time).
	ApplyStored(index uint64, body []byte, stored time.Time) any
}

// receiptSlots is how many recent entries' store times are remembered: an entry is normally
// applied within a few commits of its store, and a forgotten time only makes a lease
// conservative. 4,096 slots are 128 KiB.
const receiptSlots = 4096

// receipts remembers when this replica stored each recent log entry. Safe for concurrent use:
// Raft stores from its own goroutines and applies from the FSM goroutine.
type receipts struct {
	mu   sync.Mutex
	ring [receiptSlots]receipt
}

type receipt struct {
	index uint64
	at    time.Time
}

// note records that logs were stored at at. A re-stored index (a
// follower replacing a conflicting entry) takes the later time.
func (r *receipts) note(logs []*raft.Log, at time.Time) {
	r.mu.Lock()
	for _, l := range logs {
		r.ring[l.Index%receiptSlots] = receipt{index: l.Index, at: at}
	}
	r.mu.Unlock()
}

// stored returns the store time of the entry at index, or zero if it is not remembered (or r
// is nil).
func (r *receipts) stored(index uint64) time.Time {
	if r == nil {
		return time.Time{}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if e := r.ring[index%receiptSlots]; e.index == index {
		return e.at
	}
	return time.Time{}
}

// receiptStore is a raft.LogStore that notes the store time of every entry it keeps. The time
// is read before the write (it is still after the entry's request was sent, which is all a
// machine relies on) and noted only when the write succeeded.
type receiptStore struct {
	raft.LogStore
	r *receipts
}

func (s receiptStore) StoreLog(l *raft.Log) error {
	return s.StoreLogs([]*raft.Log{l})
}

func (s receiptStore) StoreLogs(logs []*raft.Log) error {
	at := time.Now()
	if err := s.LogStore.StoreLogs(logs); err != nil {
		return err
	}
	s.r.note(logs, at)
	return nil
}

// IsMonotonic passes on whether the store below refuses gaps (raft-wal does): raft then
// empties the log when it installs a snapshot instead of leaving a gap before the next entry.
func (s receiptStore) IsMonotonic() bool {
	m, ok := s.LogStore.(raft.MonotonicLogStore)
	return ok && m.IsMonotonic()
}
