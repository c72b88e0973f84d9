package queuestate

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/wasmpod/wasmpod/cluster/queue"
)

// Config tunes a Queue. Start from DefaultConfig.
type Config struct {
	// LeaseDuration is how long a lease lasts without a Heartbeat.
	LeaseDuration time.Duration
	// MaxAttempts is the number of deliveries before a task is
	// dead-lettered.
	MaxAttempts int
	// BackoffBase is the delay before the second delivery; each further
	// attempt doubles it.
	BackoffBase time.Duration
	// BackoffCap bounds the delay.
	BackoffCap time.Duration
	// MaxPayloadBytes bounds a payload and a result.
	MaxPayloadBytes int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		// 30s (SQS's default visibility timeout): a crashed worker's task is
		// redelivered within a minute, and a live one heartbeats a few
		// times a minute at little cost.
		LeaseDuration: 30 * time.Second,
		// 5: enough to ride out a restart or a flaky dependency; a task
		// that fails five times is almost surely poison and belongs in the
		// dead letters for a human to look at.
		MaxAttempts: 5,
		// 1s: a transient failure (node restart, full disk) usually lasts
		// seconds, so retrying immediately would only burn an attempt.
		BackoffBase: time.Second,
		// 5m: with 5 attempts the cap is never reached by default (1+2+4+8s);
		// it keeps a raised MaxAttempts from pushing retries out by hours.
		BackoffCap: 5 * time.Minute,
		// 1 MiB: payloads are references to input files (the module reads a
		// file, writes a file), and every state change rewrites the record.
		MaxPayloadBytes: 1 << 20,
		Now:             time.Now,
	}
}

func (c Config) validate() error {
	switch {
	case c.LeaseDuration <= 0:
		return fmt.Errorf("%w: LeaseDuration must be positive, got %v", queue.ErrInvalid, c.LeaseDuration)
	case c.MaxAttempts < 1:
		return fmt.Errorf("%w: MaxAttempts must be at least 1, got %d", queue.ErrInvalid, c.MaxAttempts)
	case c.BackoffBase <= 0:
		return fmt.Errorf("%w: BackoffBase must be positive, got %v", queue.ErrInvalid, c.BackoffBase)
	case c.BackoffCap < c.BackoffBase:
		return fmt.Errorf("%w: BackoffCap %v is below BackoffBase %v", queue.ErrInvalid, c.BackoffCap, c.BackoffBase)
	case c.MaxPayloadBytes < 0:
		return fmt.Errorf("%w: MaxPayloadBytes must not be negative, got %d", queue.ErrInvalid, c.MaxPayloadBytes)
	}
	return nil
}

// Backoff is the delay before the delivery that follows the given
// (1-based) failed attempt: BackoffBase * 2^(attempt-1), at most BackoffCap.
func (c Config) Backoff(attempt int) time.Duration {
	d := c.BackoffBase
	for i := 1; i < attempt; i++ {
		if d >= c.BackoffCap/2 {
			return c.BackoffCap
		}
		d *= 2
	}
	return min(d, c.BackoffCap)
}

// State is where a task is in its life.
type State uint8

// The states. StateReady includes a task that is backing off (ReadyAt in
// the future).
const (
	StateReady State = iota + 1
	StateLeased
	StateDone
	StateDead
)

func (s State) String() string {
	switch s {
	case StateReady:
		return "ready"
	case StateLeased:
		return "leased"
	case StateDone:
		return "done"
	case StateDead:
		return "dead"
	}
	return "state(" + strconv.Itoa(int(s)) + ")"
}

