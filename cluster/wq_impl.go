package cluster

import (
	"context"
	"errors"
	"io"

	"github.com/wasmpod/wasmpod/cluster/queue"
)

var errWQ = errors.New("work queue: not wired yet")

type workQueue struct{}

// Workers is a pool of workers serving one pipeline stage on this node.
type Workers struct{}

// Stop stops taking tasks and waits (bounded by ctx) for running deliveries to finish.
func (w *Workers) Stop(ctx context.Context) error { return errWQ }

func (w *workQueue) putBlob(ctx context.Context, r io.Reader) (string, int64, error) {
	return "", 0, errWQ
}
func (w *workQueue) openBlob(ctx context.Context, sha string) (io.ReadCloser, int64, error) {
	return nil, 0, errWQ
}
func (w *workQueue) definePipeline(ctx context.Context, p queue.Pipeline) error { return errWQ }
func (w *workQueue) pipelines() ([]queue.Pipeline, error)                       { return nil, errWQ }
func (w *workQueue) submit(ctx context.Context, p string, in []queue.File) (queue.JobID, error) {
	return 0, errWQ
}
func (w *workQueue) job(id queue.JobID) (queue.Job, error)            { return queue.Job{}, errWQ }
func (w *workQueue) jobs(p string, limit int) ([]queue.Job, error)    { return nil, errWQ }
func (w *workQueue) stats() ([]queue.StageStats, error)               { return nil, errWQ }
func (w *workQueue) dead(p string) ([]queue.TaskInfo, error)          { return nil, errWQ }
func (w *workQueue) task(id queue.TaskID) (queue.TaskInfo, error)     { return queue.TaskInfo{}, errWQ }
func (w *workQueue) retry(ctx context.Context, id queue.TaskID) error { return errWQ }
func (w *workQueue) startWorkers(cfg WorkerConfig) (*Workers, error)  { return nil, errWQ }
func (w *workQueue) workerStats() []WorkerStats                       { return nil }
