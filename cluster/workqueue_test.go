package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/cluster/internal/queuestate"
	"github.com/wasmpod/wasmpod/cluster/queue"
)

// funcRunner runs a stage with a Go function over the inputs' contents: the host's runners
// run wasm; here the queue's plumbing is under test.
type funcRunner struct {
	mu    sync.Mutex
	runs  map[string]int // output name -> runs
	apply func(inputs map[string][]byte) ([]byte, error)
}

func (r *funcRunner) RunStage(ctx context.Context, inputs []StageInput, outputName, outDir string) (string, error) {
	in := map[string][]byte{}
	for _, f := range inputs {
		b, err := os.ReadFile(f.Path)
		if err != nil {
			return "", err
		}
		in[f.Name] = b
	}
	out, err := r.apply(in)
	r.mu.Lock()
	if r.runs == nil {
		r.runs = map[string]int{}
	}
	r.runs[outputName]++
	r.mu.Unlock()
	if err != nil {
		return "", err
	}
	p := filepath.Join(outDir, filepath.FromSlash(outputName))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return "", err
	}
	return outputName, os.WriteFile(p, out, 0o644)
}

func upper(in map[string][]byte) ([]byte, error) {
	for _, b := range in {
		if bytes.Contains(b, []byte("poison")) {
			return nil, errors.New("poisoned input")
		}
		return bytes.ToUpper(b), nil
	}
	return nil, errors.New("no input")
}

func concat(in map[string][]byte) ([]byte, error) {
	names := make([]string, 0, len(in))
	for n := range in {
		names = append(names, n)
	}
	sort.Strings(names)
	var b bytes.Buffer
	for _, n := range names {
		fmt.Fprintf(&b, "%s=%s;", n, in[n])
	}
	return b.Bytes(), nil
}

func putFiles(t *testing.T, n *Node, contents map[string]string) []queue.File {
	t.Helper()
	var files []queue.File
	for name, c := range contents {
		sha, size, err := n.Queue().PutBlob(t.Context(), strings.NewReader(c))
		if err != nil {
			t.Fatalf("put %s: %v", name, err)
		}
		files = append(files, queue.File{Name: name, SHA256: sha, Size: size})
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Name < files[j].Name })
	return files
}

func waitJob(t *testing.T, n *Node, id queue.JobID) queue.Job {
	t.Helper()
	var j queue.Job
	eventually(t, "job finished", func() (err error) {
		if j, err = n.Queue().Job(id); err != nil {
			return err
		}
		if !j.IsFinished() {
			return fmt.Errorf("job %d: %s %+v", id, j.State, j.Stages)
		}
		return nil
	})
	return j
}

func readBlob(t *testing.T, n *Node, sha string) string {
	t.Helper()
	rc, _, err := n.Queue().OpenBlob(t.Context(), sha)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, _ := io.ReadAll(rc)
	return string(b)
}

func TestWorkQueueSingleNode(t *testing.T) {
	c := testConfig("solo")
	c.StateDir = t.TempDir()
	c.Queue.Backoff = 10 * time.Millisecond
	n := startNode(t, c)
	ctx := t.Context()
	p := queue.Pipeline{Name: "up", MaxAttempts: 2, Stages: []queue.StageDef{{Name: "upper"}, {Name: "join", Merge: true}}}
	eventually(t, "define", func() error { return n.Queue().DefinePipeline(ctx, p) })
	if _, err := n.Queue().Submit(ctx, "nope", []queue.File{{Name: "a", SHA256: strings.Repeat("0", 64)}}, ""); !errors.Is(err, queue.ErrNotFound) {
		t.Fatalf("submit to an undefined pipeline: %v", err)
	}
	up, join := &funcRunner{apply: upper}, &funcRunner{apply: concat}
	for i, r := range []StageRunner{up, join} {
		if _, err := n.Queue().StartWorkers(WorkerConfig{Pipeline: "up", Stage: i, Concurrency: 2, Timeout: 10 * time.Second, Runner: r}); err != nil {
			t.Fatal(err)
		}
	}
	files := putFiles(t, n, map[string]string{"x/a": "alpha", "y/b": "beta", "z/c": "poison"})
	id, err := n.Queue().Submit(ctx, "up", files, "request-1")
	if err != nil {
		t.Fatal(err)
	}
	if again, err := n.Queue().Submit(ctx, "up", files, "request-1"); err != nil || again != id {
		t.Fatalf("the same submit again: job %d, %v; want job %d", again, err, id)
	}
	j := waitJob(t, n, id)
	if j.State != queue.JobPartial || len(j.Outputs) != 1 {
		t.Fatalf("job %+v", j)
	}
	if got := readBlob(t, n, j.Outputs[0].SHA256); got != "x/a=ALPHA;y/b=BETA;" {
		t.Fatalf("merged output %q", got)
	}
	dead, err := n.Queue().DeadTasks("up")
	if err != nil || len(dead) != 1 || dead[0].Attempts != 2 || len(dead[0].Errors) != 2 || !strings.Contains(dead[0].Errors[1].Message, "poisoned") {
		t.Fatalf("dead letters %+v %v", dead, err)
	}
	st, err := n.Queue().QueueStats()
	if err != nil || len(st) != 2 || st[0].Completed != 2 || st[0].Dead != 1 || st[1].Completed != 1 {
		t.Fatalf("stats %+v %v", st, err)
	}
	ws := n.Queue().WorkerStats()
	if len(ws) != 2 || ws[0].Completed != 2 || ws[0].Failed != 2 {
		t.Fatalf("worker stats %+v", ws)
	}
}

