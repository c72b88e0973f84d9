package queuestate

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/wasmpod/wasmpod/cluster/queue"
	"github.com/wasmpod/wasmpod/internal/spans"
)

// Pipeline layer: jobs push their inputs through a pipeline's stages. Each stage k has its
// own task queue (StageQueue(pipeline, k)); a task's payload is a JSON StageTask and its
// result the JSON File it produced. The hooks below run inside the transaction that completes,
// dead-letters or retries a task, so a job never sees half a transition.
//
// Buckets: jobs (id -> JSON jobRecord, sequence = job ids), slots (job|stage|slot -> the id
// of the task currently serving that slot), pipelines (name -> JSON Pipeline), requests
// (submit request id -> job id, for idempotent submits).
var (
	bJobs      = []byte("jobs")
	bSlots     = []byte("slots")
	bPipelines = []byte("pipelines")
	bRequests  = []byte("requests")
	bJobTasks  = []byte("jobtasks") // job|task -> 1: every task a job ever had, for pruning
)

// StageQueue is the name of the queue holding stage k of a pipeline's tasks.
func StageQueue(pipeline string, stage int) string { return fmt.Sprintf("%s/%d", pipeline, stage) }

// StageTask is the payload of a pipeline task: which job, stage and input slot it serves,
// and its inputs.
type StageTask struct {
	Job   queue.JobID `json:"job"`
	Stage int         `json:"stage"`
	// Slot is the input's index in the job (0 for a merge task).
	Slot   int          `json:"slot"`
	Inputs []queue.File `json:"inputs"`
	// Name and Merge repeat the stage's definition, so a worker needs nothing else.
	Name  string `json:"name"`
	Merge bool   `json:"merge,omitempty"`
	// Trace is the job's W3C traceparent ("" when the submit was not traced): the worker's
	// span of each attempt is its child.
	Trace string `json:"trace,omitempty"`
}

type jobRecord struct {
	ID       queue.JobID           `json:"id"`
	Pipeline queue.Pipeline        `json:"pipeline"`
	Inputs   []queue.File          `json:"inputs"`
	Created  time.Time             `json:"created"`
	Finished time.Time             `json:"finished,omitzero"`
	Stages   []queue.StageProgress `json:"stages"`
	// MergeStarted[k] is set while merge stage k has been started for the current resolution
	// of stage k-1; a retried task of an earlier stage clears it so that the merge re-runs.
	MergeStarted []bool `json:"merge_started"`
	// Trace is the submitter's W3C traceparent ("" when not traced): every task of the job
	// carries it, so that each attempt's span joins the job's trace.
	Trace string `json:"trace,omitempty"`

	// fixed is the JSON of the fields above that never change after the submit (see
	// encodeJob): set at the record's first encoding, shared by its copies.
	fixed []byte
}

func slotKey(job queue.JobID, stage, slot int) []byte {
	k := make([]byte, 16)
	binary.BigEndian.PutUint64(k, uint64(job))
	binary.BigEndian.PutUint32(k[8:], uint32(stage))
	binary.BigEndian.PutUint32(k[12:], uint32(slot))
	return k
}

func errJobNotFound(id queue.JobID) error { return fmt.Errorf("%w: job %d", queue.ErrNotFound, id) }

// decodeJob decodes the job record stored under key k.
func decodeJob(k, v []byte) (*jobRecord, error) {
	var j jobRecord
	if err := json.Unmarshal(v, &j); err != nil || len(k) != 8 || j.ID != queue.JobID(binary.BigEndian.Uint64(k)) ||
		len(j.Stages) != len(j.Pipeline.Stages) {
		return nil, fmt.Errorf("%w: job record %x does not decode", queue.ErrCorrupt, k)
	}
	if len(j.MergeStarted) != len(j.Stages) {
		j.MergeStarted = make([]bool, len(j.Stages))
	}
	return &j, nil
}

