package queuestate

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/wasmpod/wasmpod/cluster/queue"
)

// TestEncodeJobMatchesMarshal: the stored bytes of a job record are json.Marshal's, whichever
// optional fields are set, also once the fixed head has been encoded and the counters change.
func TestEncodeJobMatchesMarshal(t *testing.T) {
	t0 := time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC)
	base := func() *jobRecord {
		return &jobRecord{ID: 7, Pipeline: queue.Pipeline{Name: "p", Stages: []queue.StageDef{{Name: "a"}, {Name: "m", Merge: true}}},
			Inputs: filesOf("in/a.txt", "in/b/c.gz"), Created: t0,
			Stages:       []queue.StageProgress{{Name: "a", Expected: 2}, {Name: "m", Expected: 1}},
			MergeStarted: []bool{false, false}}
	}
	cases := []struct {
		name string
		edit func(j *jobRecord)
	}{
		{"plain", func(*jobRecord) {}},
		{"finished", func(j *jobRecord) { j.Finished = t0.Add(time.Minute) }},
		{"traced", func(j *jobRecord) { j.Trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" }},
		{"limits", func(j *jobRecord) { j.Pipeline.MaxAttempts, j.Pipeline.Backoff = 3, 2*time.Second }},
		{"html and unicode in names", func(j *jobRecord) {
			j.Inputs = filesOf("in/<a>&b.txt", "in/é\u2028.txt")
			j.Stages[0].Name = "a<b>"
		}},
		{"no inputs, nil merge flags", func(j *jobRecord) { j.Inputs, j.MergeStarted = nil, nil }},
		{"local time zone", func(j *jobRecord) { j.Created = t0.In(time.FixedZone("X", 3600)) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			j := base()
			c.edit(j)
			check := func(step string) {
				t.Helper()
				want, err := json.Marshal(j)
				if err != nil {
					t.Fatal(err)
				}
				got, err := encodeJob(j)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("%s: encodeJob\n%s\nwant json.Marshal\n%s", step, got, want)
				}
			}
			check("first encoding")
			if j.fixed == nil {
				t.Fatal("the fixed head was not kept")
			}
			j.Stages[0].Done++
			j.Stages[1].Redelivered += 2
			j.MergeStarted = append(j.MergeStarted[:0], true, false)
			j.Finished = t0.Add(time.Hour)
			check("after the counters changed")
			// A copy (as the cache hands out) shares the head and still encodes the same.
			k := j.clone()
			k.Stages[0].Dead++
			j = k
			check("copy")
		})
	}
}

