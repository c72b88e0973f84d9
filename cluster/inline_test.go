package cluster

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/cluster/queue"
)

// atAddress reports whether the blob sha is a file at its address in n's store (not merely
// pending there).
func atAddress(t *testing.T, n *Node, sha string) bool {
	t.Helper()
	_, err := os.Lstat(filepath.Join(n.wq.blobs.Dir(), sha[:2], sha))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return err == nil
}

// runInlineJob runs one job of the "bang" stage on n: small inputs (outputs at most 64 bytes,
// the node's InlineOutputMax in these tests) and one large, and returns the finished job and
// what each output must hold.
func runInlineJob(t *testing.T, n *Node) (queue.Job, map[string]string) {
	t.Helper()
	ctx := t.Context()
	eventually(t, "define", func() error {
		return n.Queue().DefinePipeline(ctx, queue.Pipeline{Name: "in", Stages: []queue.StageDef{{Name: "bang"}}})
	})
	contents := map[string]string{"large": strings.Repeat("L", 200)}
	for i := range 6 {
		contents[fmt.Sprintf("d/small%d", i)] = fmt.Sprintf("small file %d", i)
	}
	id, err := n.Queue().Submit(ctx, "in", putFiles(t, n, contents), "")
	if err != nil {
		t.Fatal(err)
	}
	w, err := n.Queue().StartWorkers(WorkerConfig{Pipeline: "in", Stage: 0, Concurrency: 2, Timeout: 30 * time.Second,
		Runner: &funcRunnerBang{}})
	if err != nil {
		t.Fatal(err)
	}
	j := waitJob(t, n, id)
	if err := w.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if j.State != queue.JobDone || len(j.Outputs) != len(contents) {
		t.Fatalf("job %s with %d outputs, want done with %d", j.State, len(j.Outputs), len(contents))
	}
	want := map[string]string{}
	for name, c := range contents {
		want[name] = c + "!"
	}
	return j, want
}

// funcRunnerBang is the bang stage.
type funcRunnerBang struct{}

func (funcRunnerBang) RunStage(_ context.Context, inputs []StageInput, outputName, outDir string) (string, error) {
	return bang(inputs, outputName, outDir)
}

// noFlusher leaves pending outputs pending for the test (the periodic flush off).
func noFlusher(t *testing.T) {
	old := flushEvery
	flushEvery = time.Hour
	t.Cleanup(func() { flushEvery = old })
}

// inlineConfig is a one-node configuration with state on disk whose outputs up to 64 bytes
// ride the log.
func inlineConfig(t *testing.T, name string) Config {
	c := testConfig(name)
	c.StateDir = t.TempDir()
	c.Queue.InlineOutputMax = 64
	return c
}

// TestOutputsCarriedByLog: a small output travels in its completion's log entry and is pending
// in the store (readable, not yet at its address, so no fsync of its own was waited for); a
// large one is committed as a file before its completion; reading a pending output flushes it
// to its address; a voter of an earlier release turns the first off.
func TestOutputsCarriedByLog(t *testing.T) {
	noFlusher(t)
	for _, tc := range []struct {
		name   string
		oldOps bool // the node advertises the queue commands of the release before content
	}{{"this release", false}, {"a voter of the release before", true}} {
		t.Run(tc.name, func(t *testing.T) {
			n := startNode(t, inlineConfig(t, "inl"))
			if tc.oldOps {
				advertiseQueueOps(t, n, opsCompleteLease)
			}
			j, want := runInlineJob(t, n)
			for _, o := range j.Outputs {
				large := len(want[o.Name]) > 64
				if got, wantAt := atAddress(t, n, o.SHA256), large || tc.oldOps; got != wantAt {
					t.Errorf("output %s (%d bytes): at its address %v, want %v", o.Name, o.Size, got, wantAt)
				}
				if !n.wq.blobs.Has(o.SHA256) {
					t.Errorf("output %s: not in the store", o.Name)
				}
			}
			for _, o := range j.Outputs {
				if got := readBlob(t, n, o.SHA256); got != want[o.Name] {
					t.Fatalf("output %s = %q, want %q", o.Name, got, want[o.Name])
				}
				if !atAddress(t, n, o.SHA256) {
					t.Fatalf("output %s: read, but still not at its address", o.Name)
				}
			}
		})
	}
}

// TestOutputsCarriedByLogSurviveCrash: a node stopped as a crash leaves it, with small
// outputs still pending (written nowhere durable but the log), has them again after a restart:
// the log's replay gives them back to the store.
func TestOutputsCarriedByLogSurviveCrash(t *testing.T) {
	noFlusher(t)
	c := inlineConfig(t, "crash")
	n, err := Start(c)
	if err != nil {
		t.Fatal(err)
	}
	j, want := runInlineJob(t, n)
	pending := 0
	for _, o := range j.Outputs {
		if !atAddress(t, n, o.SHA256) {
			pending++
		}
	}
	if pending == 0 {
		t.Fatal("no output was pending: the test checks nothing")
	}
	flushOnClose = false
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	err = n.Shutdown(ctx)
	cancel()
	flushOnClose = true
	if err != nil {
		t.Fatal(err)
	}

	n = startNode(t, c)
	for _, o := range j.Outputs {
		if len(want[o.Name]) <= 64 && atAddress(t, n, o.SHA256) {
			t.Fatalf("output %s at its address before the restarted node replayed anything: the crash was not simulated", o.Name)
		}
	}
	var got queue.Job
	eventually(t, "the job after the restart", func() (err error) {
		got, err = n.Queue().Job(j.ID)
		if err == nil && len(got.Outputs) != len(j.Outputs) {
			err = fmt.Errorf("%d outputs, want %d", len(got.Outputs), len(j.Outputs))
		}
		return err
	})
	for _, o := range got.Outputs {
		if b := readBlob(t, n, o.SHA256); b != want[o.Name] {
			t.Fatalf("output %s after the crash = %q, want %q", o.Name, b, want[o.Name])
		}
	}
}

// TestSnapshotFlushesOutputs: a snapshot (after which Raft may drop the entries that carried
// the outputs) is written only once the outputs are at their addresses, with the periodic
// flush off.
func TestSnapshotFlushesOutputs(t *testing.T) {
	noFlusher(t)
	c := inlineConfig(t, "snap")
	c.Election.SnapshotThreshold = 4
	c.Election.SnapshotInterval = 50 * time.Millisecond
	n := startNode(t, c)
	j, _ := runInlineJob(t, n)
	eventually(t, "outputs at their addresses after a snapshot", func() error {
		for _, o := range j.Outputs {
			if !atAddress(t, n, o.SHA256) {
				return fmt.Errorf("output %s still pending", o.Name)
			}
		}
		return nil
	})
	if pending, _ := n.wq.blobs.Pending(); pending != 0 {
		t.Fatalf("%d outputs still pending", pending)
	}
}
