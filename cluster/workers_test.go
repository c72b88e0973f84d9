package cluster

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
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
	return bang(inputs, outputName, outDir)
}

// bang is the test stages' work: the first input with a '!' appended, as outputName in outDir.
func bang(inputs []StageInput, outputName, outDir string) (string, error) {
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

// dirRunner records the work directory of each run and whether it was empty, and leaves files
// behind in it: the output, a file in a subdirectory, and on an input's first run (which
// fails) a partial output.
type dirRunner struct {
	mu       sync.Mutex
	dirs     map[string]int // work directory -> runs in it
	notEmpty []string       // what a run found in its directory
	failed   map[string]bool
}

func (r *dirRunner) RunStage(ctx context.Context, inputs []StageInput, outputName, outDir string) (string, error) {
	ents, err := os.ReadDir(outDir)
	if err != nil {
		return "", err
	}
	r.mu.Lock()
	r.dirs[outDir]++
	for _, e := range ents {
		r.notEmpty = append(r.notEmpty, outputName+" found "+e.Name())
	}
	fail := !r.failed[outputName]
	r.failed[outputName] = true
	r.mu.Unlock()
	if err := os.MkdirAll(filepath.Join(outDir, "left", "behind"), 0o755); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(outDir, "left", "behind", outputName), []byte("x"), 0o644); err != nil {
		return "", err
	}
	if fail {
		_ = os.WriteFile(filepath.Join(outDir, outputName), []byte("partial"), 0o644)
		return "", errors.New("first run fails")
	}
	return bang(inputs, outputName, outDir)
}

// TestWorkDirsReusedEmpty: a worker runs its tasks in directories it reuses (neither created
// nor removed between two runs), and each run finds its directory empty whatever the run
// before left in it, failed or not; a stopped pool leaves no directory behind.
func TestWorkDirsReusedEmpty(t *testing.T) {
	c := testConfig("dirs")
	c.StateDir = t.TempDir()
	c.Queue.Backoff = time.Millisecond
	n := startNode(t, c)
	ctx := t.Context()
	eventually(t, "define", func() error {
		return n.Queue().DefinePipeline(ctx, queue.Pipeline{Name: "d", Stages: []queue.StageDef{{Name: "bang"}}})
	})
	contents := map[string]string{}
	const tasks = 12
	for i := range tasks {
		contents[fmt.Sprintf("f%02d", i)] = fmt.Sprintf("file %d", i)
	}
	id, err := n.Queue().Submit(ctx, "d", putFiles(t, n, contents), "")
	if err != nil {
		t.Fatal(err)
	}
	r := &dirRunner{dirs: map[string]int{}, failed: map[string]bool{}}
	w, err := n.Queue().StartWorkers(WorkerConfig{Pipeline: "d", Stage: 0, Concurrency: 1, Timeout: 30 * time.Second, Runner: r})
	if err != nil {
		t.Fatal(err)
	}
	j := waitJob(t, n, id)
	if err := w.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if j.State != queue.JobDone || len(j.Outputs) != tasks {
		t.Fatalf("job %s with %d outputs, want done with %d", j.State, len(j.Outputs), tasks)
	}
	for _, o := range j.Outputs {
		if got, want := readBlob(t, n, o.SHA256), contents[o.Name]+"!"; got != want {
			t.Fatalf("output %s = %q, want %q", o.Name, got, want)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.notEmpty) > 0 {
		t.Fatalf("runs found files of earlier runs in their directory: %v", r.notEmpty)
	}
	runs := 0
	for _, k := range r.dirs {
		runs += k
	}
	// How many directories there are depends on how soon each is emptied (a run does not wait
	// for it), but runs one after another on one worker reuse them.
	if runs != 2*tasks || len(r.dirs) >= runs {

		t.Fatalf("%d runs in %d directories, want %d runs in fewer directories", runs, len(r.dirs), 2*tasks)
	}
	var left []string
	err = filepath.WalkDir(c.StateDir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() && strings.HasPrefix(d.Name(), "run-") {
			left = append(left, p)
		}
		return err
	})
	if err != nil || len(left) > 0 {
		t.Fatalf("work directories left after Stop: %v %v", left, err)
	}
}

// slowRunner holds the run of one input until release is closed; the others end at once.
type slowRunner struct {
	slow    string
	release chan struct{}
}

func (r *slowRunner) RunStage(ctx context.Context, inputs []StageInput, outputName, outDir string) (string, error) {
	if outputName == r.slow {
		select {
		case <-r.release:
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	return bang(inputs, outputName, outDir)
}

// TestWorkersShareLeasesAhead: the tasks leased ahead are the pool's: while one worker's run
// is held, the pool's other worker runs every other task, including those leased ahead while
// the held one ran (which would otherwise wait for it).
func TestWorkersShareLeasesAhead(t *testing.T) {
	c := testConfig("share")
	c.StateDir = t.TempDir()
	n := startNode(t, c)
	ctx := t.Context()
	eventually(t, "define", func() error {
		return n.Queue().DefinePipeline(ctx, queue.Pipeline{Name: "s", Stages: []queue.StageDef{{Name: "bang"}}})
	})
	contents := map[string]string{}
	const tasks = 8
	for i := range tasks {
		contents[fmt.Sprintf("f%d", i)] = fmt.Sprintf("file %d", i)
	}
	id, err := n.Queue().Submit(ctx, "s", putFiles(t, n, contents), "")
	if err != nil {
		t.Fatal(err)
	}
	r := &slowRunner{slow: "f0", release: make(chan struct{})}
	w, err := n.Queue().StartWorkers(WorkerConfig{Pipeline: "s", Stage: 0, Concurrency: 2, Timeout: 30 * time.Second, Runner: r})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = w.Stop(context.Background()) }()
	eventually(t, "every task but the held one done", func() error {
		st, err := n.Queue().QueueStats()
		if err != nil || len(st) != 1 {
			return fmt.Errorf("stats %+v %v", st, err)
		}
		if s := st[0].Stats; s.Completed != tasks-1 {
			return fmt.Errorf("%d tasks completed, %d leased; want %d completed while %s is held", s.Completed, s.Leased, tasks-1, r.slow)
		}
		return nil
	})
	close(r.release)
	if j := waitJob(t, n, id); j.State != queue.JobDone || len(j.Outputs) != tasks {
		t.Fatalf("job %s with %d outputs, want done with %d", j.State, len(j.Outputs), tasks)
	}
}