func TestWorkQueueThreeNodes(t *testing.T) {
	a := startNode(t, testConfig("a"))
	b := startNode(t, testConfig("b", a.GossipAddr()))
	c := startNode(t, testConfig("c", a.GossipAddr()))
	nodes := []*Node{a, b, c}
	eventually(t, "three voters", func() error {
		if v := a.Status().Voters; len(v) != 3 {
			return fmt.Errorf("voters %v", v)
		}
		return nil
	})
	ctx := t.Context()
	p := queue.Pipeline{Name: "up", Stages: []queue.StageDef{{Name: "upper"}}}
	eventually(t, "define", func() error { return c.Queue().DefinePipeline(ctx, p) })
	// Only node b runs the stage: every input travels to it, every output back.
	if _, err := b.Queue().StartWorkers(WorkerConfig{Pipeline: "up", Stage: 0, Concurrency: 2, Timeout: 10 * time.Second, Runner: &funcRunner{apply: upper}}); err != nil {
		t.Fatal(err)
	}
	contents := map[string]string{}
	for i := range 20 {
		contents[fmt.Sprintf("f%02d", i)] = fmt.Sprintf("file number %d", i)
	}
	files := putFiles(t, c, contents)
	id, err := c.Queue().Submit(ctx, "up", files, "")
	if err != nil {
		t.Fatal(err)
	}
	j := waitJob(t, a, id)
	if j.State != queue.JobDone || len(j.Outputs) != 20 {
		t.Fatalf("job %+v", j)
	}
	for i, o := range j.Outputs {
		if got, want := readBlob(t, nodes[i%3], o.SHA256), strings.ToUpper(contents[o.Name]); got != want {
			t.Fatalf("output %s via node %d: %q, want %q", o.Name, i%3, got, want)
		}
	}
}

func TestWorkQueueRetention(t *testing.T) {
	c := testConfig("solo")
	c.StateDir = t.TempDir()
	c.Queue.Retention = 300 * time.Millisecond
	c.Queue.BlobGrace = 300 * time.Millisecond
	n := startNode(t, c)
	ctx := t.Context()
	eventually(t, "define", func() error {
		return n.Queue().DefinePipeline(ctx, queue.Pipeline{Name: "up", Stages: []queue.StageDef{{Name: "upper"}}})
	})
	if _, err := n.Queue().StartWorkers(WorkerConfig{Pipeline: "up", Stage: 0, Concurrency: 1, Timeout: 10 * time.Second, Runner: &funcRunner{apply: upper}}); err != nil {
		t.Fatal(err)
	}
	files := putFiles(t, n, map[string]string{"a": "alpha"})
	id, err := n.Queue().Submit(ctx, "up", files, "")
	if err != nil {
		t.Fatal(err)
	}
	j := waitJob(t, n, id)
	out := j.Outputs[0].SHA256
	if got := readBlob(t, n, out); got != "ALPHA" {
		t.Fatalf("output %q", got)
	}
	// Past the retention the job goes, and past the grace its files do.
	eventually(t, "job pruned", func() error {
		if _, err := n.Queue().Job(id); !errors.Is(err, queue.ErrNotFound) {
			return fmt.Errorf("job still there: %v", err)
		}
		return nil
	})
	eventually(t, "files collected", func() error {
		for _, sha := range []string{files[0].SHA256, out} {
			if _, _, err := n.Queue().OpenBlob(ctx, sha); !errors.Is(err, queue.ErrNotFound) {
				return fmt.Errorf("blob %s: %v", sha, err)
			}
		}
		return nil
	})
}

