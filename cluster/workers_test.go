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

// gateRunner runs a stage only once its gate is open (or with a token from free), and reports
// each start on started.
type gateRunner struct {
	gate    chan struct{}
	started chan string
	free    chan struct{}
}

func (r *gateRunner) RunStage(ctx context.Context, inputs []StageInput, outputName, outDir string) (string, error) {
	r.started <- outputName
	select {
	case <-r.free:
	default:
		select {
		case <-r.gate:
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	b, err := os.ReadFile(inputs[0].Path)
	if err != nil {
		return "", err
	}
	return outputName, os.WriteFile(filepath.Join(outDir, outputName), append(b, '!'), 0o644)
}

// TestWorkersLeaseAheadAndStop: a worker holds its next task while one runs (so that the log
// write of the next lease is not between two runs), and its next two once its tasks have run
// short; a pool that stops runs the tasks it leased ahead instead of leaving them leased until
// their leases run out; every completed task's output is in the store.
func TestWorkersLeaseAheadAndStop(t *testing.T) {
	for _, tc := range []struct {
		name   string
		free   int // runs that end at once, before the one held while the pool stops
		leased int // tasks leased while the held one runs: it and those leased ahead
	}{
		{"first task held", 0, 2},
		{"after a short task", 1, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := testConfig("ahead")
			c.StateDir = t.TempDir()
			n := startNode(t, c)
			ctx := t.Context()
			eventually(t, "define", func() error {
				return n.Queue().DefinePipeline(ctx, queue.Pipeline{Name: "g", Stages: []queue.StageDef{{Name: "bang"}}})
			})
			contents := map[string]string{}
			for i := range 6 {
				contents[fmt.Sprintf("f%d", i)] = fmt.Sprintf("file %d", i)
			}
			id, err := n.Queue().Submit(ctx, "g", putFiles(t, n, contents), "")
			if err != nil {
				t.Fatal(err)
			}
			r := &gateRunner{gate: make(chan struct{}), started: make(chan string, 16), free: make(chan struct{}, tc.free)}
			for range tc.free {
				r.free <- struct{}{}
			}
			w, err := n.Queue().StartWorkers(WorkerConfig{Pipeline: "g", Stage: 0, Concurrency: 1, Timeout: 30 * time.Second, Runner: r})
			if err != nil {
				t.Fatal(err)
			}
			for range tc.free + 1 {
				<-r.started
			}
			stats := func() queue.Stats {
				st, err := n.Queue().QueueStats()
				if err != nil || len(st) != 1 {
					t.Fatalf("stats %+v %v", st, err)
				}
				return st[0].Stats
			}
			eventually(t, "the next tasks leased ahead", func() error {
				if s := stats(); s.Leased != tc.leased || s.Completed != uint64(tc.free) {
					return fmt.Errorf("%d tasks leased, %d completed, want %d leased (the running one and the next) and %d completed", s.Leased, s.Completed, tc.leased, tc.free)
				}
				return nil
			})

			stopped := make(chan error, 1)
			go func() { stopped <- w.Stop(context.Background()) }()
			time.Sleep(50 * time.Millisecond) // let Stop begin while the run is held
			close(r.gate)
			if err := <-stopped; err != nil {
				t.Fatal(err)
			}
			want := tc.free + tc.leased
			s := stats()
			if s.Leased != 0 || s.Completed != uint64(want) {
				t.Fatalf("after Stop: %d leased, %d completed; want 0 and %d (those done, the running task and those leased ahead)", s.Leased, s.Completed, want)
			}
			if ws := n.Queue().WorkerStats(); len(ws) != 0 {
				t.Fatalf("a stopped pool is still listed: %+v", ws)
			}
			j, err := n.Queue().Job(id)
			if err != nil {
				t.Fatal(err)
			}
			if len(j.Outputs) != want {
				t.Fatalf("job has %d outputs, want %d", len(j.Outputs), want)
			}
			for _, o := range j.Outputs {
				if got, want := readBlob(t, n, o.SHA256), contents[o.Name]+"!"; got != want {
					t.Fatalf("output %s = %q, want %q", o.Name, got, want)
				}
			}
		})
	}
}