// recompute derives every stage's Expected from the counters: a non-merge stage expects what
// the stage before it did not dead-letter; a merge stage expects one run.
func (j *jobRecord) recompute() {
	for k := range j.Stages {
		switch {
		case j.Pipeline.Stages[k].Merge:
			j.Stages[k].Expected = 1
		case k == 0:
			j.Stages[k].Expected = len(j.Inputs)
		default:
			j.Stages[k].Expected = max(0, j.Stages[k-1].Expected-j.Stages[k-1].Dead)
		}
	}
}

func (j *jobRecord) resolved(k int) bool {
	s := j.Stages[k]
	return s.Done+s.Dead >= s.Expected
}

func (j *jobRecord) state() queue.JobState {
	for k := range j.Stages {
		if !j.resolved(k) {
			return queue.JobRunning
		}
	}
	for _, s := range j.Stages {
		if s.Dead > 0 {
			return queue.JobPartial
		}
	}
	return queue.JobDone
}

// definePipeline stores p (replacing a definition of the same name).
func definePipeline(tx *bolt.Tx, p queue.Pipeline) error {
	if err := p.Validate(); err != nil {
		return err
	}
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	return tx.Bucket(bPipelines).Put([]byte(p.Name), b)
}

func getPipeline(tx *bolt.Tx, name string) (*queue.Pipeline, error) {
	v := tx.Bucket(bPipelines).Get([]byte(name))
	if v == nil {
		return nil, fmt.Errorf("%w: pipeline %q is not defined", queue.ErrNotFound, name)
	}
	var p queue.Pipeline
	if err := json.Unmarshal(v, &p); err != nil {
		return nil, fmt.Errorf("%w: pipeline %q record does not decode", queue.ErrCorrupt, name)
	}
	return &p, nil
}

// submit creates a job and its first-stage tasks. A repeated request id returns the job the
// first request created.
func (q *Queue) submit(tx *bolt.Tx, now time.Time, requestID, pipeline string, inputs []queue.File) (queue.JobID, error) {
	return q.submitWith(tx, now, requestID, pipeline, inputs, 0, 0, "")
}

// submitWith is submit with the attempt limit and backoff base to record in the job when its
// pipeline sets none (0: the queue's configuration at the time of each failure), and the
// submitter's traceparent (kept only when it is well-formed).
func (q *Queue) submitWith(tx *bolt.Tx, now time.Time, requestID, pipeline string, inputs []queue.File, maxAttempts int, backoff time.Duration, traceparent string) (queue.JobID, error) {
	if maxAttempts < 0 || maxAttempts > 1000 || backoff < 0 {
		return 0, fmt.Errorf("%w: default attempts %d (0..1000) or backoff %v (>= 0) out of range", queue.ErrInvalid, maxAttempts, backoff)
	}
	if requestID != "" {
		if v := tx.Bucket(bRequests).Get([]byte(requestID)); len(v) == 8 {
			return queue.JobID(binary.BigEndian.Uint64(v)), nil
		}
	}
	if err := queue.ValidateSubmit(requestID, inputs); err != nil {
		return 0, err
	}
	p, err := getPipeline(tx, pipeline)
	if err != nil {
		return 0, err
	}
	if p.MaxAttempts == 0 && maxAttempts > 0 {
		p.MaxAttempts = maxAttempts
	}
	if p.Backoff == 0 && backoff > 0 {
		p.Backoff = backoff
	}
	seq, err := tx.Bucket(bJobs).NextSequence()
	if err != nil {
		return 0, err
	}
	// The record keeps its own copy of the inputs: the caller's slice may change, the record
	// (and the cache's copy of it) must not.
	j := &jobRecord{ID: queue.JobID(seq), Pipeline: *p, Inputs: slices.Clone(inputs), Created: now,
		Stages: make([]queue.StageProgress, len(p.Stages)), MergeStarted: make([]bool, len(p.Stages))}
	if sc, ok := spans.ParseTraceparent([]byte(traceparent)); ok {
		j.Trace = string(spans.AppendTraceparent(nil, sc)) // normalised: 55 bytes whatever was sent
	}
	for k, s := range p.Stages {
		j.Stages[k].Name = s.Name
	}
	j.recompute()
	if p.Stages[0].Merge {
		if err := q.enqueueMerge(tx, now, j, 0, inputs); err != nil {
			return 0, err
		}
	} else {
		for i, in := range inputs {
			if err := q.enqueueStage(tx, now, j, 0, i, []queue.File{in}); err != nil {
				return 0, err
			}
		}
	}
	if err := q.putJob(tx, j); err != nil {
		return 0, err
	}
	if requestID != "" {
		if err := tx.Bucket(bRequests).Put([]byte(requestID), idKey(queue.TaskID(j.ID))); err != nil {
			return 0, err
		}
	}
	return j.ID, nil
}

