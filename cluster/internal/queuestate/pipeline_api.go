package queuestate

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/wasmpod/wasmpod/cluster/queue"
)

// DefinePipeline creates or replaces a pipeline definition. Jobs keep the definition they
// were submitted with.
func (q *Queue) DefinePipeline(p queue.Pipeline) error {
	if err := q.update(func(tx *bolt.Tx) error { return definePipeline(tx, p) }); err != nil {
		return fmt.Errorf("queue: define pipeline %q: %w", p.Name, err)
	}
	return nil
}

// Pipelines lists the defined pipelines by name.
func (q *Queue) Pipelines() ([]queue.Pipeline, error) {
	var out []queue.Pipeline
	err := q.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bPipelines).ForEach(func(k, v []byte) error {
			var p queue.Pipeline
			if err := json.Unmarshal(v, &p); err != nil {
				return fmt.Errorf("%w: pipeline %q record does not decode", queue.ErrCorrupt, k)
			}
			out = append(out, p)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("queue: pipelines: %w", err)
	}
	return out, nil
}

// Submit creates a job of the pipeline over inputs and enqueues its first stage, in one
// durable transaction. A non-empty requestID makes the submit idempotent: repeating it returns
// the job the first one created.
func (q *Queue) Submit(ctx context.Context, requestID, pipeline string, inputs []queue.File) (queue.JobID, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("queue: submit: %w", err)
	}
	var id queue.JobID
	err := q.update(func(tx *bolt.Tx) error {
		var err error
		id, err = q.submit(tx, q.cfg.Now(), requestID, pipeline, inputs)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("queue: submit to %q: %w", pipeline, err)
	}
	return id, nil
}

// Job returns a job with its progress and outputs so far.
func (q *Queue) Job(id queue.JobID) (queue.Job, error) {
	var out queue.Job
	err := q.view(func(tx *bolt.Tx) error {
		j, err := q.getJob(tx, id)
		if err != nil {
			return err
		}
		out, err = j.view(tx)
		return err
	})
	if err != nil {
		return queue.Job{}, fmt.Errorf("queue: job %d: %w", id, err)
	}
	return out, nil
}

// Jobs lists the newest jobs, of one pipeline or of all ("" ), newest first; limit <= 0
// means 100. Outputs are left out (Job has them).
func (q *Queue) Jobs(pipeline string, limit int) ([]queue.Job, error) {
	if limit <= 0 {
		limit = 100
	}
	var out []queue.Job
	err := q.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bJobs).Cursor()
		for k, v := c.Last(); k != nil && len(out) < limit; k, v = c.Prev() {
			j, err := decodeJob(k, v)
			if err != nil {
				return err
			}
			if pipeline != "" && j.Pipeline.Name != pipeline {
				continue
			}
			out = append(out, queue.Job{ID: j.ID, Pipeline: j.Pipeline, Inputs: j.Inputs, State: j.state(),
				Created: j.Created, Finished: j.Finished, Stages: j.Stages})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("queue: jobs: %w", err)
	}
	return out, nil
}

// StageStats returns the counters of every stage of every defined pipeline.
func (q *Queue) StageStats() ([]queue.StageStats, error) {
	ps, err := q.Pipelines()
	if err != nil {
		return nil, err
	}
	var out []queue.StageStats
	for _, p := range ps {
		for k, s := range p.Stages {
			st, err := q.Stats(StageQueue(p.Name, k))
			if err != nil {
				return nil, err
			}
			out = append(out, queue.StageStats{Pipeline: p.Name, Stage: k, Name: s.Name, Stats: st})
		}
	}
	return out, nil
}

// DeadTasks lists the dead-lettered tasks of a pipeline's stages ("" for every defined
// pipeline), oldest first.
func (q *Queue) DeadTasks(pipeline string) ([]queue.TaskInfo, error) {
	ps, err := q.Pipelines()
	if err != nil {
		return nil, err
	}
	var out []queue.TaskInfo
	found := pipeline == ""
	for _, p := range ps {
		if pipeline != "" && p.Name != pipeline {
			continue
		}
		found = true
		for k := range p.Stages {
			ts, err := q.Dead(StageQueue(p.Name, k))
			if err != nil {
				return nil, err
			}
			err = q.view(func(tx *bolt.Tx) error {
				for i := range ts {
					out = append(out, q.info(tx, &ts[i]))
				}
				return nil
			})
			if err != nil {
				return nil, err
			}
		}
	}
	if !found {
		return nil, fmt.Errorf("queue: dead tasks: %w: pipeline %q is not defined", queue.ErrNotFound, pipeline)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Finished.Before(out[j].Finished) })
	return out, nil
}

// TaskInfo returns a task with its pipeline payload and result decoded.
func (q *Queue) TaskInfo(id queue.TaskID) (queue.TaskInfo, error) {
	t, err := q.Get(id)
	if err != nil {
		return queue.TaskInfo{}, err
	}
	var out queue.TaskInfo
	err = q.view(func(tx *bolt.Tx) error { out = q.info(tx, &t); return nil })
	return out, err
}

// NextReady reports when the named queue next has work for Lease at or after now: now itself when
// a task is ready or a lease has expired, the earliest backoff or lease expiry otherwise, and
// ok false when the queue holds neither ready nor leased tasks.
func (q *Queue) NextReady(name string, now time.Time) (at time.Time, ok bool, err error) {
	err = q.view(func(tx *bolt.Tx) error {
		for _, root := range [][]byte{bReady, bLeased} {
			b := tx.Bucket(root).Bucket([]byte(name))
			if b == nil {
				continue
			}
			k, _ := b.Cursor().First()
			if len(k) < 16 {
				continue
			}
			t := nanosToTime(int64(binary.BigEndian.Uint64(k[:8]) ^ (1 << 63)))
			if !ok || t.Before(at) {
				at, ok = t, true
			}
		}
		return nil
	})
	if ok && at.Before(now) {
		at = now
	}
	return at, ok, err
}

// ReadyNow counts the named queue's tasks that Lease could hand out at now (ready, not
// backing off), stopping at limit: it costs O(limit), whatever the queue's length.
func (q *Queue) ReadyNow(name string, now time.Time, limit int) (n int, err error) {
	err = q.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bReady).Bucket([]byte(name))
		if b == nil {
			return nil
		}
		nowKey := timeKey(now)
		c := b.Cursor()
		for k, _ := c.First(); k != nil && n < limit && bytes.Compare(k[:8], nowKey[:]) <= 0; k, _ = c.Next() {
			n++
		}
		return nil
	})
	return n, err
}
