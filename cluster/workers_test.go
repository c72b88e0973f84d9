package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
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

// dirRunner records the work directory of each run and whether it was empty but for the
// directories of the output's name, and leaves files behind in it: the output, a file in a
// public and in a private subdirectory, and on an input's first run (which fails) a partial
// output.
type dirRunner struct {
	mu       sync.Mutex
	dirs     map[string]int // work directory -> runs in it
	notEmpty []string       // what a run found in its directory
	failed   map[string]bool
}

func (r *dirRunner) RunStage(ctx context.Context, inputs []StageInput, outputName, outDir string) (string, error) {
	want := map[string]bool{}
	for d := path.Dir(outputName); d != "."; d = path.Dir(d) {
		want[d] = true
	}
	var found []string
	err := filepath.WalkDir(outDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == outDir {
			return err
		}
		rel, _ := filepath.Rel(outDir, p)
		if !d.IsDir() || !want[filepath.ToSlash(rel)] {
			found = append(found, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	r.mu.Lock()
	r.dirs[outDir]++
	for _, f := range found {
		r.notEmpty = append(r.notEmpty, outputName+" found "+f)
	}
	fail := !r.failed[outputName]
	r.failed[outputName] = true
	r.mu.Unlock()
	if err := os.MkdirAll(filepath.Join(outDir, "left", "behind"), 0o755); err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Join(outDir, "private", "dir"), 0o700); err != nil {
		return "", err
	}
	for _, d := range []string{"left/behind", "private/dir"} {
		if err := os.WriteFile(filepath.Join(outDir, filepath.FromSlash(d), path.Base(outputName)), []byte("x"), 0o644); err != nil {
			return "", err
		}
	}
	if fail {
		_ = os.WriteFile(filepath.Join(outDir, filepath.FromSlash(outputName)), []byte("partial"), 0o644)
		return "", errors.New("first run fails")
	}
	return bang(inputs, outputName, outDir)
}

// TestWorkDirsReusedEmpty: a worker runs its tasks in directories it reuses (neither created
// nor removed between two runs), and each run finds its directory empty but for the
// directories of its output's name (kept from earlier runs and renamed into place), whatever
// the run before left in it, failed or not; a stopped pool leaves no directory behind.
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
		name := fmt.Sprintf("f%02d", i)
		if i%3 > 0 {
			name = fmt.Sprintf("d%d/sub%d/%s", i%2, i%3, name)
		}
		contents[name] = fmt.Sprintf("file %d", i)
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
		if err == nil && d.IsDir() && (strings.HasPrefix(d.Name(), "run-") || strings.HasPrefix(d.Name(), "spare-")) {
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

// linkCase is one hostile output of TestWorkerOutputThroughLinkNotMoved: make builds it in a
// run's work directory (outside is the case's own directory outside it, holding the file
// "secret") and returns the output path the run reports.
type linkCase struct {
	name string
	make func(work, outside string) (string, error)
	want string // in the task's error
}

// linkRunner runs the stage of each input as its case says; an input without a case is run
// as bang does.
type linkRunner struct {
	cases   map[string]linkCase
	outside string
}

func (r *linkRunner) RunStage(ctx context.Context, inputs []StageInput, outputName, outDir string) (string, error) {
	c, ok := r.cases[outputName]
	if !ok {
		return bang(inputs, outputName, outDir)
	}
	return c.make(outDir, filepath.Join(r.outside, c.name))
}

// relLink makes a symbolic link at link to target, written relative to the link's directory.
func relLink(target, link string) error {
	rel, err := filepath.Rel(filepath.Dir(link), target)
	if err != nil {
		return err
	}
	return os.Symlink(rel, link)
}

// TestWorkerOutputThroughLinkNotMoved: a stage that makes its output, or a directory on the
// way to it, a symbolic link (to a file outside its work directory, or even inside it), or
// names an output outside its directory, has its task fail with an error naming the output;
// the files the links reach are left in place, unchanged, and nothing of theirs is stored.
func TestWorkerOutputThroughLinkNotMoved(t *testing.T) {
	const refusedLink = "is a symbolic link"
	cases := []linkCase{
		{"file-abs", func(work, out string) (string, error) {
			return "out", os.Symlink(filepath.Join(out, "secret"), filepath.Join(work, "out"))
		}, `"out" ` + refusedLink},
		{"file-rel", func(work, out string) (string, error) {
			return "out", relLink(filepath.Join(out, "secret"), filepath.Join(work, "out"))
		}, `"out" ` + refusedLink},
		{"dir-abs", func(work, out string) (string, error) {
			return "d/secret", os.Symlink(out, filepath.Join(work, "d"))
		}, `"d" ` + refusedLink},
		{"dir-rel", func(work, out string) (string, error) {
			return "d/secret", relLink(out, filepath.Join(work, "d"))
		}, `"d" ` + refusedLink},
		{"deep-dir", func(work, out string) (string, error) {
			if err := os.MkdirAll(filepath.Join(work, "a", "b"), 0o755); err != nil {
				return "", err
			}
			return "a/b/c/secret", os.Symlink(out, filepath.Join(work, "a", "b", "c"))
		}, `"a/b/c" ` + refusedLink},
		{"file-inside", func(work, _ string) (string, error) {
			if err := os.WriteFile(filepath.Join(work, "inner"), []byte("inner"), 0o644); err != nil {
				return "", err
			}
			return "out", os.Symlink("inner", filepath.Join(work, "out"))
		}, `"out" ` + refusedLink},
		{"dir-inside", func(work, _ string) (string, error) {
			if err := os.Mkdir(filepath.Join(work, "real"), 0o755); err != nil {
				return "", err
			}
			if err := os.WriteFile(filepath.Join(work, "real", "out"), []byte("inner"), 0o644); err != nil {
				return "", err
			}
			return "d/out", os.Symlink(filepath.Join(work, "real"), filepath.Join(work, "d"))
		}, `"d" ` + refusedLink},
		{"directory", func(work, _ string) (string, error) {
			return "out", os.Mkdir(filepath.Join(work, "out"), 0o755)
		}, `"out" is not a regular file`},
		{"absolute", func(_, out string) (string, error) {
			return filepath.ToSlash(filepath.Join(out, "secret")), nil
		}, "is absolute"},
		{"dotdot", func(work, out string) (string, error) {
			rel, err := filepath.Rel(work, filepath.Join(out, "secret"))
			return filepath.ToSlash(rel), err
		}, "not a clean relative path"},
	}
	outside := t.TempDir() // on the store's file system: a rename would take the file away
	type secret struct {
		path, content string
		fi            os.FileInfo
	}
	secrets := map[string]secret{}
	contents := map[string]string{"plain": "plain input"}
	byName := map[string]linkCase{}
	for _, c := range cases {
		dir := filepath.Join(outside, c.name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		s := secret{path: filepath.Join(dir, "secret"), content: "secret of " + c.name}
		if err := os.WriteFile(s.path, []byte(s.content), 0o600); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Lstat(s.path)
		if err != nil {
			t.Fatal(err)
		}
		s.fi = fi
		secrets[c.name] = s
		contents[c.name] = "input of " + c.name
		byName[c.name] = c
	}

	c := testConfig("links")
	c.StateDir = t.TempDir()
	n := startNode(t, c)
	ctx := t.Context()
	eventually(t, "define", func() error {
		return n.Queue().DefinePipeline(ctx, queue.Pipeline{Name: "l", MaxAttempts: 1, Stages: []queue.StageDef{{Name: "out"}}})
	})
	id, err := n.Queue().Submit(ctx, "l", putFiles(t, n, contents), "")
	if err != nil {
		t.Fatal(err)
	}
	w, err := n.Queue().StartWorkers(WorkerConfig{Pipeline: "l", Stage: 0, Concurrency: 2, Timeout: 30 * time.Second,
		Runner: &linkRunner{cases: byName, outside: outside}})
	if err != nil {
		t.Fatal(err)
	}
	j := waitJob(t, n, id)
	if err := w.Stop(ctx); err != nil {
		t.Fatal(err)
	}

	// The plain run's output is stored: the worker works.
	if len(j.Outputs) != 1 || j.Outputs[0].Name != "plain" || readBlob(t, n, j.Outputs[0].SHA256) != "plain input!" {
		t.Errorf("job %s with outputs %+v, want only plain's", j.State, j.Outputs)
	}
	dead, err := n.Queue().DeadTasks("l")
	if err != nil {
		t.Fatal(err)
	}
	failed := map[string]string{}
	for _, d := range dead {
		if len(d.Inputs) != 1 || len(d.Errors) != 1 {
			t.Fatalf("dead task %+v", d)
		}
		failed[d.Inputs[0].Name] = d.Errors[0].Message
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if msg, ok := failed[tc.name]; !ok {
				t.Errorf("the task did not fail")
			} else if !strings.Contains(msg, "stage output") || !strings.Contains(msg, tc.want) {
				t.Errorf("the task failed with %q, want the output named and %q", msg, tc.want)
			}
			s := secrets[tc.name]
			fi, err := os.Lstat(s.path)
			if err != nil {
				t.Fatalf("the outside file is gone: %v", err)
			}
			if b, err := os.ReadFile(s.path); err != nil || string(b) != s.content || !os.SameFile(fi, s.fi) || fi.Mode() != s.fi.Mode() {
				t.Errorf("the outside file changed: %q %v, mode %v (was %v), same file %v", b, err, fi.Mode(), s.fi.Mode(), os.SameFile(fi, s.fi))
			}
			if sum := sha256.Sum256([]byte(s.content)); n.wq.blobs.Has(hex.EncodeToString(sum[:])) {
				t.Errorf("the outside file's content is in the blob store")
			}
			// The worker's check itself, on the same shape: the queue's ErrInvalid.
			work := t.TempDir()
			rel, err := tc.make(work, filepath.Dir(s.path))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := inDir(work, rel); !errors.Is(err, queue.ErrInvalid) {
				t.Errorf("inDir(%q) = %v, want %v", rel, err, queue.ErrInvalid)
			}
		})
	}
	if _, err := inDir(t.TempDir(), "absent"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("inDir of a missing output = %v, want %v", err, fs.ErrNotExist)
	}
}