// Task is the stored state of a task, as returned by Get and Dead.
type Task struct {
	ID       queue.TaskID `json:"id"`
	Pipeline string       `json:"pipeline"`
	Payload  []byte       `json:"payload,omitempty"`
	State    State        `json:"state"`
	// Attempts is the number of deliveries so far (reset by Retry).
	Attempts   int       `json:"attempts"`
	EnqueuedAt time.Time `json:"enqueued_at"`
	// ReadyAt is when the task may next be leased (StateReady only).
	ReadyAt time.Time `json:"ready_at,omitzero"`
	// LeaseID, LeaseExpires and Worker describe the current lease
	// (StateLeased) or the last one.
	LeaseID      uint64    `json:"lease_id,omitempty"`
	LeaseExpires time.Time `json:"lease_expires,omitzero"`
	Worker       string    `json:"worker,omitempty"`
	// Errors is the whole error history, oldest first.
	Errors []queue.AttemptError `json:"errors,omitempty"`
	// Result is what Complete stored (StateDone).
	Result []byte `json:"result,omitempty"`
	// FinishedAt is when the task was completed or dead-lettered.
	FinishedAt time.Time `json:"finished_at,omitzero"`
}

// Lease is a worker's claim on one delivery of a task.
type Lease struct {
	ID        uint64       `json:"id"`
	TaskID    queue.TaskID `json:"task_id"`
	Pipeline  string       `json:"pipeline"`
	Worker    string       `json:"worker"`
	Attempt   int          `json:"attempt"`
	Payload   []byte       `json:"payload,omitempty"`
	ExpiresAt time.Time    `json:"expires_at"`
}

// Bucket layout. tasks: id -> record. ready, leased, dead: one sub-bucket
// per pipeline, keys timeKey(ready / lease expiry / dead time) + id.
// stats: one sub-bucket per pipeline with counters. meta: format version
// and the lease-id sequence.
var (
	bTasks  = []byte("tasks")
	bReady  = []byte("ready")
	bLeased = []byte("leased")
	bDead   = []byte("dead")
	bStats  = []byte("stats")
	bMeta   = []byte("meta")

	// indexValue is the value of every index entry (a non-empty value,
	// so that Get can tell a present key from a missing one).
	indexValue = []byte{1}

	kFormat    = []byte("format")
	kRetries   = []byte("retries")
	kCompleted = []byte("completed")
)

// Queue is a durable work queue in one bbolt file. It is safe for
// concurrent use; bbolt serialises the write transactions.
type Queue struct {
	cfg Config
	// passive: reads never write (expired leases are applied only by writes). Set for a
	// replica whose every change must come through the replicated log.
	passive bool

	mu     sync.RWMutex
	closed bool
	db     *bolt.DB

	jobs jobCache // decoded job records, checked against the stored bytes at each use

	// shared, when set, is the write transaction every update and view runs in instead of its
	// own (Machine.applyShared); sharedUpdated records that an update ran in it (else it has
	// nothing to commit), sharedFailed that one failed: the transaction must then be rolled
	// back, since a failed update may have written part of its change. All three belong to the
	// goroutine holding the Machine's write lock.
	shared                      *bolt.Tx
	sharedUpdated, sharedFailed bool

	// finished counts the jobs stamped finished by this Queue's changes (one may be counted
	// again when its change is rolled back and applied anew): Machine compares it across a
	// command to tell job waiters (JobFinished).
	finished atomic.Uint64
}

// Open opens (creating if needed) the queue file at path. Only one Queue
// may have a file open; a second Open fails after a second.
func Open(path string, cfg Config) (*Queue, error) {
	return open(path, cfg, false)
}

// open opens the file; noSync skips fsync (for a replica rebuilt from the replicated log).
func open(path string, cfg Config, noSync bool) (*Queue, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, NoSync: noSync, NoFreelistSync: noSync})
	if err != nil {
		return nil, fmt.Errorf("queue: open %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bTasks, bReady, bLeased, bDead, bStats, bMeta, bJobs, bSlots, bPipelines, bRequests, bJobTasks} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bMeta)
		switch v := meta.Get(kFormat); {
		case v == nil:
			return meta.Put(kFormat, []byte{recordVersion})
		case len(v) != 1 || v[0] != recordVersion:
			return fmt.Errorf("%w: file format %x, want %d", queue.ErrCorrupt, v, recordVersion)
		}
		return nil
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("queue: open %s: %w", path, err)
	}
	return &Queue{cfg: cfg, db: db}, nil
}

// Close closes the file. It is idempotent; later calls on the queue return
// ErrClosed.
func (q *Queue) Close() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return nil
	}
	q.closed = true
	if err := q.db.Close(); err != nil {
		return fmt.Errorf("queue: close: %w", err)
	}
	return nil
}

