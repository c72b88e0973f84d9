package queuestate

import (
	"errors"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/cluster/queue"
)

func TestPrune(t *testing.T) {
	q, c, _ := newTest(t, nil)
	mustDefine(t, q, queue.Pipeline{Name: "p", MaxAttempts: 1, Stages: []queue.StageDef{{Name: "a"}, {Name: "m", Merge: true}}})

	// Job 1 finishes (one input dead-lettered, so the prune must clear a dead index entry too).
	done := mustSubmit(t, q, "req-1", "p", filesOf("x", "y"))
	l1, st1 := leaseStage(t, q, "p", 0)
	mustComplete(t, q, l1, fileOf(outName("a", st1)))
	l2, _ := leaseStage(t, q, "p", 0)
	if err := q.Fail(l2, "boom"); err != nil {
		t.Fatal(err)
	}
	lm, stm := leaseStage(t, q, "p", 1)
	mustComplete(t, q, lm, fileOf(outName("m", stm)))
	if j := mustJob(t, q, done); j.State != queue.JobPartial {
		t.Fatalf("job 1: %+v", j)
	}
	refs, err := q.BlobRefs()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"x", "y", outName("a", st1), outName("m", stm)} {
		if _, ok := refs[fileOf(name).SHA256]; !ok {
			t.Fatalf("BlobRefs lacks %s", name)
		}
	}

	c.Advance(time.Hour)
	// Job 2 is still running: it stays whatever its age.
	running := mustSubmit(t, q, "req-2", "p", filesOf("z"))
	c.Advance(time.Hour)

	cases := []struct {
		name   string
		cutoff time.Time
		want   PruneResult
	}{
		{"nothing finished before the cutoff", c.Now().Add(-3 * time.Hour), PruneResult{}},
		{"the finished job and its three tasks", c.Now(), PruneResult{Jobs: 1, Tasks: 3}},
		{"again: nothing left to prune", c.Now(), PruneResult{}},
	}
	for _, tc := range cases {
		got, err := q.Prune(tc.cutoff)
		if err != nil || got != tc.want {
			t.Fatalf("%s: Prune = %+v, %v; want %+v", tc.name, got, err, tc.want)
		}
	}
	if _, err := q.Job(done); !errors.Is(err, queue.ErrNotFound) {
		t.Fatalf("pruned job: %v", err)
	}
	if _, err := q.Get(l2.TaskID); !errors.Is(err, queue.ErrNotFound) {
		t.Fatalf("pruned dead task: %v", err)
	}
	if dead, err := q.DeadTasks("p"); err != nil || len(dead) != 0 {
		t.Fatalf("dead letters after prune: %+v %v", dead, err)
	}
	st, err := q.StageStats()
	if err != nil || st[0].Depth != 1 || st[0].Dead != 0 || st[0].Leased != 0 {
		t.Fatalf("stats after prune: %+v %v", st, err)
	}
	if j := mustJob(t, q, running); j.State != queue.JobRunning {
		t.Fatalf("running job: %+v", j)
	}
	refs, _ = q.BlobRefs()
	if _, ok := refs[fileOf("x").SHA256]; ok {
		t.Fatal("a pruned job's input is still referenced")
	}
	if _, ok := refs[fileOf("z").SHA256]; !ok {
		t.Fatal("the running job's input is not referenced")
	}
	// The pruned job's request id is free again: a new submit makes a new job.
	if again := mustSubmit(t, q, "req-1", "p", filesOf("x")); again == done {
		t.Fatalf("request id of a pruned job still maps to it")
	}
	// The running job still flows.
	l, st3 := leaseStage(t, q, "p", 0)
	mustComplete(t, q, l, fileOf(outName("a", st3)))
}
