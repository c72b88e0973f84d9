// Package pipelines runs a pod's work-queue pipelines on one node: it defines each of them in
// the cluster's replicated queue and runs a worker pool per stage whose runner is the stage's
// module.
package pipelines

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/wasmpod/wasmpod/cluster"
	"github.com/wasmpod/wasmpod/cluster/queue"
	"github.com/wasmpod/wasmpod/host/internal/podspec"
	"github.com/wasmpod/wasmpod/host/internal/stagerun"
	"github.com/wasmpod/wasmpod/host/internal/supervisor"
)

// Node is what the pod's pipelines need of the cluster node (*cluster.Queue).
type Node interface {
	DefinePipeline(ctx context.Context, p queue.Pipeline) error
	StartWorkers(cfg cluster.WorkerConfig) (*cluster.Workers, error)
}

var _ Node = (*cluster.Queue)(nil)

// Timings of the pod's pipelines.
const (
	// pipelineDefineTimeout bounds how long a pipeline definition is retried while the cluster
	// has no Raft leader (the first nodes of a cluster wait for a quorum to join): a cluster
	// without a leader for a minute is broken, not slow.
	pipelineDefineTimeout = time.Minute
	// pipelineRetryMin and pipelineRetryMax bound the delay between two attempts (doubling):
	// a leader elected meanwhile is noticed within seconds without spinning.
	pipelineRetryMin = 250 * time.Millisecond
	pipelineRetryMax = 5 * time.Second
)

// Set runs the pod's work-queue pipelines on this node: it defines each of them in the
// cluster's replicated queue, then starts a worker pool per stage whose runner is the stage's
// module. The setup runs in the background (a definition may wait for a leader); Failed is
// closed if it gives up, and Stop stops the workers.
type Set struct {
	log    *slog.Logger
	cancel context.CancelFunc
	done   chan struct{} // closed when the setup has returned
	failed chan struct{} // closed when the setup failed; err says why
	err    error

	mu      sync.Mutex
	workers []*cluster.Workers // started so far; Stop waits for the setup before reading them
}

// Start starts the setup of the pod's pipelines; with none, it does nothing.
func Start(node Node, sup *supervisor.Supervisor, log *slog.Logger) *Set {
	ctx, cancel := context.WithCancel(context.Background())
	p := &Set{log: log, cancel: cancel, done: make(chan struct{}), failed: make(chan struct{})}
	specs := sup.Pod().Spec.Pipelines
	go func() {
		defer close(p.done)
		if err := p.setup(ctx, node, sup, specs); err != nil && ctx.Err() == nil {
			p.err = err
			close(p.failed)
		}
	}()
	return p
}

// Failed is closed when the setup gave up; Err then says why.
func (p *Set) Failed() <-chan struct{} { return p.failed }

// Err is why the setup failed (valid once Failed is closed).
func (p *Set) Err() error { return p.err }

func (p *Set) setup(ctx context.Context, node Node, sup *supervisor.Supervisor, specs []podspec.Pipeline) error {
	for i := range specs {
		if err := definePipeline(ctx, node, specs[i].Queue(), pipelineDefineTimeout, p.log); err != nil {
			return err
		}
	}
	for i := range specs {
		pl := &specs[i]
		for k := range pl.Stages {
			if err := ctx.Err(); err != nil {
				return err
			}
			cfg, err := workerConfig(sup, pl, k)
			if err != nil {
				return err
			}
			w, err := node.StartWorkers(cfg)
			if err != nil {
				return fmt.Errorf("pipeline %q stage %d (module %q): starting workers: %w", pl.Name, k, pl.Stages[k].Module, err)
			}
			p.mu.Lock()
			p.workers = append(p.workers, w)
			p.mu.Unlock()
			p.log.Info("pipeline stage workers started", "pipeline", pl.Name, "stage", k, "module", pl.Stages[k].Module,
				"merge", pl.Stages[k].Merge, "concurrency", cfg.Concurrency, "timeout", cfg.Timeout.String())
		}
	}
	return nil
}

// workerConfig is the worker pool of stage k of a pipeline: as many workers as the stage
// module's resources.concurrency, each delivery's deadline its resources.timeout.
func workerConfig(sup *supervisor.Supervisor, pl *podspec.Pipeline, k int) (cluster.WorkerConfig, error) {
	st := pl.Stages[k]
	m := sup.Pod().Module(st.Module)
	if m == nil {
		return cluster.WorkerConfig{}, fmt.Errorf("pipeline %q stage %d: no module %q", pl.Name, k, st.Module)
	}
	r, err := stagerun.New(sup, st.Module, st.Merge)
	if err != nil {
		return cluster.WorkerConfig{}, fmt.Errorf("pipeline %q stage %d: %w", pl.Name, k, err)
	}
	return cluster.WorkerConfig{
		Pipeline:    pl.Name,
		Stage:       k,
		Concurrency: int(m.Resources.Concurrency),
		Timeout:     m.Resources.Timeout.Std(),
		Runner:      r,
	}, nil
}

// definePipeline defines p in the cluster's queue, retrying (with a doubling delay) while the
// cluster has no leader, for at most timeout. An invalid definition or a closed node is not
// retried.
func definePipeline(ctx context.Context, node Node, p queue.Pipeline, timeout time.Duration, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	delay := pipelineRetryMin
	for attempt := 1; ; attempt++ {
		err := node.DefinePipeline(ctx, p)
		switch {
		case err == nil:
			log.Info("pipeline defined", "pipeline", p.Name, "stages", len(p.Stages), "define_tries", attempt)
			return nil
		case errors.Is(err, queue.ErrInvalid) || errors.Is(err, cluster.ErrInvalid) || errors.Is(err, cluster.ErrClosed):
			return fmt.Errorf("pipeline %q: %w", p.Name, err)
		}
		log.Warn("pipeline not defined yet, retrying", "pipeline", p.Name, "attempt", attempt, "in", delay.String(), "err", err)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			if ctx.Err() == context.DeadlineExceeded {
				return fmt.Errorf("pipeline %q: not defined after %s (%d attempts; is there a cluster leader?): %w", p.Name, timeout, attempt, err)
			}
			return fmt.Errorf("pipeline %q: %w", p.Name, ctx.Err())
		case <-t.C:
		}
		delay = min(2*delay, pipelineRetryMax)
	}
}

// Stop ends the setup if it is still going and stops every worker pool, waiting (bounded by
// ctx) for the deliveries in flight; past ctx they are cut, and their tasks are redelivered
// after their leases. Idempotent.
func (p *Set) Stop(ctx context.Context) error {
	p.cancel()
	<-p.done
	p.mu.Lock()
	workers := p.workers
	p.workers = nil
	p.mu.Unlock()
	var wg sync.WaitGroup
	errs := make([]error, len(workers))
	for i, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = w.Stop(ctx)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}