// update and view run a transaction unless the queue is closed, or run in the shared one.
func (q *Queue) update(fn func(*bolt.Tx) error) error {
	if q.shared != nil {
		q.sharedUpdated = true
		err := fn(q.shared)
		if err != nil {
			q.sharedFailed = true
		}
		return err
	}
	q.mu.RLock()
	defer q.mu.RUnlock()
	if q.closed {
		return queue.ErrClosed
	}
	return q.db.Update(fn)
}

// beginWrite begins a write transaction for the caller to commit or roll back (Machine's group
// commit); it holds bbolt's writer lock until then.
func (q *Queue) beginWrite() (*bolt.Tx, error) {
	q.mu.RLock()
	defer q.mu.RUnlock()
	if q.closed {
		return nil, queue.ErrClosed
	}
	return q.db.Begin(true)
}

func (q *Queue) view(fn func(*bolt.Tx) error) error {
	if q.shared != nil {
		return fn(q.shared)
	}
	q.mu.RLock()
	defer q.mu.RUnlock()
	if q.closed {
		return queue.ErrClosed
	}
	return q.db.View(fn)
}

func validPipeline(p string) error {
	if p == "" || len(p) > maxPipelineLen {
		return fmt.Errorf("%w: pipeline name must be 1..%d bytes, got %d", queue.ErrInvalid, maxPipelineLen, len(p))
	}
	return nil
}

// Enqueue adds a task to the pipeline. It returns only after the task is
// committed and fsynced: an acknowledged task survives a crash.
func (q *Queue) Enqueue(ctx context.Context, pipeline string, payload []byte) (queue.TaskID, error) {
	if err := validPipeline(pipeline); err != nil {
		return 0, err
	}
	if len(payload) > q.cfg.MaxPayloadBytes {
		return 0, fmt.Errorf("%w: payload of %d bytes exceeds MaxPayloadBytes %d", queue.ErrInvalid, len(payload), q.cfg.MaxPayloadBytes)
	}
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("queue: enqueue: %w", err)
	}
	var id queue.TaskID
	err := q.update(func(tx *bolt.Tx) error {
		var err error
		id, err = q.enqueueTx(tx, q.cfg.Now(), pipeline, payload)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("queue: enqueue to %q: %w", pipeline, err)
	}
	return id, nil
}

// enqueueTx adds a task. The payload limit is Enqueue's: the pipeline layer's own payloads
// (a merge task lists every output of a job) are bounded by MaxJobInputs instead.
func (q *Queue) enqueueTx(tx *bolt.Tx, now time.Time, pipeline string, payload []byte) (queue.TaskID, error) {
	seq, err := tx.Bucket(bTasks).NextSequence()
	if err != nil {
		return 0, err
	}
	id := queue.TaskID(seq)
	t := &Task{
		ID:         id,
		Pipeline:   pipeline,
		Payload:    bytes.Clone(payload),
		State:      StateReady,
		EnqueuedAt: now,
		ReadyAt:    now,
	}
	if err := putTask(tx, t); err != nil {
		return 0, err
	}
	return id, putIndex(tx, bReady, pipeline, indexKey(now, id))
}

