package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/cluster/internal/queuestate"
	"github.com/wasmpod/wasmpod/cluster/queue"
)

// advertiseQueueOps makes n advertise queue commands of version ops, as a node of the release
// that had them does (0: as a release before complete_lease, which advertises none).
func advertiseQueueOps(t *testing.T, n *Node, ops int) {
	t.Helper()
	n.metaMu.Lock()
	n.queueOps = ops
	n.setMetaLocked(n.meta)
	n.metaMu.Unlock()
	if err := n.gossip.UpdateMeta(time.Second); err != nil {
		t.Fatal(err)
	}
}

// TestWorkQueueCombinedGate: complete_lease is proposed only while every voter of the Raft
// configuration advertises it, as each node sees the others by gossip, and again once a voter
// of an earlier release is upgraded.
func TestWorkQueueCombinedGate(t *testing.T) {
	a := startNode(t, testConfig("a"))
	b := startNode(t, testConfig("b", a.GossipAddr()))
	eventually(t, "two voters", func() error {
		if v := a.Status().Voters; len(v) != 2 {
			return fmt.Errorf("voters %v", v)
		}
		return nil
	})
	want := func(what string, ok bool) {
		t.Helper()
		eventually(t, what, func() error {
			for _, n := range []*Node{a, b} {
				if got := n.wq.combinedOK(); got != ok {
					return fmt.Errorf("node %s: combined %v, want %v", n.Name(), got, ok)
				}
			}
			return nil
		})
	}
	want("both voters advertise it", true)
	advertiseQueueOps(t, b, 0)
	want("voter b of an earlier release", false)
	advertiseQueueOps(t, b, queueOps)
	want("voter b upgraded", true)
	advertiseQueueOps(t, a, 0)
	want("voter a (this node on one side) of an earlier release", false)
}

// TestWorkQueueCompleteLeaseOnLeader: the leader commits a complete_lease as one command while
// every voter applies it, and as the completion and a lease apart otherwise, with the same
// answer: the completion's outcome, and the next lease whatever that outcome was.
func TestWorkQueueCompleteLeaseOnLeader(t *testing.T) {
	for _, tc := range []struct {
		name  string
		ops   int
		apart bool // the completion and a lease that takes a task are two commands
	}{
		{"every voter applies it", queueOps, false},
		{"a voter of an earlier release", 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := testConfig("solo")
			c.StateDir = t.TempDir()
			n := startNode(t, c)
			advertiseQueueOps(t, n, tc.ops)
			ctx := t.Context()
			eventually(t, "define", func() error {
				return n.Queue().DefinePipeline(ctx, queue.Pipeline{Name: "p", Stages: []queue.StageDef{{Name: "s"}}})
			})
			if _, err := n.Queue().Submit(ctx, "p", putFiles(t, n, map[string]string{"a": "1", "b": "2", "c": "3"}), ""); err != nil {
				t.Fatal(err)
			}
			name, worker := queuestate.StageQueue("p", 0), "solo/p/0/0"
			r, err := n.wq.do(ctx, queuestate.Command{Op: queuestate.OpLease, Name: name, Worker: worker}, 0)
			if err != nil {
				t.Fatal(err)
			}
			first := *r.Lease
			first.Payload = nil
			out := &queue.File{Name: "out", SHA256: fmt.Sprintf("%064x", 1), Size: 1}
			steps := []struct {
				name string
				l    queuestate.Lease
				err  error
				next bool
			}{
				{"completes and leases the next", first, nil, true},
				{"lease lost, the next leased all the same", first, queue.ErrLeaseLost, true},
				{"lease lost, nothing left to lease", first, queue.ErrLeaseLost, false},
			}
			for _, s := range steps {
				before := n.wq.m.Applied()
				cmd := queuestate.Command{Op: queuestate.OpCompleteLease, Lease: &s.l, Output: out, Name: name, Worker: worker}
				r, err := n.wq.do(ctx, cmd, 0)
				if !errors.Is(err, s.err) || err == nil && s.err != nil {
					t.Fatalf("%s: %v, want %v", s.name, err, s.err)
				}
				if (r.Next != nil) != s.next || r.NextErr() != nil {
					t.Fatalf("%s: next lease %+v (%v), want one: %v", s.name, r.Next, r.NextErr(), s.next)
				}
				if r.Next != nil && (r.Next.Worker != worker || r.Next.TaskID == first.TaskID) {
					t.Fatalf("%s: next lease %+v", s.name, r.Next)
				}
				want := uint64(1)
				if tc.apart && s.next {
					want = 2 // a lease that finds nothing ready is not written (see lead)
				}
				if got := n.wq.m.Applied() - before; got != want {
					t.Fatalf("%s: %d commands applied, want %d", s.name, got, want)
				}
			}
		})
	}
}

// loseOnceRunner runs the bang stage; its first run of input lose reports itself on held and
// waits for release (while the test takes its lease away).
type loseOnceRunner struct {
	lose     string
	held     chan struct{}
	release  chan struct{}
	once     sync.Once
	mu       sync.Mutex
	runs     int
	loseRuns int
}