func (q *Queue) enqueueStage(tx *bolt.Tx, now time.Time, j *jobRecord, stage, slot int, inputs []queue.File) error {
	def := j.Pipeline.Stages[stage]
	payload, err := json.Marshal(StageTask{Job: j.ID, Stage: stage, Slot: slot, Inputs: inputs, Name: def.Name, Merge: def.Merge, Trace: j.Trace})
	if err != nil {
		return err
	}
	id, err := q.enqueueTx(tx, now, StageQueue(j.Pipeline.Name, stage), payload)
	if err != nil {
		return err
	}
	if err := tx.Bucket(bJobTasks).Put(append(idKey(queue.TaskID(j.ID)), idKey(id)...), indexValue); err != nil {
		return err
	}
	return tx.Bucket(bSlots).Put(slotKey(j.ID, stage, slot), idKey(id))
}

// enqueueMerge starts the merge stage k over inputs, after forgetting whatever an earlier
// run of it (and of the stages after it) did: their tasks, if still running, become stale.
func (q *Queue) enqueueMerge(tx *bolt.Tx, now time.Time, j *jobRecord, k int, inputs []queue.File) error {
	for s := k; s < len(j.Stages); s++ {
		j.Stages[s].Done, j.Stages[s].Dead = 0, 0
		j.MergeStarted[s] = false
		if err := deleteSlots(tx, j.ID, s); err != nil {
			return err
		}
	}
	j.MergeStarted[k] = true
	j.Finished = time.Time{}
	j.recompute()
	if len(inputs) == 0 { // every input was dead-lettered: nothing to merge
		j.Stages[k].Dead = 1
		j.recompute()
		return q.advance(tx, now, j, k)
	}
	return q.enqueueStage(tx, now, j, k, 0, inputs)
}