// Lease claims the next ready task of the pipeline for worker: the one
// with the earliest ready time that is not leased and not backing off. It
// first redelivers or dead-letters tasks whose leases have expired. It
// returns ErrEmpty when no task is ready.
func (q *Queue) Lease(ctx context.Context, pipeline, worker string) (Lease, error) {
	if err := validPipeline(pipeline); err != nil {
		return Lease{}, err
	}
	if len(worker) > maxWorkerLen {
		return Lease{}, fmt.Errorf("%w: worker name longer than %d bytes", queue.ErrInvalid, maxWorkerLen)
	}
	if err := ctx.Err(); err != nil {
		return Lease{}, fmt.Errorf("queue: lease: %w", err)
	}
	var (
		l     Lease
		found bool
	)
	err := q.update(func(tx *bolt.Tx) error {
		now := q.cfg.Now()
		if err := q.expire(tx, pipeline, now); err != nil {
			return err
		}
		ready := tx.Bucket(bReady).Bucket([]byte(pipeline))
		if ready == nil {
			return nil
		}
		k, _ := ready.Cursor().First()
		nowKey := timeKey(now)
		if k == nil || bytes.Compare(k[:8], nowKey[:]) > 0 {
			return nil // empty, or the first task is still backing off
		}
		id := queue.TaskID(binary.BigEndian.Uint64(k[8:]))
		if err := ready.Delete(k); err != nil {
			return err
		}
		t, err := getTask(tx, id)
		if err != nil {
			return err
		}
		if t.State != StateReady {
			return fmt.Errorf("%w: task %d is %v but indexed as ready", queue.ErrCorrupt, id, t.State)
		}
		leaseID, err := tx.Bucket(bMeta).NextSequence()
		if err != nil {
			return err
		}
		t.State = StateLeased
		t.Attempts++
		t.LeaseID = leaseID
		t.LeaseExpires = now.Add(q.cfg.LeaseDuration)
		t.Worker = worker
		if err := putTask(tx, t); err != nil {
			return err
		}
		if err := putIndex(tx, bLeased, pipeline, indexKey(t.LeaseExpires, id)); err != nil {
			return err
		}
		if err := q.onLease(tx, t); err != nil {
			return err
		}
		l = leaseOf(t)
		found = true
		return nil
	})
	if err != nil {
		return Lease{}, fmt.Errorf("queue: lease from %q: %w", pipeline, err)
	}
	if !found {
		return Lease{}, queue.ErrEmpty
	}
	return l, nil
}

func leaseOf(t *Task) Lease {
	return Lease{
		ID:        t.LeaseID,
		TaskID:    t.ID,
		Pipeline:  t.Pipeline,
		Worker:    t.Worker,
		Attempt:   t.Attempts,
		Payload:   t.Payload,
		ExpiresAt: t.LeaseExpires,
	}
}

// Heartbeat extends a live lease to now + LeaseDuration and returns it
// with the new expiry.
func (q *Queue) Heartbeat(l Lease) (Lease, error) { return q.heartbeat(l, true) }

// heartbeat is Heartbeat, with the lease's worker checked only if checkWorker (see takeLeased).
func (q *Queue) heartbeat(l Lease, checkWorker bool) (Lease, error) {
	var out Lease
	err := q.update(func(tx *bolt.Tx) error {
		now := q.cfg.Now()
		t, err := q.takeLeased(tx, l, now, checkWorker)
		if err != nil {
			return err
		}
		t.LeaseExpires = now.Add(q.cfg.LeaseDuration)
		if err := putTask(tx, t); err != nil {
			return err
		}
		out = leaseOf(t)
		return putIndex(tx, bLeased, t.Pipeline, indexKey(t.LeaseExpires, t.ID))
	})
	if err != nil {
		return Lease{}, fmt.Errorf("queue: heartbeat task %d lease %d: %w", l.TaskID, l.ID, err)
	}
	return out, nil
}

// Complete stores the result and marks the task done, provided the lease
// is still the task's live lease; otherwise it returns ErrLeaseLost and
// changes nothing.
func (q *Queue) Complete(l Lease, result []byte) error { return q.complete(l, result, true) }

// complete is Complete, with the lease's worker checked only if checkWorker (see takeLeased).
func (q *Queue) complete(l Lease, result []byte, checkWorker bool) error {
	if len(result) > q.cfg.MaxPayloadBytes {
		return fmt.Errorf("%w: result of %d bytes exceeds MaxPayloadBytes %d", queue.ErrInvalid, len(result), q.cfg.MaxPayloadBytes)
	}
	err := q.update(func(tx *bolt.Tx) error {
		now := q.cfg.Now()
		t, err := q.takeLeased(tx, l, now, checkWorker)
		if err != nil {
			return err
		}
		t.State = StateDone
		t.Result = bytes.Clone(result)
		t.FinishedAt = now
		if err := putTask(tx, t); err != nil {
			return err
		}
		if err := q.onDone(tx, now, t); err != nil {
			return err
		}
		return bumpCounter(tx, t.Pipeline, kCompleted)
	})
	if err != nil {
		return fmt.Errorf("queue: complete task %d lease %d: %w", l.TaskID, l.ID, err)
	}
	return nil
}

