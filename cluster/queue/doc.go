// Package queue is the data model of wasmpod's work queue: what a caller of cluster.Queue
// passes and gets back.
//
// A Pipeline is a chain of stages (StageDef); a merge stage runs once per job over all the
// outputs of the stage before it. A Job is one submit: content-addressed input Files pushed
// through a pipeline, with per-stage progress (StageProgress) and, once finished (JobDone, or
// JobPartial when some tasks were dead-lettered), its outputs. TaskInfo shows one task with its
// error history (AttemptError); StageStats counts one stage's queue.
//
// Delivery is at least once: a task whose lease runs out or that fails is retried with an
// exponential backoff, and after its pipeline's attempt limit it goes to the dead letters,
// from where it can be retried; a worker whose lease was lost cannot commit its result.
//
// Errors returned by queue operations wrap one of the sentinel errors (ErrInvalid,
// ErrNotFound, ...), also when the operation ran on another node. Pipeline.Validate,
// File.Validate, ValidFileName and ValidateSubmit check arguments against the limits
// (MaxJobInputs, MaxJobBytes, MaxRequestID, MaxFileName) before anything is sent.
//
// How the queue is kept (the replicated state machine, its log commands, its bbolt store and
// snapshots) is internal to package cluster.
package queue
