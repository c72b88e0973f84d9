// Package queuestate is the replicated state of wasmpod's work queue: the bbolt store of tasks,
// jobs and pipelines, and the state machine that applies the replicated log's commands to it.
// The data it stores and returns (jobs, files, pipelines, task views) and its sentinel errors
// are cluster/queue's; everything about how they are kept is here, internal to cluster, so the
// formats can change behind version gates without an API change.
//
// Delivery is at least once. Lease hands a worker the next ready task of a queue (not leased,
// not backing off; FIFO by ready time) under a lease of Config.LeaseDuration, which Heartbeat
// extends. A lease that runs out, or a Fail, puts the task back with an exponential backoff
// (Config.BackoffBase doubling up to Config.BackoffCap), and the next delivery carries
// attempt+1. After Config.MaxAttempts deliveries the task goes to the queue's dead-letter list
// with its error history (Dead, Retry), so a poison task never blocks the tasks behind it.
//
// Every lease has an id that is never reused. Complete, Fail and Heartbeat check it: a worker
// whose lease expired or was superseded gets queue.ErrLeaseLost and cannot commit its result.
//
// Pipelines and jobs (jobs.go, pipeline_api.go): a pipeline is a chain of stages, each with its
// own queue (StageQueue). Submit creates a job over a set of content-addressed input files and
// enqueues its first stage; completing a task of stage k, in the same transaction, enqueues its
// output for stage k+1, or, when stage k+1 is a merge stage and every task of stage k has
// finished (done or dead), one merge task over all outputs. Jobs count each stage's expected,
// done, dead and redelivered tasks.
//
// Standalone (Open), a Queue commits and fsyncs every change (Enqueue returns after the fsync)
// and applies expired leases lazily against Config.Now; the tests and BenchmarkStore use it so.
// Replicated, a Machine applies Commands from a replicated log (cluster's replog) at the time
// the leader stamped on them; its file is rebuilt from the log at start, and its reads never
// write.
//
// Formats: commands and responses are JSON; task records a versioned binary encoding (codec.go);
// jobs and pipelines JSON records; a snapshot is "WPQ1", the bbolt file's length, the file and
// its sha256. A record that does not decode is reported with queue.ErrCorrupt, never guessed
// at. TestGoldenFormats holds all of them to files written before this package existed. Prune
// removes the jobs that finished before a cutoff with every task they had; BlobRefs lists the
// files still referred to, for the garbage collection of a file store.
package queuestate