// Fail records errMsg for this attempt and schedules a redelivery after
// the backoff, or dead-letters the task after MaxAttempts. Like Complete it
// requires the live lease.
func (q *Queue) Fail(l Lease, errMsg string) error { return q.fail(l, errMsg, true) }

// fail is Fail, with the lease's worker checked only if checkWorker (see takeLeased).
func (q *Queue) fail(l Lease, errMsg string, checkWorker bool) error {
	err := q.update(func(tx *bolt.Tx) error {
		now := q.cfg.Now()
		t, err := q.takeLeased(tx, l, now, checkWorker)
		if err != nil {
			return err
		}
		return q.retryOrBury(tx, t, now, errMsg)
	})
	if err != nil {
		return fmt.Errorf("queue: fail task %d lease %d: %w", l.TaskID, l.ID, err)
	}
	return nil
}

// takeLeased loads the lease's task, checks that l is its live lease, and takes the task off the
// leased index (the caller puts it back with a new expiry, or moves it on).
//
// A live lease is the task's current lease id held by the worker it was granted to. The id
// alone proves nothing: lease ids come from one counter and every replica holds every task's
// record, so a member can name another node's lease id and task, and the cluster layer checks
// only that the worker a forwarded command names is the forwarding node's own. Comparing the
// named worker with the one recorded at the grant closes that: a node can act only on leases
// granted to its own workers.
//
// checkWorker false leaves the worker unchecked: the machine's commands that do not ask for the
// check (Command.CheckWorker), which a cluster with voters of earlier releases does not send,
// because those replicas apply a forged command and the replicas would diverge.
func (q *Queue) takeLeased(tx *bolt.Tx, l Lease, now time.Time, checkWorker bool) (*Task, error) {
	t, err := getTask(tx, l.TaskID)
	if err != nil {
		return nil, err
	}
	switch {
	case t.State != StateLeased:
		return nil, fmt.Errorf("%w: task is %v", queue.ErrLeaseLost, t.State)
	case t.LeaseID != l.ID:
		return nil, fmt.Errorf("%w: superseded by lease %d", queue.ErrLeaseLost, t.LeaseID)
	case checkWorker && t.Worker != l.Worker:
		// The holder's name is left out: the caller is not entitled to it.
		return nil, fmt.Errorf("%w: lease %d is not held by worker %q", queue.ErrLeaseLost, l.ID, l.Worker)
	case !now.Before(t.LeaseExpires):
		return nil, fmt.Errorf("%w: expired at %v", queue.ErrLeaseLost, t.LeaseExpires)
	}
	if err := deleteIndex(tx, bLeased, t.Pipeline, indexKey(t.LeaseExpires, t.ID)); err != nil {
		return nil, err
	}
	return t, nil
}

// retryOrBury ends a failed delivery of t at time at: it records the error
// and either puts the task back after the backoff or, after MaxAttempts,
// onto the dead-letter list.
func (q *Queue) retryOrBury(tx *bolt.Tx, t *Task, at time.Time, msg string) error {
	if len(msg) > maxErrorLen {
		msg = msg[:maxErrorLen] + "..."
	}
	t.Errors = append(t.Errors, queue.AttemptError{Attempt: t.Attempts, At: at, Message: msg})
	if len(t.Errors) > maxErrors { // keep the first and the latest ones
		t.Errors = append(t.Errors[:1], t.Errors[len(t.Errors)-maxErrors+1:]...)
	}
	maxAttempts, base := q.limits(tx, t)
	if t.Attempts >= maxAttempts {
		t.State = StateDead
		t.ReadyAt = time.Time{}
		t.FinishedAt = at
		if err := putTask(tx, t); err != nil {
			return err
		}
		if err := putIndex(tx, bDead, t.Pipeline, indexKey(at, t.ID)); err != nil {
			return err
		}
		return q.onDead(tx, at, t)
	}
	cfg := q.cfg
	cfg.BackoffBase = base
	cfg.BackoffCap = max(cfg.BackoffCap, base)
	t.State = StateReady
	t.ReadyAt = at.Add(cfg.Backoff(t.Attempts))
	if err := putTask(tx, t); err != nil {
		return err
	}
	if err := putIndex(tx, bReady, t.Pipeline, indexKey(t.ReadyAt, t.ID)); err != nil {
		return err
	}
	return bumpCounter(tx, t.Pipeline, kRetries)
}