func deleteSlots(tx *bolt.Tx, job queue.JobID, stage int) error {
	b := tx.Bucket(bSlots)
	prefix := slotKey(job, stage, 0)[:12]
	c := b.Cursor()
	var keys [][]byte
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		keys = append(keys, bytes.Clone(k))
	}
	for _, k := range keys {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// stageTaskOf decodes a pipeline task's payload; ok is false for plain queue tasks.
func stageTaskOf(t *Task) (StageTask, bool) {
	var st StageTask
	if !strings.Contains(t.Pipeline, "/") || len(t.Payload) == 0 || t.Payload[0] != '{' {
		return st, false
	}
	if err := json.Unmarshal(t.Payload, &st); err != nil || st.Job == 0 {
		return st, false
	}
	return st, true
}

// jobOf returns the job a task serves, if the task still owns its slot (a task replaced by
// a re-run of its stage is stale and moves nothing).
func (q *Queue) jobOf(tx *bolt.Tx, t *Task) (*jobRecord, StageTask, bool, error) {
	st, ok := stageTaskOf(t)
	if !ok {
		return nil, st, false, nil
	}
	v := tx.Bucket(bSlots).Get(slotKey(st.Job, st.Stage, st.Slot))
	if len(v) != 8 || queue.TaskID(binary.BigEndian.Uint64(v)) != t.ID {
		return nil, st, false, nil
	}
	j, err := q.getJob(tx, st.Job)
	if errors.Is(err, queue.ErrNotFound) {
		return nil, st, false, nil
	}
	if err != nil {
		return nil, st, false, err
	}
	if st.Stage < 0 || st.Stage >= len(j.Stages) {
		return nil, st, false, fmt.Errorf("%w: task %d names stage %d of job %d", queue.ErrCorrupt, t.ID, st.Stage, j.ID)
	}
	return j, st, true, nil
}

// limits returns the attempt limit and backoff base for a task: its pipeline's, or the
// queue's.
func (q *Queue) limits(tx *bolt.Tx, t *Task) (int, time.Duration) {
	maxAttempts, base := q.cfg.MaxAttempts, q.cfg.BackoffBase
	if st, ok := stageTaskOf(t); ok {
		if j, err := q.getJob(tx, st.Job); err == nil {
			if j.Pipeline.MaxAttempts > 0 {
				maxAttempts = j.Pipeline.MaxAttempts
			}
			if j.Pipeline.Backoff > 0 {
				base = j.Pipeline.Backoff
			}
		}
	}
	return maxAttempts, base
}

// onDone moves a job on after one of its tasks completed with result (a JSON File).
func (q *Queue) onDone(tx *bolt.Tx, now time.Time, t *Task) error {
	j, st, ok, err := q.jobOf(tx, t)
	if !ok || err != nil {
		return err
	}
	var out queue.File
	if err := json.Unmarshal(t.Result, &out); err != nil {
		return fmt.Errorf("%w: result of pipeline task %d is not a file reference", queue.ErrInvalid, t.ID)
	}
	if err := out.Validate(); err != nil {
		return fmt.Errorf("result of pipeline task %d: %w", t.ID, err)
	}
	j.Stages[st.Stage].Done++
	j.recompute()
	k := st.Stage
	if k+1 < len(j.Stages) && !j.Pipeline.Stages[k+1].Merge {
		if err := q.enqueueStage(tx, now, j, k+1, st.Slot, []queue.File{out}); err != nil {
			return err
		}
	}
	return q.advance(tx, now, j, k)
}

// onDead accounts for a dead-lettered task of a job.
func (q *Queue) onDead(tx *bolt.Tx, now time.Time, t *Task) error {
	j, st, ok, err := q.jobOf(tx, t)
	if !ok || err != nil {
		return err
	}
	j.Stages[st.Stage].Dead++
	j.recompute()
	return q.advance(tx, now, j, st.Stage)
}

// onRetry undoes onDead when a dead-lettered task is put back.
func (q *Queue) onRetry(tx *bolt.Tx, t *Task) error {
	j, st, ok, err := q.jobOf(tx, t)
	if !ok || err != nil {
		return err
	}
	if j.Stages[st.Stage].Dead > 0 {
		j.Stages[st.Stage].Dead--
	}
	for m := st.Stage + 1; m < len(j.Stages); m++ {
		if j.Pipeline.Stages[m].Merge {
			j.MergeStarted[m] = false
		}
	}
	j.Finished = time.Time{}
	j.recompute()
	return q.putJob(tx, j)
}

// advance runs after stage k's counters changed: it starts a following merge stage once k
// has resolved, and stamps the job finished when every stage has.
func (q *Queue) advance(tx *bolt.Tx, now time.Time, j *jobRecord, k int) error {
	// Stages with nothing to run resolve at once; walk forward to the first merge that can start.
	for s := k; s+1 < len(j.Stages); s++ {
		if !j.resolved(s) {
			break
		}
		if j.Pipeline.Stages[s+1].Merge {
			if j.MergeStarted[s+1] {
				break // already started for this resolution of stage s
			}
			outs, err := stageOutputs(tx, j, s)
			if err != nil {
				return err
			}
			return q.finishPut(tx, now, j, q.enqueueMerge(tx, now, j, s+1, outs))
		}
	}
	return q.finishPut(tx, now, j, nil)
}

func (q *Queue) finishPut(tx *bolt.Tx, now time.Time, j *jobRecord, err error) error {
	if err != nil {
		return err
	}
	if j.state() != queue.JobRunning && j.Finished.IsZero() {
		j.Finished = now
		q.finished.Add(1)
	}
	return q.putJob(tx, j)
}

// stageOutputs collects the outputs of stage k's completed tasks, in slot order.
func stageOutputs(tx *bolt.Tx, j *jobRecord, k int) ([]queue.File, error) {
	var outs []queue.File
	prefix := slotKey(j.ID, k, 0)[:12]
	c := tx.Bucket(bSlots).Cursor()
	for key, v := c.Seek(prefix); key != nil && bytes.HasPrefix(key, prefix); key, v = c.Next() {
		if len(v) != 8 {
			return nil, fmt.Errorf("%w: slot %x", queue.ErrCorrupt, key)
		}
		t, err := getTask(tx, queue.TaskID(binary.BigEndian.Uint64(v)))
		if err != nil {
			return nil, err
		}
		if t.State != StateDone {
			continue
		}
		var f queue.File
		if err := json.Unmarshal(t.Result, &f); err != nil {
			return nil, fmt.Errorf("%w: result of task %d", queue.ErrCorrupt, t.ID)
		}
		outs = append(outs, f)
	}
	return outs, nil
}

// view builds the public Job.
func (j *jobRecord) view(tx *bolt.Tx) (queue.Job, error) {
	// Copies of what the record shares with the job cache: the caller may change its Job.
	p := j.Pipeline
	p.Stages = slices.Clone(p.Stages)
	out := queue.Job{ID: j.ID, Pipeline: p, Inputs: slices.Clone(j.Inputs), State: j.state(), Created: j.Created,
		Finished: j.Finished, Stages: slices.Clone(j.Stages)}
	last := len(j.Stages) - 1
	outs, err := stageOutputs(tx, j, last)
	if err != nil {
		return queue.Job{}, err
	}
	out.Outputs = outs
	return out, nil
}

// info builds the public TaskInfo of a task.
func (q *Queue) info(tx *bolt.Tx, t *Task) queue.TaskInfo {
	ti := queue.TaskInfo{ID: t.ID, Pipeline: t.Pipeline, State: t.State.String(), Attempts: t.Attempts, Worker: t.Worker,
		Errors: t.Errors, Enqueued: t.EnqueuedAt, Finished: t.FinishedAt}
	if st, ok := stageTaskOf(t); ok {
		ti.Job, ti.Stage, ti.Inputs = st.Job, st.Stage, st.Inputs
		if j, err := q.getJob(tx, st.Job); err == nil {
			ti.Pipeline = j.Pipeline.Name
			if st.Stage >= 0 && st.Stage < len(j.Pipeline.Stages) {
				ti.StageName = j.Pipeline.Stages[st.Stage].Name
			}
		}
	}
	if t.State == StateDone && len(t.Result) > 0 {
		var f queue.File
		if json.Unmarshal(t.Result, &f) == nil {
			ti.Output = &f
		}
	}
	return ti
}

// onLease counts a redelivery against the task's job.
func (q *Queue) onLease(tx *bolt.Tx, t *Task) error {
	if t.Attempts <= 1 {
		return nil
	}
	j, st, ok, err := q.jobOf(tx, t)
	if !ok || err != nil {
		return err
	}
	j.Stages[st.Stage].Redelivered++
	return q.putJob(tx, j)
}

// PruneResult counts what a prune removed.
type PruneResult struct {
	Jobs  int `json:"jobs"`
	Tasks int `json:"tasks"`
}

// prune removes every finished job that finished before cutoff, with all its tasks (and their
// index entries), slots and submit request ids.
func (q *Queue) prune(tx *bolt.Tx, cutoff time.Time) (PruneResult, error) {
	var res PruneResult
	var old []*jobRecord
	c := tx.Bucket(bJobs).Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		j, err := decodeJob(k, v)
		if err != nil {
			return res, err
		}
		if !j.Finished.IsZero() && j.Finished.Before(cutoff) && j.state() != queue.JobRunning {
			old = append(old, j)
		}
	}
	if len(old) == 0 {
		return res, nil
	}
	gone := map[queue.JobID]bool{}
	for _, j := range old {
		gone[j.ID] = true
		prefix := idKey(queue.TaskID(j.ID))
		jt := tx.Bucket(bJobTasks)
		var keys [][]byte
		jc := jt.Cursor()
		for k, _ := jc.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = jc.Next() {
			keys = append(keys, bytes.Clone(k))
		}
		for _, k := range keys {
			id := queue.TaskID(binary.BigEndian.Uint64(k[8:]))
			if t, err := getTask(tx, id); err == nil {
				var root []byte
				var at time.Time
				switch t.State {
				case StateReady:
					root, at = bReady, t.ReadyAt
				case StateLeased:
					root, at = bLeased, t.LeaseExpires
				case StateDead:
					root, at = bDead, t.FinishedAt
				}
				if root != nil {
					if b := tx.Bucket(root).Bucket([]byte(t.Pipeline)); b != nil {
						_ = b.Delete(indexKey(at, id))
					}
				}
				if err := tx.Bucket(bTasks).Delete(idKey(id)); err != nil {
					return res, err
				}
				res.Tasks++
			}
			if err := jt.Delete(k); err != nil {
				return res, err
			}
		}
		for k := range j.Stages {
			if err := deleteSlots(tx, j.ID, k); err != nil {
				return res, err
			}
		}
		if err := tx.Bucket(bJobs).Delete(prefix); err != nil {
			return res, err
		}
		q.jobs.drop(j.ID)
		res.Jobs++
	}
	rb := tx.Bucket(bRequests)
	var reqs [][]byte
	_ = rb.ForEach(func(k, v []byte) error {
		if len(v) == 8 && gone[queue.JobID(binary.BigEndian.Uint64(v))] {
			reqs = append(reqs, bytes.Clone(k))
		}
		return nil
	})
	for _, k := range reqs {
		if err := rb.Delete(k); err != nil {
			return res, err
		}
	}
	return res, nil
}

