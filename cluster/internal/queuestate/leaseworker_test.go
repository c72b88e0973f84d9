package queuestate

import (
	"errors"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/cluster/queue"
)

// TestMachineLeaseWorkerChecked: a command that names a lease acts on it only when it names the
// worker the lease was granted to. Lease ids come from one counter that every replica holds, so
// a member knows the id and task of another node's lease; without the check it could complete
// (with its own output), fail or keep alive a task another node is running. A command naming
// the right lease and task but another worker is refused as a lost lease and changes nothing,
// on every replica alike; the granted worker's own command is then applied as usual.
func TestMachineLeaseWorkerChecked(t *testing.T) {
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	const (
		owner  = "c/p/0/0"
		forger = "b/p/0/0"
	)
	q0 := StageQueue("p", 0)
	tests := []struct {
		name string
		// cmd is the op under test on lease l (the one granted to owner).
		cmd func(l *Lease) Command
	}{
		{"heartbeat", func(l *Lease) Command { return Command{Op: OpHeartbeat, Lease: l} }},
		{"complete", func(l *Lease) Command {
			return Command{Op: OpComplete, Lease: l, Output: ptr(fileOf("out/" + l.Worker))}
		}},
		{"fail", func(l *Lease) Command { return Command{Op: OpFail, Lease: l, Error: "failed by " + l.Worker} }},
		// The lease part asks the merge stage, which has nothing ready while stage 0 runs: it
		// changes nothing, so only the completion part is under test.
		{"complete_lease", func(l *Lease) Command {
			return Command{Op: OpCompleteLease, Lease: l, Output: ptr(fileOf("out/" + l.Worker)), Name: StageQueue("p", 1), Worker: l.Worker}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := newMachine(t)
			var log, resps [][]byte
			apply := func(c Command, want error) Response {
				t.Helper()
				r := do(t, m, c, want)
				log = append(log, encodeCmd(t, c))
				resps = append(resps, encodeResponse(r))
				return r
			}
			apply(Command{Op: OpDefine, At: at(0), Pipeline: mergePipeline("p")}, nil)
			apply(Command{Op: OpSubmit, At: at(time.Second), Request: "r", Name: "p", Inputs: filesOf("x", "y", "z")}, nil)
			mine := apply(Command{Op: OpLease, At: at(2 * time.Second), Name: q0, Worker: forger}, nil).Lease
			theirs := apply(Command{Op: OpLease, At: at(2 * time.Second), Name: q0, Worker: owner}, nil).Lease

			before := dump(t, m)
			for _, worker := range []string{forger, "", "c/p/0/00", "C/p/0/0"} {
				forged := *theirs
				forged.Worker = worker
				c := tc.cmd(&forged)
				c.At, c.CheckWorker = at(3*time.Second), true
				if r := apply(c, queue.ErrLeaseLost); r.Next != nil || r.NextCode != "" {
					t.Fatalf("worker %q: lease part %+v", worker, r)
				}
				if got := dump(t, m); got != before {
					t.Fatalf("worker %q: a forged %s changed the state at %s", worker, tc.name, diffDumps(before, got))
				}
			}
			var task Task
			read(t, m, func(q *Queue) error { var err error; task, err = q.Get(theirs.TaskID); return err })
			if task.State != StateLeased || task.Worker != owner || task.LeaseID != theirs.ID ||
				!task.LeaseExpires.Equal(theirs.ExpiresAt) || len(task.Result) != 0 || len(task.Errors) != 0 {
				t.Fatalf("owner's task after forged commands: %+v", task)
			}

			// The owner's own command and the forger's own lease are untouched.
			c := tc.cmd(theirs)
			c.At, c.CheckWorker = at(4*time.Second), true
			apply(c, nil)
			c = tc.cmd(mine)
			c.At, c.CheckWorker = at(4*time.Second), true
			apply(c, nil)

			// A replica replaying the log refuses the same commands and reaches the same state.
			follower := newMachine(t)
			replay(t, follower, log, resps)
			if want, got := dump(t, m), dump(t, follower); got != want {
				t.Fatalf("replica differs at %s", diffDumps(want, got))
			}
		})
	}
}

// TestQueueLeaseWorkerChecked: the same check on the queue's own API (Heartbeat, Complete and
// Fail share takeLeased).
func TestQueueLeaseWorkerChecked(t *testing.T) {
	now := t0
	cfg := DefaultConfig()
	cfg.Now = func() time.Time { return now }
	q, err := Open(t.TempDir()+"/q.db", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = q.Close() })
	ctx := t.Context()
	if _, err := q.Enqueue(ctx, "p", []byte("a")); err != nil {
		t.Fatal(err)
	}
	l, err := q.Lease(ctx, "p", "c/w")
	if err != nil {
		t.Fatal(err)
	}
	forged := l
	forged.Worker = "b/w"
	if _, err := q.Heartbeat(forged); !errors.Is(err, queue.ErrLeaseLost) {
		t.Fatalf("forged Heartbeat: %v; want lease lost", err)
	}
	if err := q.Complete(forged, []byte("forged")); !errors.Is(err, queue.ErrLeaseLost) {
		t.Fatalf("forged Complete: %v; want lease lost", err)
	}
	if err := q.Fail(forged, "forged"); !errors.Is(err, queue.ErrLeaseLost) {
		t.Fatalf("forged Fail: %v; want lease lost", err)
	}
	if l, err = q.Heartbeat(l); err != nil {
		t.Fatalf("owner's Heartbeat: %v", err)
	}
	if err := q.Complete(l, []byte("mine")); err != nil {
		t.Fatalf("owner's Complete: %v", err)
	}
	if task, err := q.Get(l.TaskID); err != nil || task.State != StateDone || string(task.Result) != "mine" {
		t.Fatalf("task %+v, %v; want done with the owner's result", task, err)
	}
}

// TestMachineWorkerCheckGated: a command without CheckWorker is applied as releases before the
// check apply it, the worker unchecked, so that replicas of both releases agree on every entry
// of a log that voters of an earlier release still apply (the cluster package sets the flag
// only once every voter advertises it, and refuses forged forwarded commands on the leader).
func TestMachineWorkerCheckGated(t *testing.T) {
	m := newMachine(t)
	do(t, m, Command{Op: OpDefine, At: t0, Pipeline: mergePipeline("p")}, nil)
	do(t, m, Command{Op: OpSubmit, At: t0.Add(time.Second), Request: "r", Name: "p", Inputs: filesOf("x")}, nil)
	l := do(t, m, Command{Op: OpLease, At: t0.Add(2 * time.Second), Name: StageQueue("p", 0), Worker: "c/p/0/0"}, nil).Lease
	forged := *l
	forged.Worker = "b/p/0/0"
	do(t, m, Command{Op: OpHeartbeat, At: t0.Add(3 * time.Second), Lease: &forged, CheckWorker: true}, queue.ErrLeaseLost)
	do(t, m, Command{Op: OpHeartbeat, At: t0.Add(3 * time.Second), Lease: &forged}, nil)
}