// expire ends every lease of the pipeline that expired at or before now,
// as if the worker had failed at the expiry time (so the backoff, and the
// order of redelivery, do not depend on when expiry is noticed).
func (q *Queue) expire(tx *bolt.Tx, pipeline string, now time.Time) error {
	leased := tx.Bucket(bLeased).Bucket([]byte(pipeline))
	if leased == nil {
		return nil
	}
	nowKey := timeKey(now)
	var due [][]byte
	c := leased.Cursor()
	for k, _ := c.First(); k != nil && bytes.Compare(k[:8], nowKey[:]) <= 0; k, _ = c.Next() {
		due = append(due, bytes.Clone(k))
	}
	for _, k := range due {
		if err := leased.Delete(k); err != nil {
			return err
		}
		id := queue.TaskID(binary.BigEndian.Uint64(k[8:]))
		t, err := getTask(tx, id)
		if err != nil {
			return err
		}
		if t.State != StateLeased {
			return fmt.Errorf("%w: task %d is %v but indexed as leased", queue.ErrCorrupt, id, t.State)
		}
		msg := fmt.Sprintf("lease %d held by %q expired", t.LeaseID, t.Worker)
		if err := q.retryOrBury(tx, t, t.LeaseExpires, msg); err != nil {
			return err
		}
	}
	return nil
}

// settle applies expired leases of the pipeline, taking a write
// transaction only when there is one.
func (q *Queue) settle(pipeline string) error {
	if q.passive {
		return nil
	}
	var due bool
	err := q.view(func(tx *bolt.Tx) error {
		leased := tx.Bucket(bLeased).Bucket([]byte(pipeline))
		if leased == nil {
			return nil
		}
		k, _ := leased.Cursor().First()
		nowKey := timeKey(q.cfg.Now())
		due = k != nil && bytes.Compare(k[:8], nowKey[:]) <= 0
		return nil
	})
	if err != nil || !due {
		return err
	}
	return q.update(func(tx *bolt.Tx) error { return q.expire(tx, pipeline, q.cfg.Now()) })
}

// Get returns a task's current state, after applying expired leases of its
// pipeline.
func (q *Queue) Get(id queue.TaskID) (Task, error) {
	t, err := q.get(id)
	if err == nil && !q.passive && t.State == StateLeased && !q.cfg.Now().Before(t.LeaseExpires) {
		if err = q.settle(t.Pipeline); err == nil {
			t, err = q.get(id)
		}
	}
	if err != nil {
		return Task{}, fmt.Errorf("queue: get task %d: %w", id, err)
	}
	return *t, nil
}

func (q *Queue) get(id queue.TaskID) (*Task, error) {
	var t *Task
	err := q.view(func(tx *bolt.Tx) error {
		var err error
		t, err = getTask(tx, id)
		return err
	})
	return t, err
}

// Dead returns the pipeline's dead-letter list, oldest first, each task
// with its whole error history.
func (q *Queue) Dead(pipeline string) ([]Task, error) {
	if err := validPipeline(pipeline); err != nil {
		return nil, err
	}
	var out []Task
	err := q.settle(pipeline)
	if err == nil {
		err = q.view(func(tx *bolt.Tx) error {
			dead := tx.Bucket(bDead).Bucket([]byte(pipeline))
			if dead == nil {
				return nil
			}
			return dead.ForEach(func(k, _ []byte) error {
				t, err := getTask(tx, queue.TaskID(binary.BigEndian.Uint64(k[8:])))
				if err != nil {
					return err
				}
				out = append(out, *t)
				return nil
			})
		})
	}
	if err != nil {
		return nil, fmt.Errorf("queue: dead letters of %q: %w", pipeline, err)
	}
	return out, nil
}

