package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/cluster/internal/queuestate"
	"github.com/wasmpod/wasmpod/cluster/internal/replog"
	"github.com/wasmpod/wasmpod/cluster/queue"
)

// A member cannot complete, fail or keep alive a task leased to another node's worker by
// forwarding that lease's id and task under its own worker's name (authorizeForward passes it:
// the worker it names is the sender's), and the owner's own commands then work. Two ways, one
// case each: with every voter of this release the replicated state refuses it as a lost lease
// (queuestate.Command.CheckWorker); with a voter of an earlier release, which would apply it,
// the leader refuses it before it reaches the log (leaseHeldBy).
func TestForgedLeaseRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		ops  int // what follower c advertises
	}{{"checked by every replica", queueOps}, {"checked by the leader", opsContent}} {
		t.Run(tc.name, func(t *testing.T) { forgedLeaseRefused(t, tc.ops) })
	}
}

func forgedLeaseRefused(t *testing.T, cOps int) {
	leader, fs := threeNodes(t)
	b, c := fs[0], fs[1]
	ctx := t.Context()
	if cOps != queueOps {
		advertiseQueueOps(t, c, cOps)
	}
	eventually(t, "the leader's view of the voters' queue commands", func() error {
		if got := leader.wq.node.votersApply(leader.log, opsWorkerChecked); got != (cOps >= opsWorkerChecked) {
			return fmt.Errorf("every voter applies the worker check: %v", got)
		}
		return nil
	})
	if err := leader.Queue().DefinePipeline(ctx, queue.Pipeline{Name: "forge", MaxAttempts: 3,
		Stages: []queue.StageDef{{Name: "s"}}}); err != nil {
		t.Fatal(err)
	}
	inputs := putFiles(t, leader, map[string]string{"in/1": "one", "in/2": "two"})
	job, err := leader.Queue().Submit(ctx, "forge", inputs, "")
	if err != nil {
		t.Fatal(err)
	}
	// forward sends cmd from n to the leader as n's workers do (over the log's forwarding
	// stream, authenticated by n's certificate).
	forward := func(n *Node, cmd queuestate.Command) (queuestate.Response, error) {
		t.Helper()
		body, err := json.Marshal(fwdRequest{Cmd: cmd})
		if err != nil {
			t.Fatal(err)
		}
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		out, err := n.log.Do(dctx, replog.TagQueue, body)
		if err != nil {
			t.Fatalf("%s from %s: %v", cmd.Op, n.Name(), err)
		}
		var r queuestate.Response
		if err := json.Unmarshal(out, &r); err != nil {
			t.Fatalf("%s from %s: answer %q: %v", cmd.Op, n.Name(), out, err)
		}
		return r, r.Err()
	}
	stage := queuestate.StageQueue("forge", 0)
	cWorker, bWorker := c.Name()+"/forge/0/0", b.Name()+"/forge/0/0"
	var held []queuestate.Lease
	for range 2 {
		var r queuestate.Response
		eventually(t, "lease for c", func() (err error) {
			r, err = forward(c, queuestate.Command{Op: queuestate.OpLease, Name: stage, Worker: cWorker})
			return err
		})
		held = append(held, *r.Lease)
	}
	bOut := putFiles(t, b, map[string]string{"out/forged": "b's output"})[0]
	forge := func(l queuestate.Lease) *queuestate.Lease {
		return &queuestate.Lease{ID: l.ID, TaskID: l.TaskID, Pipeline: l.Pipeline, Worker: bWorker}
	}
	for _, cmd := range []queuestate.Command{
		{Op: queuestate.OpComplete, Lease: forge(held[0]), Output: &bOut},
		{Op: queuestate.OpFail, Lease: forge(held[1]), Error: "failed by b"},
		{Op: queuestate.OpHeartbeat, Lease: forge(held[0])},
		{Op: queuestate.OpCompleteLease, Lease: forge(held[1]), Output: &bOut, Name: stage, Worker: bWorker},
	} {
		r, err := forward(b, cmd)
		if !errors.Is(err, queue.ErrLeaseLost) {
			t.Fatalf("b's forged %s of c's task %d: %v (%+v); want lease lost", cmd.Op, cmd.Lease.TaskID, err, r)
		}
	}
	for _, l := range held {
		ti, err := leader.Queue().Task(l.TaskID)
		if err != nil {
			t.Fatal(err)
		}
		if ti.State != "leased" || ti.Worker != cWorker || len(ti.Errors) != 0 {
			t.Fatalf("c's task after b's forged commands: %+v", ti)
		}
	}

	// c's own commands are applied.
	cOut := putFiles(t, c, map[string]string{"out/1": "c's first", "out/2": "c's second"})
	if _, err := forward(c, queuestate.Command{Op: queuestate.OpHeartbeat, Lease: &held[0]}); err != nil {
		t.Fatalf("c's heartbeat: %v", err)
	}
	for i, l := range held {
		if _, err := forward(c, queuestate.Command{Op: queuestate.OpComplete, Lease: &l, Output: &cOut[i]}); err != nil {
			t.Fatalf("c's completion of task %d: %v", l.TaskID, err)
		}
	}
	j := waitJob(t, leader, job)
	if j.State != queue.JobDone || len(j.Outputs) != 2 {
		t.Fatalf("job %+v; want done with c's two outputs", j)
	}
	for _, o := range j.Outputs {
		if o == bOut {
			t.Fatalf("job outputs %+v include b's forged output", j.Outputs)
		}
	}
}