// TestLeaseGate: concurrent leases of one queue on the leader are proposed together only for
// as many tasks as are ready: each ready task goes to exactly one of them, and the others
// wait without writing a lease command that finds nothing.
func TestLeaseGate(t *testing.T) {
	cases := []struct{ ready, leasers int }{
		{ready: 1, leasers: 4},
		{ready: 3, leasers: 3},
		{ready: 4, leasers: 2},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%d ready, %d leasers", tc.ready, tc.leasers), func(t *testing.T) {
			c := testConfig("solo")
			c.StateDir = t.TempDir() // durable: each log write waits for an fsync, so leases overlap
			n := startNode(t, c)
			ctx := t.Context()
			p := queue.Pipeline{Name: "gate", Stages: []queue.StageDef{{Name: "s"}}}
			eventually(t, "define", func() error { return n.Queue().DefinePipeline(ctx, p) })
			contents := map[string]string{}
			for i := range tc.ready {
				contents[fmt.Sprintf("in/%d", i)] = fmt.Sprintf("input %d", i)
			}
			if _, err := n.Queue().Submit(ctx, "gate", putFiles(t, n, contents), ""); err != nil {
				t.Fatal(err)
			}
			before := n.wq.m.Applied()
			var (
				wg    sync.WaitGroup
				mu    sync.Mutex
				tasks = map[queue.TaskID]int{}
				empty int
			)
			for i := range tc.leasers {
				wg.Go(func() {
					cmd := queuestate.Command{Op: queuestate.OpLease, Name: queuestate.StageQueue("gate", 0), Worker: fmt.Sprintf("solo/gate/0/%d", i)}
					resp, err := n.wq.do(ctx, cmd, 300*time.Millisecond)
					mu.Lock()
					defer mu.Unlock()
					switch {
					case errors.Is(err, queue.ErrEmpty):
						empty++
					case err != nil:
						t.Errorf("lease %d: %v", i, err)
					default:
						tasks[resp.Lease.TaskID]++
					}
				})
			}
			wg.Wait()
			granted := min(tc.ready, tc.leasers)
			if len(tasks) != granted || empty != tc.leasers-granted {
				t.Fatalf("%d tasks leased (%v), %d leasers found none; want %d and %d", len(tasks), tasks, empty, granted, tc.leasers-granted)
			}
			for id, k := range tasks {
				if k != 1 {
					t.Fatalf("task %d leased %d times", id, k)
				}
			}
			if got := n.wq.m.Applied() - before; got != uint64(granted) {
				t.Fatalf("%d queue commands for %d leases: lease commands that found nothing were written", got, granted)
			}
		})
	}
}

// TestWaitJob: WaitJob returns a running job with ctx's error when ctx ends first, and the
// finished job as soon as its last task is applied, on every node's replica;
// waiters of an unknown job get ErrNotFound at once.
func TestWaitJob(t *testing.T) {
	a := startNode(t, testConfig("a"))
	b := startNode(t, testConfig("b", a.GossipAddr()))
	c := startNode(t, testConfig("c", a.GossipAddr()))
	eventually(t, "three voters", func() error {
		if v := a.Status().Voters; len(v) != 3 {
			return fmt.Errorf("voters %v", v)
		}
		return nil
	})
	ctx := t.Context()
	p := queue.Pipeline{Name: "w", Stages: []queue.StageDef{{Name: "bang"}}}
	eventually(t, "define", func() error { return a.Queue().DefinePipeline(ctx, p) })
	r := &gateRunner{gate: make(chan struct{}), started: make(chan string, 8), free: make(chan struct{})}
	if _, err := a.Queue().StartWorkers(WorkerConfig{Pipeline: "w", Stage: 0, Concurrency: 1, Timeout: time.Minute, Runner: r}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Queue().WaitJob(ctx, 999); !errors.Is(err, queue.ErrNotFound) {
		t.Fatalf("WaitJob of an unknown job: %v, want ErrNotFound", err)
	}
	id, err := a.Queue().Submit(ctx, "w", putFiles(t, a, map[string]string{"in": "x"}), "")
	if err != nil {
		t.Fatal(err)
	}
	<-r.started
	eventually(t, "the job on every replica", func() error {
		for _, n := range []*Node{b, c} {
			if _, err := n.Queue().Job(id); err != nil {
				return err
			}
		}
		return nil
	})
	for _, n := range []*Node{a, b, c} {
		wctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		j, err := n.Queue().WaitJob(wctx, id)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) || j.ID != id || j.IsFinished() {
			t.Fatalf("%s: WaitJob of a running job until ctx ends: %+v, %v; want the running job and DeadlineExceeded", n.Name(), j, err)
		}
	}
	type got struct {
		j   queue.Job
		err error
	}
	waits := make(chan got, 3)
	for _, n := range []*Node{a, b, c} {
		go func() {
			j, err := n.Queue().WaitJob(ctx, id)
			waits <- got{j, err}
		}()
	}
	time.Sleep(100 * time.Millisecond) // both wait
	close(r.gate)
	for range 3 {
		g := <-waits
		if g.err != nil || g.j.State != queue.JobDone || len(g.j.Outputs) != 1 {
			t.Fatalf("WaitJob: %+v, %v; want the job done with its output", g.j, g.err)
		}
	}
}
