package queuestate

import (
	"bytes"
	"encoding/json"
	"slices"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/wasmpod/wasmpod/cluster/queue"
)

// A job's record holds all its inputs, and every task that completes, fails or is retried
// reads it, changes a counter and writes it back: decoding and encoding the whole record each
// time costs O(inputs) per task, O(inputs²) per job. Two things make that cost O(1) apart from
// copying the bytes, without changing a byte of what is stored:
//
//   - jobCache keeps recently used records decoded, each with the exact bytes it was decoded
//     from or encoded to. A record is taken from the cache only while the stored value is
//     still byte for byte those bytes, so the cache cannot disagree with the file: a write it
//     did not see, a rolled-back transaction or a restored snapshot only make it miss.
//   - encodeJob encodes the fields a job never changes after its submit (id, pipeline, inputs,
//     creation time) once per record it decodes, and then only the rest; the result is what
//     json.Marshal of the whole record gives (TestEncodeJobMatchesMarshal).

// jobCacheJobs and jobCacheBytes bound the cache: the jobs whose tasks are running at a time
// (a few per pipeline stage) fit many times over; a record larger than a quarter of the bytes
// is never kept.
const (
	jobCacheJobs  = 64
	jobCacheBytes = 32 << 20
)

type jobCache struct {
	mu    sync.Mutex
	m     map[queue.JobID]cachedJob
	bytes int
}

type cachedJob struct {
	enc []byte     // the stored value; never modified
	j   *jobRecord // never modified: get hands out copies
}

// get returns a copy of the record of job id if v, its stored value, is what the cache holds.
func (c *jobCache) get(id queue.JobID, v []byte) *jobRecord {
	c.mu.Lock()
	e, ok := c.m[id]
	c.mu.Unlock()
	if !ok || !bytes.Equal(e.enc, v) {
		return nil
	}
	return e.j.clone()
}

// put remembers j as the decoded form of enc (which the cache keeps: the caller must not
// modify it afterwards).
func (c *jobCache) put(enc []byte, j *jobRecord) {
	if len(enc) > jobCacheBytes/4 {
		c.drop(j.ID)
		return
	}
	e := cachedJob{enc: enc, j: j.clone()}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[queue.JobID]cachedJob)
	}
	c.dropLocked(j.ID)
	for len(c.m) > 0 && (len(c.m) >= jobCacheJobs || c.bytes+len(enc) > jobCacheBytes) {
		for id := range c.m { // any one: the jobs in use are put back at their next write
			c.dropLocked(id)
			break
		}
	}
	c.m[j.ID] = e
	c.bytes += len(enc)
}

// drop forgets job id (a pruned job).
func (c *jobCache) drop(id queue.JobID) {
	c.mu.Lock()
	c.dropLocked(id)
	c.mu.Unlock()
}

func (c *jobCache) dropLocked(id queue.JobID) {
	if old, ok := c.m[id]; ok {
		c.bytes -= len(old.enc)
		delete(c.m, id)
	}
}

// clone copies what the queue changes in a record (its counters); the inputs and the pipeline
// never change after a submit and are shared.
func (j *jobRecord) clone() *jobRecord {
	c := *j
	c.Stages = slices.Clone(j.Stages)
	c.MergeStarted = slices.Clone(j.MergeStarted)
	return &c
}

// jobFixed is the head of a jobRecord's JSON: the fields that never change after the submit,
// in the record's order and with its tags.
type jobFixed struct {
	ID       queue.JobID    `json:"id"`
	Pipeline queue.Pipeline `json:"pipeline"`
	Inputs   []queue.File   `json:"inputs"`
	Created  time.Time      `json:"created"`
}

// jobMoving is the rest of a jobRecord's JSON, in order and with the record's tags.
type jobMoving struct {
	Finished     time.Time             `json:"finished,omitzero"`
	Stages       []queue.StageProgress `json:"stages"`
	MergeStarted []bool                `json:"merge_started"`
	Trace        string                `json:"trace,omitempty"`
}

// encodeJob returns json.Marshal(j), encoding the fixed head only once per record.
func encodeJob(j *jobRecord) ([]byte, error) {
	if j.fixed == nil {
		b, err := json.Marshal(jobFixed{ID: j.ID, Pipeline: j.Pipeline, Inputs: j.Inputs, Created: j.Created})
		if err != nil {
			return nil, err
		}
		j.fixed = b[:len(b)-1] // without the closing brace
	}
	m, err := json.Marshal(jobMoving{Finished: j.Finished, Stages: j.Stages, MergeStarted: j.MergeStarted, Trace: j.Trace})
	if err != nil {
		return nil, err
	}
	// {"id":..,"created":".." + , + "stages":..}: Stages is never omitted, so m is never {}.
	b := make([]byte, 0, len(j.fixed)+len(m))
	b = append(b, j.fixed...)
	b = append(b, ',')
	return append(b, m[1:]...), nil
}

// getJob returns job id's record, from the cache while the stored value is unchanged. The
// record is the caller's to change.
func (q *Queue) getJob(tx *bolt.Tx, id queue.JobID) (*jobRecord, error) {
	k := idKey(queue.TaskID(id))
	v := tx.Bucket(bJobs).Get(k)
	if v == nil {
		return nil, errJobNotFound(id)
	}
	if j := q.jobs.get(id, v); j != nil {
		return j, nil
	}
	j, err := decodeJob(k, v)
	if err != nil {
		return nil, err
	}
	q.jobs.put(bytes.Clone(v), j)
	return j, nil
}

// putJob stores j and remembers it as the decoded form of what it stored.
func (q *Queue) putJob(tx *bolt.Tx, j *jobRecord) error {
	b, err := encodeJob(j)
	if err != nil {
		return err
	}
	if err := tx.Bucket(bJobs).Put(idKey(queue.TaskID(j.ID)), b); err != nil {
		return err
	}
	q.jobs.put(b, j)
	return nil
}