// storedJob is the job record as the file holds it, decoded without the cache.
func storedJob(t *testing.T, q *Queue, id queue.JobID) *jobRecord {
	t.Helper()
	var j *jobRecord
	err := q.view(func(tx *bolt.Tx) error {
		k := idKey(queue.TaskID(id))
		var err error
		j, err = decodeJob(k, tx.Bucket(bJobs).Get(k))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// TestJobCacheFollowsTheFile: whatever happens to a job's stored record, the queue acts on what
// is stored, never on a cached copy that differs from it.
func TestJobCacheFollowsTheFile(t *testing.T) {
	errRollback := errors.New("rolled back")
	cases := []struct {
		name string
		// change runs after the job's first task completed (so its record is cached); it
		// returns the counters of stage 0 the queue must see next, {expected, done, dead}.
		change func(t *testing.T, q *Queue, id queue.JobID) [3]int
	}{
		{"written behind the cache's back", func(t *testing.T, q *Queue, id queue.JobID) [3]int {
			j := storedJob(t, q, id)
			j.Stages[0].Dead = 1 // as if a task had been dead-lettered
			b, err := json.Marshal(j)
			if err != nil {
				t.Fatal(err)
			}
			if err := q.update(func(tx *bolt.Tx) error { return tx.Bucket(bJobs).Put(idKey(queue.TaskID(id)), b) }); err != nil {
				t.Fatal(err)
			}
			return [3]int{3, 1, 1}
		}},
		{"rolled-back write", func(t *testing.T, q *Queue, id queue.JobID) [3]int {
			err := q.update(func(tx *bolt.Tx) error {
				j, err := q.getJob(tx, id)
				if err != nil {
					return err
				}
				j.Stages[0].Done += 5
				if err := q.putJob(tx, j); err != nil {
					return err
				}
				return errRollback
			})
			if !errors.Is(err, errRollback) {
				t.Fatalf("update: %v", err)
			}
			return [3]int{3, 1, 0}
		}},
		{"caller changes what Job returned", func(t *testing.T, q *Queue, id queue.JobID) [3]int {
			j := mustJob(t, q, id)
			j.Inputs[0].Name = "changed"
			j.Pipeline.Stages[0].Name = "changed"
			j.Stages[0].Done = 99
			return [3]int{3, 1, 0}
		}},
		{"pruned and gone", func(t *testing.T, q *Queue, id queue.JobID) [3]int {
			if err := q.update(func(tx *bolt.Tx) error { return tx.Bucket(bJobs).Delete(idKey(queue.TaskID(id))) }); err != nil {
				t.Fatal(err)
			}
			return [3]int{-1, -1, -1}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			q, _, _ := newTest(t, nil)
			mustDefine(t, q, queue.Pipeline{Name: "p", Stages: []queue.StageDef{{Name: "a"}}})
			inputs := filesOf("a", "b", "c")
			id := mustSubmit(t, q, "", "p", inputs)
			inputs[0].Name = "changed by the submitter" // the job keeps its own copy
			l, st := leaseStage(t, q, "p", 0)
			mustComplete(t, q, l, fileOf(outName("a", st)))
			want := c.change(t, q, id)

			// The next completion reads the record (from the cache when it is current) and
			// writes it back: what it wrote must be the stored record plus one done task.
			l, st = leaseStage(t, q, "p", 0)
			mustComplete(t, q, l, fileOf(outName("a", st)))
			if want[0] < 0 {
				if _, err := q.Job(id); !errors.Is(err, queue.ErrNotFound) {
					t.Fatalf("Job of a removed record: %v, want ErrNotFound", err)
				}
				return
			}
			want[1]++
			j := mustJob(t, q, id)
			wantStages(t, j, want)
			if got := storedJob(t, q, id); !reflect.DeepEqual(got.Stages, j.Stages) {
				t.Fatalf("stored stages %+v, Job says %+v", got.Stages, j.Stages)
			}
			if !reflect.DeepEqual(j.Inputs, filesOf("a", "b", "c")) || j.Pipeline.Stages[0].Name != "a" {
				t.Fatalf("job inputs %v, stage %q: changed through a caller's slice", j.Inputs, j.Pipeline.Stages[0].Name)
			}
		})
	}
}

// TestJobCacheBounded: the cache keeps at most jobCacheJobs records, and jobs beyond it still
// move on correctly.
func TestJobCacheBounded(t *testing.T) {
	q, _, _ := newTest(t, nil)
	mustDefine(t, q, queue.Pipeline{Name: "p", Stages: []queue.StageDef{{Name: "a"}}})
	n := jobCacheJobs + 10
	for i := range n {
		mustSubmit(t, q, "", "p", filesOf(fmt.Sprintf("in%d", i)))
	}
	for range n {
		l, st := leaseStage(t, q, "p", 0)
		mustComplete(t, q, l, fileOf(outName("a", st)))
	}
	q.jobs.mu.Lock()
	size := len(q.jobs.m)
	q.jobs.mu.Unlock()
	if size > jobCacheJobs {
		t.Fatalf("the cache holds %d jobs, limit %d", size, jobCacheJobs)
	}
	for i := range n {
		if j := mustJob(t, q, queue.JobID(i+1)); j.State != queue.JobDone {
			t.Fatalf("job %d is %s", j.ID, j.State)
		}
	}
}

// TestReadyNow counts what Lease could take now, up to the limit, and leaves out tasks that
// back off, are leased or belong to another queue.
func TestReadyNow(t *testing.T) {
	q, c, _ := newTest(t, nil)
	for range 3 {
		mustEnqueue(t, q, "p", "x")
	}
	mustEnqueue(t, q, "other", "y")
	l := mustLease(t, q, "p", "w")            // leased: not ready
	if err := q.Fail(l, "boom"); err != nil { // backing off for a second: not ready yet
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		queue string
		after time.Duration
		limit int
		want  int
	}{
		{"two ready, one backing off", "p", 0, 10, 2},
		{"stops at the limit", "p", 0, 1, 1},
		{"limit zero", "p", 0, 0, 0},
		{"after the backoff", "p", 2 * time.Second, 10, 3},
		{"another queue", "other", 0, 10, 1},
		{"no such queue", "none", 0, 10, 0},
	}
	for _, tc := range cases {
		n, err := q.ReadyNow(tc.queue, c.Now().Add(tc.after), tc.limit)
		if err != nil || n != tc.want {
			t.Errorf("%s: ReadyNow = %d, %v; want %d", tc.name, n, err, tc.want)
		}
	}
}
