package cluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/cluster/queue"
)

// gateRunner runs a stage only once its gate is open, and reports each start on started.
type gateRunner struct {
	gate    chan struct{}
	started chan string
}

func (r *gateRunner) RunStage(ctx context.Context, inputs []StageInput, outputName, outDir string) (string, error) {
	r.started <- outputName
	select {
	case <-r.gate:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	b, err := os.ReadFile(inputs[0].Path)
	if err != nil {
		return "", err
	}
	return outputName, os.WriteFile(filepath.Join(outDir, outputName), append(b, '!'), 0o644)
}

// TestWorkersLeaseAheadAndStop: a worker holds its next task while one runs (so that the log
// write of the next lease is not between two runs), and a pool that stops runs the task it
// leased ahead instead of leaving it leased until its lease runs out; every completed task's
// output is in the store.
func TestWorkersLeaseAheadAndStop(t *testing.T) {
	c := testConfig("ahead")
	c.StateDir = t.TempDir()
	n := startNode(t, c)
	ctx := t.Context()
	eventually(t, "define", func() error {
		return n.DefinePipeline(ctx, queue.Pipeline{Name: "g", Stages: []queue.StageDef{{Name: "bang"}}})
	})
	contents := map[string]string{}
	for i := range 6 {
		contents[fmt.Sprintf("f%d", i)] = fmt.Sprintf("file %d", i)
	}
	id, err := n.Submit(ctx, "g", putFiles(t, n, contents), "")
	if err != nil {
		t.Fatal(err)
	}
	r := &gateRunner{gate: make(chan struct{}), started: make(chan string, 16)}
	w, err := n.StartWorkers(WorkerConfig{Pipeline: "g", Stage: 0, Concurrency: 1, Timeout: 30 * time.Second, Runner: r})
	if err != nil {
		t.Fatal(err)
	}
	<-r.started
	stats := func() queue.Stats {
		st, err := n.QueueStats()
		if err != nil || len(st) != 1 {
			t.Fatalf("stats %+v %v", st, err)
		}
		return st[0].Stats
	}
	eventually(t, "the next task leased ahead", func() error {
		if s := stats(); s.Leased != 2 {
			return fmt.Errorf("%d tasks leased, want the running one and the next", s.Leased)
		}
		return nil
	})

	stopped := make(chan error, 1)
	go func() { stopped <- w.Stop(context.Background()) }()
	time.Sleep(50 * time.Millisecond) // let Stop begin while the first run is held
	close(r.gate)
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	s := stats()
	if s.Leased != 0 || s.Completed != 2 {
		t.Fatalf("after Stop: %d leased, %d completed; want 0 and 2 (the running task and the one leased ahead)", s.Leased, s.Completed)
	}
	if ws := n.WorkerStats(); len(ws) != 0 {
		t.Fatalf("a stopped pool is still listed: %+v", ws)
	}
	j, err := n.Job(id)
	if err != nil {
		t.Fatal(err)
	}
	if len(j.Outputs) != 2 {
		t.Fatalf("job has %d outputs, want 2", len(j.Outputs))
	}
	for _, o := range j.Outputs {
		if got, want := readBlob(t, n, o.SHA256), contents[o.Name]+"!"; got != want {
			t.Fatalf("output %s = %q, want %q", o.Name, got, want)
		}
	}
}
