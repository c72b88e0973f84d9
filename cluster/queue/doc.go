// Package queue is wasmpod's embedded, durable work queue for the
// work-queue pattern on a single node: tasks live in a bbolt file, and an
// Enqueue returns only after the transaction holding the task has been
// committed and fsynced.
//
// Delivery is at least once. Lease hands a worker the next ready task of a
// pipeline (not leased, not backing off; FIFO by ready time) under a lease
// of Config.LeaseDuration, which Heartbeat extends. A lease that runs out,
// or a Fail, puts the task back with an exponential backoff
// (Config.BackoffBase doubling up to Config.BackoffCap), and the next
// delivery carries attempt+1. After Config.MaxAttempts deliveries the task
// goes to the pipeline's dead-letter list with its whole error history
// (Dead, Retry), so a poison task never blocks the tasks behind it.
//
// Every lease has an id that is never reused. Complete, Fail and Heartbeat
// check it: a worker whose lease expired or was superseded gets
// ErrLeaseLost and cannot commit its result.
//
// Expiry is evaluated lazily, at Lease, Stats, Dead and Get time, against
// Config.Now; there is no background goroutine. Tests inject the clock.
//
// Records are stored in a versioned binary encoding; a record that does
// not decode is reported with ErrCorrupt, never guessed at. Done tasks are
// kept (Get returns their result) until the file is removed: there is no
// retention policy yet.
package queue
