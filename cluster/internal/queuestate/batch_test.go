package queuestate

import (
	"bytes"
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
// rolled back and applied one by one.
func TestMachineApplyBatch(t *testing.T) {
	for _, tt := range []struct {
		seed     uint64
		maxBatch int
		// failEvery fails every failEvery-th shared commit (an I/O error, say), 0 none: the
		// commands of a batch whose commit failed are applied one by one.
		failEvery int
	}{{1, 2, 0}, {2, 4, 0}, {3, 8, 0}, {4, 32, 0}, {5, 8, 3}, {6, 8, 1}} {
		t.Run(fmt.Sprintf("seed %d, batches up to %d, commit fails every %d", tt.seed, tt.maxBatch, tt.failEvery), func(t *testing.T) {
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
// a rolled-back transaction (a batch with a failing command) or for a failed completion.
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
		t.Run(tt.name, func(t *testing.T) {
			m := newMachine(t)
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
			if fmt.Sprint(calls) != fmt.Sprint(tt.want) {
				t.Fatalf("OnContent got %v, want %v", calls, tt.want)
			}
		})
	}
}