// Retry moves a dead-lettered task back to ready, now, with its attempt
// count reset and its error history kept.
func (q *Queue) Retry(id queue.TaskID) error {
	err := q.update(func(tx *bolt.Tx) error {
		t, err := getTask(tx, id)
		if err != nil {
			return err
		}
		if t.State != StateDead {
			return fmt.Errorf("%w: task is %v", queue.ErrNotDead, t.State)
		}
		if err := deleteIndex(tx, bDead, t.Pipeline, indexKey(t.FinishedAt, t.ID)); err != nil {
			return err
		}
		now := q.cfg.Now()
		t.State = StateReady
		t.Attempts = 0
		t.ReadyAt = now
		t.FinishedAt = time.Time{}
		if err := putTask(tx, t); err != nil {
			return err
		}
		if err := putIndex(tx, bReady, t.Pipeline, indexKey(now, t.ID)); err != nil {
			return err
		}
		return q.onRetry(tx, t)
	})
	if err != nil {
		return fmt.Errorf("queue: retry task %d: %w", id, err)
	}
	return nil
}

// Stats counts the pipeline's tasks after applying expired leases. It
// walks the pipeline's indexes, so it costs O(waiting + leased + dead).
func (q *Queue) Stats(pipeline string) (queue.Stats, error) {
	if err := validPipeline(pipeline); err != nil {
		return queue.Stats{}, err
	}
	var s queue.Stats
	err := q.settle(pipeline)
	if err == nil {
		err = q.view(func(tx *bolt.Tx) error {
			p := []byte(pipeline)
			nowKey := timeKey(q.cfg.Now())
			if b := tx.Bucket(bReady).Bucket(p); b != nil {
				_ = b.ForEach(func(k, _ []byte) error {
					s.Depth++
					if bytes.Compare(k[:8], nowKey[:]) <= 0 {
						s.Ready++
					}
					return nil
				})
			}
			if b := tx.Bucket(bLeased).Bucket(p); b != nil {
				s.Leased = b.Stats().KeyN
			}
			if b := tx.Bucket(bDead).Bucket(p); b != nil {
				s.Dead = b.Stats().KeyN
			}
			if b := tx.Bucket(bStats).Bucket(p); b != nil {
				s.Retries = counter(b.Get(kRetries))
				s.Completed = counter(b.Get(kCompleted))
			}
			return nil
		})
	}
	if err != nil {
		return queue.Stats{}, fmt.Errorf("queue: stats of %q: %w", pipeline, err)
	}
	return s, nil
}

func getTask(tx *bolt.Tx, id queue.TaskID) (*Task, error) {
	v := tx.Bucket(bTasks).Get(idKey(id))
	if v == nil {
		return nil, fmt.Errorf("%w: %d", queue.ErrNotFound, id)
	}
	t, err := decodeTask(v)
	if err != nil {
		return nil, fmt.Errorf("task %d: %w", id, err)
	}
	if t.ID != id {
		return nil, fmt.Errorf("%w: record under key %d has id %d", queue.ErrCorrupt, id, t.ID)
	}
	return t, nil
}

func putTask(tx *bolt.Tx, t *Task) error {
	return tx.Bucket(bTasks).Put(idKey(t.ID), encodeTask(t))
}

func putIndex(tx *bolt.Tx, root []byte, pipeline string, key []byte) error {
	b, err := tx.Bucket(root).CreateBucketIfNotExists([]byte(pipeline))
	if err != nil {
		return err
	}
	return b.Put(key, indexValue)
}

func deleteIndex(tx *bolt.Tx, root []byte, pipeline string, key []byte) error {
	b := tx.Bucket(root).Bucket([]byte(pipeline))
	if b == nil || b.Get(key) == nil {
		return fmt.Errorf("%w: %s index of %q lacks key %x", queue.ErrCorrupt, root, pipeline, key)
	}
	return b.Delete(key)
}

func bumpCounter(tx *bolt.Tx, pipeline string, key []byte) error {
	b, err := tx.Bucket(bStats).CreateBucketIfNotExists([]byte(pipeline))
	if err != nil {
		return err
	}
	return b.Put(key, binary.BigEndian.AppendUint64(nil, counter(b.Get(key))+1))
}

func counter(v []byte) uint64 {
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}