func (r *loseOnceRunner) RunStage(ctx context.Context, inputs []StageInput, outputName, outDir string) (string, error) {
	r.mu.Lock()
	r.runs++
	if outputName == r.lose {
		r.loseRuns++
	}
	r.mu.Unlock()
	if outputName == r.lose {
		r.once.Do(func() {
			close(r.held)
			<-r.release
		})
	}
	return bang(inputs, outputName, outDir)
}

// TestWorkersCompleteLease: with complete_lease, a pool's completions carry its next leases
// (a task costs one queue command, not a completion and a lease), the leases asked for ahead
// still come, and a completion whose lease was lost meanwhile counts as lost and leaves its
// task to be run again, as before; with a voter of an earlier release the pool sends the
// completion and the lease apart.
func TestWorkersCompleteLease(t *testing.T) {
	const tasks, workers = 24, 2
	for _, tc := range []struct {
		name        string
		ops         int
		maxCommands int // queue commands applied from the submit to the pool's stop
		minCommands int
	}{
		// The submit, a command per task, the taking away of a lease and its task's
		// redelivery, and the leases asked for ahead apart (at most the pool's depth of them,
		// twice for those that found nothing because a completion took the task first).
		{"combined", queueOps, 1 + tasks + 2 + 2*(1+leaseAheadShort)*workers, 0},
		// Every task's lease and completion apart.
		{"apart with a voter of an earlier release", 0, 1 << 30, 1 + 2*tasks + 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := testConfig("solo")
			c.StateDir = t.TempDir()
			c.Queue.LeaseDuration = 10 * time.Minute // no heartbeat commands while the test runs
			c.Queue.Backoff = 10 * time.Millisecond
			n := startNode(t, c)
			advertiseQueueOps(t, n, tc.ops)
			ctx := t.Context()
			eventually(t, "define", func() error {
				return n.Queue().DefinePipeline(ctx, queue.Pipeline{Name: "g", Stages: []queue.StageDef{{Name: "bang"}}})
			})
			contents := map[string]string{}
			for i := range tasks {
				contents[fmt.Sprintf("f%02d", i)] = fmt.Sprintf("file %d", i)
			}
			files := putFiles(t, n, contents)
			before := n.wq.m.Applied()
			id, err := n.Queue().Submit(ctx, "g", files, "")
			if err != nil {
				t.Fatal(err)
			}
			r := &loseOnceRunner{lose: "f03", held: make(chan struct{}), release: make(chan struct{})}
			w, err := n.Queue().StartWorkers(WorkerConfig{Pipeline: "g", Stage: 0, Concurrency: workers, Timeout: time.Minute, Runner: r})
			if err != nil {
				t.Fatal(err)
			}
			// Take the held run's lease away (as a leader whose lease ran out would hand the
			// task to another worker): its completion finds the lease lost.
			<-r.held
			var lost queuestate.Lease
			if err := n.wq.read(func(q *queuestate.Queue) error {
				for tid := queue.TaskID(1); tid <= tasks; tid++ {
					task, err := q.Get(tid)
					if err != nil {
						return err
					}
					var st queuestate.StageTask
					if err := json.Unmarshal(task.Payload, &st); err != nil {
						return err
					}
					if st.Inputs[0].Name == r.lose {
						lost = queuestate.Lease{ID: task.LeaseID, TaskID: task.ID, Pipeline: task.Pipeline, Worker: task.Worker}
						return nil
					}
				}
				return errors.New("no task of the held run")
			}); err != nil {
				t.Fatal(err)
			}
			if _, err := n.wq.do(ctx, queuestate.Command{Op: queuestate.OpFail, Lease: &lost, Error: "taken away"}, 0); err != nil {
				t.Fatal(err)
			}
			close(r.release)

			j := waitJob(t, n, id)
			if err := w.Stop(ctx); err != nil {
				t.Fatal(err)
			}
			commands := int(n.wq.m.Applied() - before)
			if j.State != queue.JobDone || len(j.Outputs) != tasks {
				t.Fatalf("job %+v", j)
			}
			for _, o := range j.Outputs {
				if got, want := readBlob(t, n, o.SHA256), contents[o.Name]+"!"; got != want {
					t.Fatalf("output %s = %q, want %q", o.Name, got, want)
				}
			}
			ws := w.stats()
			r.mu.Lock()
			defer r.mu.Unlock()
			if ws.Completed != tasks || ws.LeaseLost != 1 || ws.Failed != 0 || r.loseRuns != 2 || r.runs != tasks+1 {
				t.Fatalf("worker stats %+v, %d runs (%d of %s); want %d completed, 1 lease lost, %d runs, 2 of %s", ws, r.runs, r.loseRuns, r.lose, tasks, tasks+1, r.lose)
			}
			if commands > tc.maxCommands || commands < tc.minCommands {
				t.Fatalf("%d queue commands for %d tasks, want %d to %d", commands, tasks, tc.minCommands, tc.maxCommands)
			}
			t.Logf("%d queue commands for %d tasks", commands, tasks)
		})
	}
}
