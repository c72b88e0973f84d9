package cluster

import (
	"context"
	"io"
	"time"

	"github.com/wasmpod/wasmpod/cluster/queue"
)

// StageInput is one input file of a stage run, on local disk.
type StageInput struct {
	// Name is the file's job-relative name (a clean relative slash path).
	Name string
	// Path is where its content is on this node (read-only: it is the blob store's copy).
	Path string
}

// StageRunner runs one delivery of a stage task. Implementations must be safe for concurrent
// use by up to WorkerConfig.Concurrency goroutines.
//
// The worker treats what a run leaves in its directory as untrusted: it stores the output only
// if its path is a clean relative path that stays below outDir, every directory on the way is a
// real directory (not a symbolic link, even one that points inside outDir) and the output is a
// regular file; otherwise the delivery fails (queue.ErrInvalid) and nothing is stored, so a stage
// cannot have the node publish a file outside its directory through a link. The output is moved
// into the blob store (copied when it has other names), and checked again as it is moved. The
// worker relies on the runner for the rest: that the stage cannot reach files outside outDir
// other than its inputs (a hard link to such a file is a regular file like any other), and that
// nothing the run started still writes below outDir once RunStage has returned.
type StageRunner interface {
	// RunStage runs the stage on inputs and writes exactly one output file below outDir (a
	// private directory, empty but for the directories of outputName); it returns that file's path relative to outDir (a clean slash
	// path). outputName is the suggested name (the single input's name, or the stage name for
	// a merge). ctx carries the task's deadline.
	RunStage(ctx context.Context, inputs []StageInput, outputName, outDir string) (output string, err error)
}

// WorkerConfig says which stage a worker pool serves and how.
type WorkerConfig struct {
	Pipeline string
	// Stage is the stage's index in the pipeline.
	Stage int
	// Concurrency is how many tasks of this stage run at once on this node.
	Concurrency int
	// Timeout is each delivery's deadline.
	Timeout time.Duration
	// Runner runs a delivery.
	Runner StageRunner
}

// WorkerStats counts one worker pool's work on this node.
type WorkerStats struct {
	Pipeline  string `json:"pipeline"`
	Stage     int    `json:"stage"`
	Running   int    `json:"running"`
	Completed uint64 `json:"completed"`
	Failed    uint64 `json:"failed"`
	LeaseLost uint64 `json:"lease_lost"`
}

// Queue is the node's API of the replicated work queue: blobs, pipelines, jobs, tasks and
// this node's workers. Safe for concurrent use.
type Queue struct{ n *Node }

// Queue returns the node's work-queue API.
func (n *Node) Queue() *Queue { return &n.queueAPI }

// PutBlob stores r's content in this node's blob store and, when the cluster has other live
// members, copies it to one of them before returning, so that the content survives the loss of
// any one node. It returns the content's hex sha256 and length.
func (q *Queue) PutBlob(ctx context.Context, r io.Reader) (sha string, size int64, err error) {
	return q.n.wq.putBlob(ctx, r)
}

// OpenBlob opens the blob with the given hex sha256, fetching it from a peer (and verifying
// it) when this node lacks it.
func (q *Queue) OpenBlob(ctx context.Context, sha string) (io.ReadCloser, int64, error) {
	return q.n.wq.openBlob(ctx, sha)
}

// DefinePipeline creates or replaces a pipeline definition in the replicated queue state.
// Jobs keep the definition they were submitted with.
func (q *Queue) DefinePipeline(ctx context.Context, p queue.Pipeline) error {
	return q.n.wq.definePipeline(ctx, p)
}

// Pipelines lists the defined pipelines (local replica), by name.
func (q *Queue) Pipelines() ([]queue.Pipeline, error) { return q.n.wq.pipelines() }

// Submit creates a job of the named pipeline over inputs, whose contents must already be in
// the blob store (PutBlob). It returns once the job and its first-stage tasks are committed
// by a quorum. requestID (at most 128 bytes; "" for a fresh one) makes it idempotent: a
// caller that got no answer (ErrNoQuorum, a timeout) and submits again with the same id gets
// the job the first submit created, if it did.
func (q *Queue) Submit(ctx context.Context, pipeline string, inputs []queue.File, requestID string) (queue.JobID, error) {
	return q.n.wq.submit(ctx, pipeline, inputs, requestID)
}

// Job returns a job from this node's replica (which may lag the leader by a few entries).
func (q *Queue) Job(id queue.JobID) (queue.Job, error) { return q.n.wq.job(id) }

// WaitJob waits until the job has finished on this node's replica (done, or failed with dead
// tasks; see queue.Job.IsFinished) and returns it. When ctx ends first it returns the job as
// it stands with ctx's error, so a caller that polls with a timeout gets its progress. It is
// woken by the replica's own apply, not by polling: it returns as soon as the job's last task
// is applied here, and costs nothing while no job finishes. Safe for concurrent use.
func (q *Queue) WaitJob(ctx context.Context, id queue.JobID) (queue.Job, error) {
	return q.n.wq.waitJob(ctx, id)
}

// Jobs lists the newest jobs (of one pipeline, or all when pipeline is ""), newest first, at
// most limit (0: 100).
func (q *Queue) Jobs(pipeline string, limit int) ([]queue.Job, error) {
	return q.n.wq.jobs(pipeline, limit)
}

// QueueStats returns the counters of every pipeline stage (local replica).
func (q *Queue) QueueStats() ([]queue.StageStats, error) { return q.n.wq.stats() }

// DeadTasks lists the dead-lettered tasks of a pipeline ("" for all), oldest first.
func (q *Queue) DeadTasks(pipeline string) ([]queue.TaskInfo, error) { return q.n.wq.dead(pipeline) }

// Task returns one task (local replica).
func (q *Queue) Task(id queue.TaskID) (queue.TaskInfo, error) { return q.n.wq.task(id) }

// RetryTask puts a dead-lettered task back in its stage queue with its attempts reset.
func (q *Queue) RetryTask(ctx context.Context, id queue.TaskID) error { return q.n.wq.retry(ctx, id) }

// StartWorkers starts a pool of workers for one pipeline stage on this node. They stop with
// Workers.Stop or when the node shuts down.
func (q *Queue) StartWorkers(cfg WorkerConfig) (*Workers, error) { return q.n.wq.startWorkers(cfg) }

// WorkerStats reports every worker pool of this node.
func (q *Queue) WorkerStats() []WorkerStats { return q.n.wq.workerStats() }
