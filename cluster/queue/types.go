package queue

import (
	"errors"
	"strconv"
	"time"
)

// Sentinel errors: an error of a queue operation wraps one of them with %w (or is a
// storage, network or context error), also when the operation ran on another node.
var (
	// ErrEmpty: Lease found no ready task in the pipeline.
	ErrEmpty = errors.New("queue: no ready task")
	// ErrLeaseLost: the lease expired or was superseded by a newer one, so
	// its holder may not heartbeat, complete or fail the task.
	ErrLeaseLost = errors.New("queue: lease lost")
	// ErrNotFound: no task with that id.
	ErrNotFound = errors.New("queue: task not found")
	// ErrNotDead: Retry on a task that is not in the dead-letter list.
	ErrNotDead = errors.New("queue: task is not dead-lettered")
	// ErrInvalid: a malformed argument or configuration.
	ErrInvalid = errors.New("queue: invalid argument")
	// ErrCorrupt: a stored record does not decode.
	ErrCorrupt = errors.New("queue: corrupt record")
	// ErrClosed: the queue has been closed.
	ErrClosed = errors.New("queue: closed")
)

// TaskID identifies a task; ids grow in enqueue order and are never reused.
type TaskID uint64

// String is the id in decimal.
func (id TaskID) String() string { return strconv.FormatUint(uint64(id), 10) }

// AttemptError is one failed delivery: a Fail or an expired lease.
type AttemptError struct {
	Attempt int       `json:"attempt"`
	At      time.Time `json:"at"`
	Message string    `json:"message"`
}

// Stats counts the tasks of one stage's queue.
type Stats struct {
	// Depth is the number of tasks waiting (ready now or backing off).
	Depth int `json:"depth"`
	// Ready is the part of Depth that can be leased now.
	Ready int `json:"ready"`
	// Leased is the number of tasks under a live lease.
	Leased int `json:"leased"`
	// Retries is the number of redeliveries scheduled so far (fails and
	// expired leases that did not dead-letter the task).
	Retries uint64 `json:"retries"`
	// Dead is the length of the dead-letter list.
	Dead int `json:"dead"`
	// Completed is the number of tasks completed so far.
	Completed uint64 `json:"completed"`
}
