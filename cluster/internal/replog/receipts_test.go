package replog

import (
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// stamps is a TimedMachine that records, per index, the store time it was given and when it
// applied the entry.
type stamps struct {
	mu  sync.Mutex
	got map[uint64][2]time.Time // index -> {stored, applied}
}

func (s *stamps) Apply(index uint64, body []byte) any {
	panic("a TimedMachine's Apply was called instead of ApplyStored")
}

func (s *stamps) ApplyStored(index uint64, _ []byte, stored time.Time) any {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.got == nil {
		s.got = map[uint64][2]time.Time{}
	}
	s.got[index] = [2]time.Time{stored, time.Now()}
	return nil
}

func (s *stamps) Snapshot() (func(io.Writer) error, func(), error) {
	return func(io.Writer) error { return nil }, nil, nil
}
func (s *stamps) Restore(io.Reader) error { return nil }

func (s *stamps) at(index uint64) ([2]time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.got[index]
	return v, ok
}

// The fsm hands a TimedMachine the time the entry went into the log store, not the apply time;
// an index the ring no longer remembers (overwritten by a later one) gets zero.
func TestReceiptsReachTimedMachine(t *testing.T) {
	rec := &receipts{}
	store := receiptStore{LogStore: raft.NewInmemStore(), r: rec}
	m := &stamps{}
	f := &fsm{kinds: map[byte]*Kind{'S': {Tag: 'S', Name: "stamps", Machine: m}}, stored: rec}
	entry := func(i uint64) *raft.Log {
		return &raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: []byte("S")}
	}

	before := time.Now()
	if err := store.StoreLogs([]*raft.Log{entry(1), entry(2)}); err != nil {
		t.Fatal(err)
	}
	if err := store.StoreLog(entry(3 + receiptSlots)); err != nil { // shares index 3's slot
		t.Fatal(err)
	}
	after := time.Now()
	time.Sleep(20 * time.Millisecond)
	for _, i := range []uint64{1, 2, 3, 3 + receiptSlots} {
		f.Apply(entry(i))
	}
	for _, tc := range []struct {
		index uint64
		known bool
	}{{1, true}, {2, true}, {3, false}, {3 + receiptSlots, true}} {
		v, ok := m.at(tc.index)
		switch {
		case !ok:
			t.Errorf("index %d: not applied", tc.index)
		case !tc.known && !v[0].IsZero():
			t.Errorf("index %d: stored time %v, want zero (never stored)", tc.index, v[0])
		case tc.known && (v[0].Before(before) || v[0].After(after)):
			t.Errorf("index %d: stored time %v outside the store call [%v, %v]", tc.index, v[0], before, after)
		case tc.known && v[1].Sub(v[0]) < 20*time.Millisecond:
			t.Errorf("index %d: stored %v is the apply time %v", tc.index, v[0], v[1])
		}
	}
}

// On a real three-node log every replica learns each entry's store time, which precedes its
// apply and follows the proposal's start (a replica stores an entry only after it was asked for).
func TestReceiptsOnThreeNodes(t *testing.T) {
	ms := []*stamps{{}, {}, {}}
	logs := startLogs(t, func(i int) []Kind {
		return []Kind{{Tag: 'S', Name: "stamps", Machine: ms[i], MaxCommand: 8,
			Lead: func(context.Context, Caller, []byte) ([]byte, error) { return nil, errors.New("not forwarded here") }}}
	})
	var lead *Log
	for _, l := range logs {
		if l.IsLeader() {
			lead = l
		}
	}
	if lead == nil {
		t.Fatal("no leader")
	}
	type prop struct {
		index uint64
		start time.Time
	}
	var props []prop
	for range 5 {
		start := time.Now()
		if _, err := lead.Propose('S', []byte("x"), 5*time.Second); err != nil {
			t.Fatal(err)
		}
		props = append(props, prop{lead.raft.LastIndex(), start})
	}
	for _, p := range props {
		for i, m := range ms {
			var v [2]time.Time
			ok := false
			for end := time.Now().Add(5 * time.Second); !ok && time.Now().Before(end); {
				if v, ok = m.at(p.index); !ok {
					time.Sleep(10 * time.Millisecond)
				}
			}
			switch {
			case !ok:
				t.Errorf("n%d never applied index %d", i, p.index)
			case v[0].IsZero():
				t.Errorf("n%d: index %d applied with no store time", i, p.index)
			case v[0].Before(p.start) || v[0].After(v[1]):
				t.Errorf("n%d: index %d stored at %v: not within [proposal %v, apply %v]", i, p.index, v[0], p.start, v[1])
			}
		}
	}
}
