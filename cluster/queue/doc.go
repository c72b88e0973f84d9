// Package queue is wasmpod's durable work queue for the work-queue pattern: tasks live in a
// bbolt file, grouped into named queues.
//
// Delivery is at least once. Lease hands a worker the next ready task of a queue (not leased,
// not backing off; FIFO by ready time) under a lease of Config.LeaseDuration, which Heartbeat
// extends. A lease that runs out, or a Fail, puts the task back with an exponential backoff
// (Config.BackoffBase doubling up to Config.BackoffCap), and the next delivery carries
// attempt+1. After Config.MaxAttempts deliveries the task goes to the queue's dead-letter list
// with its error history (Dead, Retry), so a poison task never blocks the tasks behind it.
//
// Every lease has an id that is never reused. Complete, Fail and Heartbeat check it: a worker
// whose lease expired or was superseded gets ErrLeaseLost and cannot commit its result.
//
// Pipelines and jobs (pipeline.go, jobs.go): a Pipeline is a chain of stages, each with its own
// queue (StageQueue). Submit creates a Job over a set of content-addressed input Files and
// enqueues its first stage; completing a task of stage k, in the same transaction, enqueues its
// output for stage k+1, or, when stage k+1 is a merge stage and every task of stage k has
// finished (done or dead), one merge task over all outputs. Jobs count each stage's expected,
// done, dead and redelivered tasks.
//
// Standalone, a Queue commits and fsyncs every change (Enqueue returns after the fsync) and
// applies expired leases lazily against Config.Now. Replicated, a Machine applies Commands from
// a replicated log (wasmpod uses the election's Raft log) at the time the leader stamped on
// them; its file is rebuilt from the log at start, and its reads never write.
//
// Records are stored in a versioned binary encoding (tasks) or JSON (jobs, pipelines); a record
// that does not decode is reported with ErrCorrupt, never guessed at. Prune removes the jobs that
// finished before a cutoff with every task they had; BlobRefs lists the files still referred to,
// for the garbage collection of a file store.
package queue