// Prune removes the jobs that finished before cutoff, with their tasks.
func (q *Queue) Prune(cutoff time.Time) (PruneResult, error) {
	var res PruneResult
	err := q.update(func(tx *bolt.Tx) error {
		var err error
		res, err = q.prune(tx, cutoff)
		return err
	})
	if err != nil {
		return PruneResult{}, fmt.Errorf("queue: prune: %w", err)
	}
	return res, nil
}

// BlobRefs returns the sha256 of every file the queue still refers to: job inputs, task
// inputs and task outputs.
func (q *Queue) BlobRefs() (map[string]struct{}, error) {
	refs := map[string]struct{}{}
	err := q.view(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bJobs).ForEach(func(k, v []byte) error {
			j, err := decodeJob(k, v)
			if err != nil {
				return err
			}
			for _, f := range j.Inputs {
				refs[f.SHA256] = struct{}{}
			}
			return nil
		}); err != nil {
			return err
		}
		return tx.Bucket(bTasks).ForEach(func(k, v []byte) error {
			t, err := decodeTask(v)
			if err != nil {
				return err
			}
			if st, ok := stageTaskOf(t); ok {
				for _, f := range st.Inputs {
					refs[f.SHA256] = struct{}{}
				}
			}
			var out queue.File
			if len(t.Result) > 0 && t.Result[0] == '{' && json.Unmarshal(t.Result, &out) == nil && out.SHA256 != "" {
				refs[out.SHA256] = struct{}{}
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("queue: blob references: %w", err)
	}
	return refs, nil
}
