package pipelines

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/cluster"
	"github.com/wasmpod/wasmpod/cluster/queue"
	"github.com/wasmpod/wasmpod/host/internal/podspec"
	"github.com/wasmpod/wasmpod/host/internal/stagerun"
	"github.com/wasmpod/wasmpod/host/internal/supervisor"
	"github.com/wasmpod/wasmpod/host/internal/supervisor/suptest"
	"github.com/wasmpod/wasmpod/internal/wasmbuild"
)

// scriptedNode plays the cluster's answers to DefinePipeline: errs[i] is the answer to the
// i-th attempt (nil once errs runs out). It starts no workers.
type scriptedNode struct {
	mu       sync.Mutex
	errs     []error
	attempts int
	defined  []string
}

func (n *scriptedNode) DefinePipeline(ctx context.Context, p queue.Pipeline) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	i := n.attempts
	n.attempts++
	if i < len(n.errs) {
		return n.errs[i]
	}
	n.defined = append(n.defined, p.Name)
	return nil
}

func (n *scriptedNode) StartWorkers(cluster.WorkerConfig) (*cluster.Workers, error) {
	return nil, errors.New("scriptedNode starts no workers")
}

func TestDefinePipelineRetries(t *testing.T) {
	noLeader := fmt.Errorf("work queue define: %w", cluster.ErrNoQuorum)
	tests := []struct {
		name         string
		errs         []error
		timeout      time.Duration
		wantAttempts int
		wantErr      []string // fragments; nil: defined
		wantIs       error
	}{
		{"at once", nil, time.Second, 1, nil, nil},
		{"after the cluster elects a leader", []error{noLeader, noLeader}, 5 * time.Second, 3, nil, nil},
		{"invalid is not retried", []error{fmt.Errorf("%w: bad", queue.ErrInvalid)}, time.Second, 1, []string{`pipeline "p"`, "bad"}, queue.ErrInvalid},
		{"closed node is not retried", []error{cluster.ErrClosed}, time.Second, 1, []string{`pipeline "p"`}, cluster.ErrClosed},
		{"no leader within the bound", []error{noLeader, noLeader, noLeader, noLeader, noLeader, noLeader}, 600 * time.Millisecond, 2,
			[]string{`pipeline "p": not defined after 600ms (2 attempts; is there a cluster leader?)`}, cluster.ErrNoQuorum},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := &scriptedNode{errs: tt.errs}
			err := definePipeline(context.Background(), n, queue.Pipeline{Name: "p", Stages: []queue.StageDef{{Name: "s"}}}, tt.timeout, slog.New(slog.DiscardHandler))
			if n.attempts != tt.wantAttempts {
				t.Errorf("%d attempts, want %d", n.attempts, tt.wantAttempts)
			}
			if tt.wantErr == nil {
				if err != nil || len(n.defined) != 1 {
					t.Fatalf("err %v, defined %v", err, n.defined)
				}
				return
			}
			if err == nil {
				t.Fatal("defined, want an error")
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if !errors.Is(err, tt.wantIs) {
				t.Errorf("error %q is not %v", err, tt.wantIs)
			}
		})
	}
}

// stagePod starts a supervisor for a pod of stage modules (the host's stage test guests) and its
// pipelines: "cmd" a WASI command, "up" and "join" the native stage guest (join merges).
func stagePod(t *testing.T, pipelines string) *supervisor.Supervisor {
	t.Helper()
	root, err := wasmbuild.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	native := wasmbuild.Go(t, filepath.Join(root, "host/testdata/stageguest"))
	command := wasmbuild.GoCommand(t, filepath.Join(root, "host/testdata/stagecmd"))
	y := fmt.Sprintf(`apiVersion: wasmpod.dev/v1
kind: Pod
metadata: {name: pipelines}
spec:
  terminationGracePeriodSeconds: 10
  modules:
    - {name: cmd, role: stage, wasm: %[1]s, resources: {timeout: 10s, concurrency: 2}}
    - {name: up, role: stage, wasm: %[2]s, resources: {timeout: 10s, concurrency: 3}}
    - {name: join, role: stage, wasm: %[2]s, config: {mode: merge}}
  pipelines:
%[3]s`, command, native, pipelines)
	return suptest.Start(t, y, "")
}

// TestPipelines runs the pod's pipelines: their worker pools, a setup that fails or is stopped,
// and the whole path on a real single-node cluster.
func TestPipelines(t *testing.T) {
	sup := stagePod(t, `    - name: shout
      maxAttempts: 2
      stages:
        - module: cmd
        - module: up
        - {module: join, merge: true}
    - {name: again, stages: [{module: up}]}
`)
	t.Run("worker configs", func(t *testing.T) { testWorkerConfig(t, sup) })
	t.Run("setup failure", func(t *testing.T) { testSetupFailure(t, sup) })
	t.Run("jobs", func(t *testing.T) { testRunJobs(t, sup) })
}

