package queuestate

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/cluster/queue"
)

// TestMachineApplyBatch: a replica applying the log in batches (ApplyBatch, one transaction per
// batch) answers every command as the leader applying them one by one did and ends in the same
// state, whatever the batch sizes; batches whose commands all succeed share one commit, and
// a batch with a failing command (lease lost, refused output, an expired lease's retry) is
// rolled back and applied one by one. With group commit (SetGroupCommit) the transaction also
// spans batches: a failing command rolls back the commands of earlier batches with it (they
// are applied again), a failed commit applies them again one by one, and readers see every
// command applied before them (the replica is read between batches here, at random).
func TestMachineApplyBatch(t *testing.T) {
	for _, tt := range []struct {
		seed     uint64
		maxBatch int
		// failEvery fails every failEvery-th shared commit (an I/O error, say), 0 none: the
		// commands of a batch whose commit failed are applied one by one.
		failEvery int
		// group is the replica's group commit (most commands per commit), 0 none.
		group int
	}{{1, 2, 0, 0}, {2, 4, 0, 0}, {3, 8, 0, 0}, {4, 32, 0, 0}, {5, 8, 3, 0}, {6, 8, 1, 0},
		{7, 1, 0, 16}, {8, 4, 0, 16}, {9, 8, 0, 64}, {10, 4, 3, 16}, {11, 8, 1, 8}, {12, 2, 0, 1}} {
		t.Run(fmt.Sprintf("seed %d, batches up to %d, commit fails every %d, group %d", tt.seed, tt.maxBatch, tt.failEvery, tt.group), func(t *testing.T) {
			if tt.failEvery > 0 {
				n := 0
				beforeSharedCommit = func() error {
					if n++; n%tt.failEvery == 0 {
						return errors.New("injected commit failure")
					}
					return nil
				}
				defer func() { beforeSharedCommit = nil }()
			}
			leader := newMachine(t)
			s := newScript(t, leader, tt.seed)
			s.run(600)
			follower := newMachine(t)
			follower.SetGroupCommit(tt.group, time.Hour) // committed by readers and by size only
			ref, refAt := newMachine(t), 0               // the log applied one by one, as far as read
			rng := rand.New(rand.NewPCG(tt.seed, 11))
			start := commits(t, follower)
			batches := 0
			for i := 0; i < len(s.log); {
				n := min(1+rng.IntN(tt.maxBatch), len(s.log)-i)
				got := follower.ApplyBatch(s.log[i : i+n])
				if len(got) != n {
					t.Fatalf("ApplyBatch of %d commands gave %d answers", n, len(got))
				}
				for k := range got {
					if !bytes.Equal(got[k], s.resps[i+k]) {
						t.Fatalf("command %d %s in a batch of %d: response %s; one by one %s", i+k, s.log[i+k], n, got[k], s.resps[i+k])
					}
				}
				i += n
				batches++
				if tt.group > 0 && rng.IntN(8) == 0 {
					// A reader between batches sees every command applied so far.
					for ; refAt < i; refAt++ {
						ref.Apply(s.log[refAt])
					}
					if want, got := dump(t, ref), dump(t, follower); got != want {
						t.Fatalf("read after %d commands: %s", i, diffDumps(want, got))
					}
				}
			}
			if want, got := dump(t, leader), dump(t, follower); got != want {
				t.Fatalf("batched replica differs: %s", diffDumps(want, got))
			}
			if got, want := follower.Applied(), uint64(len(s.log)); got != want {
				t.Fatalf("Applied() = %d, want %d", got, want)
			}
			// Batches share commits: a batch commits once, or, with a failing command, once
			// before it and once after (the script fails often: lost leases, retries of tasks
			// that are not dead), so well under the leader's one (or more) per command.
			n, one := commits(t, follower)-start, commits(t, leader)
			if tt.failEvery == 0 && n > one*4/5 {
				t.Fatalf("%d commits for %d commands in %d batches; one by one %d", n, len(s.log), batches, one)
			}
			t.Logf("%d commands in %d batches: %d commits (one by one: %d)", len(s.log), batches, n, one)
		})
	}
}

