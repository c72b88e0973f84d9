package replog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	raftwal "github.com/hashicorp/raft-wal"
)

// oldState is what a node before the append-only store kept in its raft-boltdb file.
type oldState struct {
	first, last uint64            // entries [first, last]; last 0: none
	ints        map[string]uint64 // stable uint keys present
	keys        map[string]string // stable keys present
}

// entry is the test's entry at index i; every 7th one is large enough that a copy batch ends.
func entry(i uint64) *raft.Log {
	data := []byte(fmt.Sprintf("entry %d", i))
	if i%7 == 0 {
		data = bytes.Repeat([]byte{byte(i)}, 3<<20)
	}
	return &raft.Log{Index: i, Term: 1 + i/10, Type: raft.LogCommand, Data: data, Extensions: []byte{byte(i)},
		AppendedAt: time.Unix(int64(i), 0).UTC()}
}

func writeBolt(t *testing.T, path string, st oldState) {
	t.Helper()
	b, err := raftboltdb.NewBoltStore(path)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for i := st.first; st.last > 0 && i <= st.last; i++ {
		if err := b.StoreLog(entry(i)); err != nil {
			t.Fatal(err)
		}
	}
	for k, v := range st.ints {
		if err := b.SetUint64([]byte(k), v); err != nil {
			t.Fatal(err)
		}
	}
	for k, v := range st.keys {
		if err := b.Set([]byte(k), []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
}

// checkStore compares the opened store with st, entry by entry and key by key.
func checkStore(t *testing.T, w *walStore, st oldState) {
	t.Helper()
	first, _ := w.FirstIndex()
	last, _ := w.LastIndex()
	if st.last == 0 {
		if last != 0 {
			t.Fatalf("store holds [%d, %d], want no entries", first, last)
		}
	} else if first != st.first || last != st.last {
		t.Fatalf("store holds [%d, %d], want [%d, %d]", first, last, st.first, st.last)
	}
	for i := st.first; st.last > 0 && i <= st.last; i++ {
		var got raft.Log
		if err := w.GetLog(i, &got); err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
		want := entry(i)
		if got.Index != want.Index || got.Term != want.Term || got.Type != want.Type || !bytes.Equal(got.Data, want.Data) ||
			!bytes.Equal(got.Extensions, want.Extensions) || !got.AppendedAt.Equal(want.AppendedAt) {
			t.Fatalf("entry %d differs: index %d term %d, %d bytes", i, got.Index, got.Term, len(got.Data))
		}
	}
	for _, k := range stableUintKeys {
		got, _ := w.GetUint64([]byte(k))
		if got != st.ints[k] {
			t.Fatalf("%s = %d, want %d", k, got, st.ints[k])
		}
	}
	for _, k := range stableKeys {
		got, _ := w.Get([]byte(k))
		if string(got) != st.keys[k] {
			t.Fatalf("%s = %q, want %q", k, got, st.keys[k])
		}
	}
}

// TestOpenStore opens a node's Raft state from every state a data dir can be in: new, an old
// node's raft-boltdb file (with or without a vote, empty), a move stopped before or after its
// rename, and an old file that cannot be read (refused with nothing removed).
func TestOpenStore(t *testing.T) {
	voted := oldState{first: 5, last: 40, ints: map[string]uint64{"CurrentTerm": 7, "LastVoteTerm": 7},
		keys: map[string]string{"LastVoteCand": "n2"}}
	cases := []struct {
		name    string
		prepare func(t *testing.T, dir string)
		want    oldState
		wantErr string
	}{
		{name: "new node", prepare: func(*testing.T, string) {}},
		{name: "old store with a vote", prepare: func(t *testing.T, dir string) {
			writeBolt(t, filepath.Join(dir, boltFile), voted)
		}, want: voted},
		{name: "old store that never voted", prepare: func(t *testing.T, dir string) {
			writeBolt(t, filepath.Join(dir, boltFile), oldState{first: 1, last: 3, ints: map[string]uint64{"CurrentTerm": 1}})
		}, want: oldState{first: 1, last: 3, ints: map[string]uint64{"CurrentTerm": 1}}},
		{name: "old store empty", prepare: func(t *testing.T, dir string) {
			writeBolt(t, filepath.Join(dir, boltFile), oldState{})
		}},
		{name: "move stopped before its rename", prepare: func(t *testing.T, dir string) {
			writeBolt(t, filepath.Join(dir, boltFile), voted)
			scratch := filepath.Join(dir, walDir+".migrating")
			if err := os.Mkdir(scratch, 0o700); err != nil {
				t.Fatal(err)
			}
			w, err := openWAL(scratch, hclog.NewNullLogger())
			if err != nil {
				t.Fatal(err)
			}
			if err := w.StoreLogs([]*raft.Log{entry(5), entry(6)}); err != nil {
				t.Fatal(err)
			}
			w.Close()
		}, want: voted},
		{name: "move stopped after its rename", prepare: func(t *testing.T, dir string) {
			moved := oldState{first: 1, last: 3, ints: map[string]uint64{"CurrentTerm": 2}}
			writeBolt(t, filepath.Join(dir, boltFile), moved)
			w, err := openStore(dir, hclog.NewNullLogger())
			if err != nil {
				t.Fatal(err)
			}
			w.Close()
			// The old file back, stale: what a stop between the rename and the removal leaves.
			writeBolt(t, filepath.Join(dir, boltFile), voted)
		}, want: oldState{first: 1, last: 3, ints: map[string]uint64{"CurrentTerm": 2}}},
		{name: "old store unreadable", prepare: func(t *testing.T, dir string) {
			if err := os.WriteFile(filepath.Join(dir, boltFile), bytes.Repeat([]byte("not a bolt file "), 512), 0o600); err != nil {
				t.Fatal(err)
			}
		}, wantErr: boltFile},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			tc.prepare(t, dir)
			w, err := openStore(dir, hclog.NewNullLogger())
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want one naming %s", err, tc.wantErr)
				}
				if _, serr := os.Stat(filepath.Join(dir, boltFile)); serr != nil {
					t.Fatalf("the old file is gone after a refused move: %v", serr)
				}
				if _, serr := os.Stat(filepath.Join(dir, walDir)); !errors.Is(serr, os.ErrNotExist) {
					t.Fatalf("a refused move left %s: %v", walDir, serr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			checkStore(t, w, tc.want)
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			for _, gone := range []string{boltFile, walDir + ".migrating"} {
				if _, err := os.Stat(filepath.Join(dir, gone)); !errors.Is(err, os.ErrNotExist) {
					t.Fatalf("%s still there after open: %v", gone, err)
				}
			}
			// Open again: no move, same state.
			w, err = openStore(dir, hclog.NewNullLogger())
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			checkStore(t, w, tc.want)
		})
	}
}

// TestUpgradedNodeKeepsItsLog runs a node, puts its Raft state back into the raft-boltdb file an
// older node would have left, and starts the node again: it must replay the same entries (the
// machine's total), keep its term, lead its cluster of one and append after them.
func TestUpgradedNodeKeepsItsLog(t *testing.T) {
	dir := t.TempDir()
	start := func(c *counter, bootstrap bool) *Log {
		t.Helper()
		var l *Log
		l, err := Start(Config{NodeID: "n0", BindAddr: "127.0.0.1:0", Bootstrap: bootstrap, DataDir: dir, Timing: fastTiming,
			Kinds: []Kind{c.kind(&l)}})
		if err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(20 * time.Second)
		for !l.IsLeader() {
			if time.Now().After(deadline) {
				t.Fatal("no leader")
			}
			time.Sleep(20 * time.Millisecond)
		}
		return l
	}
	c := &counter{}
	l := start(c, true)
	for _, n := range []string{"1", "2", "3"} {
		if _, err := l.Propose('T', []byte(n), 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}

	// What an older node leaves: the same entries and keys in raft.db, no wal directory.
	w, err := openWAL(filepath.Join(dir, walDir), hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	b, err := raftboltdb.NewBoltStore(filepath.Join(dir, boltFile))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := copyLog(b, w); err != nil {
		t.Fatal(err)
	}
	term, err := w.GetUint64([]byte("CurrentTerm"))
	if err != nil || term == 0 {
		t.Fatalf("term %d, %v", term, err)
	}
	for _, k := range stableUintKeys {
		v, _ := w.GetUint64([]byte(k))
		if err := b.SetUint64([]byte(k), v); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range stableKeys {
		v, _ := w.Get([]byte(k))
		if err := b.Set([]byte(k), v); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	b.Close()
	if err := os.RemoveAll(filepath.Join(dir, walDir)); err != nil {
		t.Fatal(err)
	}

	c = &counter{}
	l = start(c, false)
	t.Cleanup(func() { _ = l.Shutdown(context.Background()) })
	if _, err := l.Propose('T', []byte("4"), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if got := c.get(); got != 10 {
		t.Fatalf("total after the upgrade %d, want 10 (the old log replayed, then 4)", got)
	}
	if got, _ := l.store.GetUint64([]byte("CurrentTerm")); got < term {
		t.Fatalf("term went back from %d to %d", term, got)
	}
	if _, err := os.Stat(filepath.Join(dir, boltFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s still there: %v", boltFile, err)
	}
}

// TestFollowerCatchesUpFromSnapshot: a follower that was down while the others compacted the
// log past its last entry installs the leader's snapshot, then appends the entries after it.
// The append-only store refuses a gap, so this holds only if Raft learns that (IsMonotonic,
// passed on by the receipts wrapper) and empties the follower's log when it installs the
// snapshot. Small segments make the compacted entries leave the leader's tail segment, which
// would otherwise still serve them and spare the follower the snapshot.
func TestFollowerCatchesUpFromSnapshot(t *testing.T) {
	old := segmentSize
	segmentSize = 512
	t.Cleanup(func() { segmentSize = old })
	peers := &peerList{}
	dirs := []string{t.TempDir(), t.TempDir(), t.TempDir()}
	installed := make(chan struct{}, 8)
	start := func(i int, bind string, c *counter) *Log {
		t.Helper()
		var l *Log
		l, err := Start(Config{NodeID: fmt.Sprintf("n%d", i), BindAddr: bind, Bootstrap: i == 0, DataDir: dirs[i],
			Timing: fastTiming, Peers: peers.get, SnapshotThreshold: 4, SnapshotInterval: 50 * time.Millisecond,
			TrailingLogs: 1, LogOutput: lineWatch{"Installed remote snapshot", installed}, Kinds: []Kind{c.kind(&l)}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = l.Shutdown(context.Background()) })
		return l
	}
	counters := []*counter{{}, {}, {}}
	logs := make([]*Log, 3)
	for i := range logs {
		logs[i] = start(i, "127.0.0.1:0", counters[i])
		l := logs[i]
		peers.set(func(p []Peer) []Peer { return append(p, Peer{ID: l.NodeID(), RaftAddr: l.Addr(), Alive: true}) })
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor("a leader with three voters", func() bool {
		for _, l := range logs {
			if st := l.Status(); st.Leader == "" || len(st.Voters) != 3 {
				return false
			}
		}
		return true
	})
	lead, down := -1, -1
	for i, l := range logs {
		if l.IsLeader() {
			lead = i
		} else if down < 0 {
			down = i
		}
	}
	if lead < 0 {
		t.Fatal("no leader")
	}
	propose := func(n int) {
		t.Helper()
		for range n {
			if _, err := logs[lead].Propose('T', []byte("1"), 5*time.Second); err != nil {
				t.Fatal(err)
			}
		}
	}
	propose(3)
	waitFor("the follower's copy", func() bool { return counters[down].get() == 3 })
	last, _ := logs[down].store.LastIndex()
	addr := logs[down].Addr()
	if err := logs[down].Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	propose(40)
	waitFor("the leader to drop the entries after the follower's last", func() bool {
		var e raft.Log
		return errors.Is(logs[lead].store.GetLog(last+1, &e), raftwal.ErrNotFound)
	})
	for len(installed) > 0 {
		<-installed
	}
	counters[down] = &counter{}
	logs[down] = start(down, addr, counters[down])
	waitFor("the restarted follower to catch up", func() bool { return counters[down].get() == 43 })
	// Raft logs the install after the machine's restore, so the line may come a little later.
	select {
	case <-installed:
	case <-time.After(5 * time.Second):
		t.Fatal("the follower caught up without installing the leader's snapshot")
	}
	propose(2)
	waitFor("the follower to append after the snapshot", func() bool { return counters[down].get() == 45 })
}

// lineWatch is a log output that signals c for each write containing s.
type lineWatch struct {
	s string
	c chan struct{}
}

func (w lineWatch) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte(w.s)) {
		select {
		case w.c <- struct{}{}:
		default:
		}
	}
	return len(p), nil
}