// testRunJobs runs the pod's pipelines on a real single-node cluster: the host defines them,
// starts their workers, and a submitted job goes through a command stage, a native stage and a
// native merge.
func testRunJobs(t *testing.T, sup *supervisor.Supervisor) {
	log := slog.New(slog.DiscardHandler)
	ccfg := cluster.DefaultConfig()
	ccfg.NodeName, ccfg.BindAddr, ccfg.RaftAddr, ccfg.StateDir = "solo", "127.0.0.1:0", "127.0.0.1:0", t.TempDir()
	ccfg.LogOutput = io.Discard
	node, err := cluster.Start(ccfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		node.Shutdown(ctx)
	}()
	pl := Start(node.Queue(), sup, log)
	stopped := false
	defer func() {
		if !stopped {
			pl.Stop(context.Background())
		}
	}()

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var inputs []queue.File
	for _, f := range []struct{ name, content string }{{"pkg/a.txt", "alpha"}, {"pkg/b.txt", "beta"}} {
		sha, size, err := node.Queue().PutBlob(ctx, strings.NewReader(f.content))
		if err != nil {
			t.Fatal(err)
		}
		inputs = append(inputs, queue.File{Name: f.name, SHA256: sha, Size: size})
	}
	// Submitting waits for the pipeline's definition (the setup runs in the background).
	var id queue.JobID
	for {
		id, err = node.Queue().Submit(ctx, "shout", inputs, "")
		if err == nil {
			break
		}
		select {
		case <-pl.Failed():
			t.Fatalf("setup failed: %v", pl.Err())
		case <-ctx.Done():
			t.Fatalf("submit: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	var job queue.Job
	for {
		if job, err = node.Queue().Job(id); err == nil && job.IsFinished() {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("job not finished: %+v (%v)", job, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	if job.State != queue.JobDone || len(job.Outputs) != 1 {
		t.Fatalf("job %+v", job)
	}
	r, _, err := node.Queue().OpenBlob(ctx, job.Outputs[0].SHA256)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(r)
	r.Close()
	want := "2 parts: PKG/A.TXT: ALPHA|PKG/B.TXT: BETA"
	if !bytes.Equal(got, []byte(want)) || job.Outputs[0].Name != "join" {
		t.Errorf("output %s = %q, want join = %q", job.Outputs[0].Name, got, want)
	}
	defined, err := node.Queue().Pipelines()
	if err != nil || len(defined) != 2 || defined[0].Name != "again" || defined[1].Name != "shout" || defined[1].MaxAttempts != 2 {
		t.Errorf("defined pipelines %+v (%v)", defined, err)
	}
	if ws := node.Queue().WorkerStats(); len(ws) != 4 {
		t.Errorf("%d worker pools, want one per stage (4): %+v", len(ws), ws)
	}
	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer scancel()
	if err := pl.Stop(sctx); err != nil {
		t.Fatal(err)
	}
	stopped = true
	if ws := node.Queue().WorkerStats(); len(ws) != 0 {
		t.Errorf("worker pools left after Stop: %+v", ws)
	}
	if err := pl.Stop(sctx); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

// testWorkerConfig checks each stage's worker pool: its module's concurrency and timeout, and a
// runner on that module.
func testWorkerConfig(t *testing.T, sup *supervisor.Supervisor) {
	pl := sup.Pod().Pipeline("shout")
	tests := []struct {
		stage       int
		concurrency int
		timeout     time.Duration
		module      string
	}{
		{0, 2, 10 * time.Second, "cmd"},
		{1, 3, 10 * time.Second, "up"},
		{2, podspec.DefaultConcurrency, podspec.DefaultTimeout.Std(), "join"},
	}
	for _, tt := range tests {
		cfg, err := workerConfig(sup, pl, tt.stage)
		if err != nil {
			t.Fatal(err)
		}
		r, ok := cfg.Runner.(*stagerun.Runner)
		if cfg.Pipeline != "shout" || cfg.Stage != tt.stage || cfg.Concurrency != tt.concurrency || cfg.Timeout != tt.timeout || !ok || r.Module() != tt.module {
			t.Errorf("stage %d: %+v", tt.stage, cfg)
		}
	}
}

// testSetupFailure checks that a pipeline the cluster refuses fails the setup (the host then
// stops), and that a setup stopped while waiting for a leader is no failure.
func testSetupFailure(t *testing.T, sup *supervisor.Supervisor) {
	n := &scriptedNode{errs: []error{fmt.Errorf("%w: refused", queue.ErrInvalid)}}
	pl := Start(n, sup, slog.New(slog.DiscardHandler))
	select {
	case <-pl.Failed():
	case <-time.After(10 * time.Second):
		t.Fatal("setup did not fail")
	}
	if err := pl.Err(); err == nil || !strings.Contains(err.Error(), `pipeline "shout"`) || !errors.Is(err, queue.ErrInvalid) {
		t.Errorf("Err() = %v", err)
	}
	if err := pl.Stop(context.Background()); err != nil {
		t.Errorf("Stop after a failed setup: %v", err)
	}

	// Stop during the setup ends it without a failure.
	n = &scriptedNode{errs: []error{cluster.ErrNoQuorum, cluster.ErrNoQuorum, cluster.ErrNoQuorum, cluster.ErrNoQuorum}}
	pl = Start(n, sup, slog.New(slog.DiscardHandler))
	time.Sleep(50 * time.Millisecond)
	if err := pl.Stop(context.Background()); err != nil {
		t.Errorf("Stop during the setup: %v", err)
	}
	select {
	case <-pl.Failed():
		t.Errorf("a setup stopped by Stop reported a failure: %v", pl.Err())
	default:
	}
}