// TestMachineApplyBatchContent: the content a batched completion carries reaches OnContent
// once, after the transaction that applied it committed, in log order; never for a command of
// a rolled-back transaction (a batch with a failing command) or for a failed completion. With
// group commit, not before a reader has the open transaction committed.
func TestMachineApplyBatchContent(t *testing.T) {
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	q0 := StageQueue("p", 0)
	for _, tt := range []struct {
		name string
		fail int // the completion (0..2) whose lease is lost, -1 for none
		want []string
	}{
		{"all accepted", -1, []string{"out/0", "out/1", "out/2"}},
		{"the first one's lease lost", 0, []string{"out/1", "out/2"}},
		{"the second one's lease lost", 1, []string{"out/0", "out/2"}},
		{"the last one's lease lost", 2, []string{"out/0", "out/1"}},
	} {
		for _, group := range []int{0, 16} {
			t.Run(fmt.Sprintf("%s, group %d", tt.name, group), func(t *testing.T) {
				m := newMachine(t)
				m.SetGroupCommit(group, time.Hour)
				var calls []string
				m.SetOnContent(func(sha string, content []byte) {
					if f := fileOf(string(content)); f.SHA256 != sha {
						t.Errorf("OnContent(%s, %q): not its hash", sha, content)
					}
					calls = append(calls, string(content))
				})
				do(t, m, Command{Op: OpDefine, At: at(0), Pipeline: &queue.Pipeline{Name: "p", Stages: []queue.StageDef{{Name: "s"}}}}, nil)
				do(t, m, Command{Op: OpSubmit, At: at(time.Second), Request: "r", Name: "p", Inputs: filesOf("a", "b", "c")}, nil)
				var batch [][]byte
				for i := range 3 {
					l := do(t, m, Command{Op: OpLease, At: at(2 * time.Second), Name: q0, Worker: fmt.Sprint("w", i)}, nil).Lease
					out := fileOf(fmt.Sprint("out/", i))
					if i == tt.fail { // completed with another output first: this completion fails
						do(t, m, Command{Op: OpComplete, At: at(2 * time.Second), Lease: l, Output: ptr(fileOf("early"))}, nil)
					}
					batch = append(batch, encodeCmd(t, Command{Op: OpComplete, At: at(3 * time.Second), Lease: l, Output: &out, Content: []byte(out.Name)}))
				}
				resps := m.ApplyBatch(batch)
				for i, r := range resps {
					code := decodeResp(t, r).Code
					if want := map[bool]string{true: "lease_lost", false: ""}[i == tt.fail]; code != want {
						t.Errorf("completion %d: code %q, want %q", i, code, want)
					}
				}
				if group > 0 {
					// Only what a transaction committed so far (the commands before a failing
					// one are applied again and committed at once): a prefix of the whole.
					if len(calls) > len(tt.want) || fmt.Sprint(calls) != fmt.Sprint(tt.want[:len(calls)]) {
						t.Fatalf("OnContent before the commit got %v, want a prefix of %v", calls, tt.want)
					}
					if tt.fail != len(batch)-1 && len(calls) == len(tt.want) { // the last one is in the open one
						t.Fatalf("OnContent got all of %v before the open transaction committed", calls)
					}
					read(t, m, func(*Queue) error { return nil })
				}
				if fmt.Sprint(calls) != fmt.Sprint(tt.want) {
					t.Fatalf("OnContent got %v, want %v", calls, tt.want)
				}
			})
		}
	}
}

// TestMachineApplyResponses: the answers ApplyResponses gives (the proposer's node takes them
// without an encoding) are exactly what the leader's Apply encoded, command by command, for a
// replica fed the same log in batches, and the replica ends in the same state.
func TestMachineApplyResponses(t *testing.T) {
	leader := newMachine(t)
	s := newScript(t, leader, 7)
	s.run(400)
	replica := newMachine(t)
	for i := 0; i < len(s.log); i += 3 {
		batch := s.log[i:min(i+3, len(s.log))]
		rs := replica.ApplyResponses(batch)
		if len(rs) != len(batch) {
			t.Fatalf("ApplyResponses of %d commands gave %d answers", len(batch), len(rs))
		}
		for k := range rs {
			got, err := json.Marshal(rs[k])
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, s.resps[i+k]) {
				t.Fatalf("command %d %s: ApplyResponses answered %s; Apply %s", i+k, s.log[i+k], got, s.resps[i+k])
			}
		}
	}
	if want, got := dump(t, leader), dump(t, replica); got != want {
		t.Fatalf("replica differs: %s", diffDumps(want, got))
	}
}

// TestMachineGroupCommit: with group commit the open transaction is committed without any
// reader by the flush timer; a snapshot taken while it is open holds every command applied
// (restored elsewhere, it reads as the leader's state); Close commits it (handing over its
// content) and does not wait on it.
func TestMachineGroupCommit(t *testing.T) {
	leader := newMachine(t)
	s := newScript(t, leader, 3)
	s.run(300)
	want := dump(t, leader)

	t.Run("the flush timer commits", func(t *testing.T) {
		m := newMachine(t)
		m.SetGroupCommit(1<<20, time.Millisecond)
		start := commits(t, m)
		replay(t, m, s.log, s.resps)
		deadline := time.Now().Add(30 * time.Second)
		for commits(t, m) == start {
			if time.Now().After(deadline) {
				t.Fatal("nothing committed 30 s after the last command without a reader")
			}
			time.Sleep(time.Millisecond)
		}
		if got := dump(t, m); got != want {
			t.Fatalf("replica differs: %s", diffDumps(want, got))
		}
	})
	t.Run("a snapshot holds the open transaction", func(t *testing.T) {
		m := newMachine(t)
		m.SetGroupCommit(1<<20, time.Hour)
		replay(t, m, s.log, s.resps)
		snap := snapshotBytes(t, m)
		restored := newMachine(t)
		if err := restored.Restore(bytes.NewReader(snap)); err != nil {
			t.Fatal(err)
		}
		if got := dump(t, restored); got != want {
			t.Fatalf("restored from a snapshot taken with the transaction open: %s", diffDumps(want, got))
		}
	})
	t.Run("Close commits", func(t *testing.T) {
		m := newMachine(t)
		m.SetGroupCommit(1<<20, time.Hour)
		var delivered int
		m.SetOnContent(func(string, []byte) { delivered++ })
		do(t, m, Command{Op: OpDefine, At: t0, Pipeline: &queue.Pipeline{Name: "p", Stages: []queue.StageDef{{Name: "s"}}}}, nil)
		do(t, m, Command{Op: OpSubmit, At: t0, Request: "r", Name: "p", Inputs: filesOf("a")}, nil)
		l := do(t, m, Command{Op: OpLease, At: t0, Name: StageQueue("p", 0), Worker: "w"}, nil).Lease
		out := fileOf("out")
		do(t, m, Command{Op: OpComplete, At: t0, Lease: l, Output: &out, Content: []byte(out.Name)}, nil)
		if delivered != 0 {
			t.Fatalf("content handed over before its transaction committed")
		}
		if err := m.Close(); err != nil {
			t.Fatal(err)
		}
		if delivered != 1 {
			t.Fatalf("Close handed over %d contents, want 1", delivered)
		}
		if err := m.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
	})
}
