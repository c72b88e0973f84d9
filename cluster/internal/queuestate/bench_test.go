package queuestate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/cluster/queue"
)

// BenchmarkStore measures the queue's core on one fsynced bbolt file, without Raft, wasm or
// blobs: enqueue, lease and complete per task, 2 tasks at once, with a payload and a result like
// a stage task's. It is the floor under bench's BenchmarkQueue (which was its "bbolt" case
// before the store moved here). Run it with a fixed count, e.g. -benchtime 2000x.
func BenchmarkStore(b *testing.B) {
	const workers = 2
	ctx := context.Background()
	q, err := Open(filepath.Join(b.TempDir(), "queue.db"), DefaultConfig())
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	payload, _ := json.Marshal(StageTask{Job: 1, Name: "copy", Inputs: []queue.File{{Name: "r1/t000000", SHA256: strings.Repeat("ab", 32), Size: 16}}})
	result, _ := json.Marshal(queue.File{Name: "r1/t000000", SHA256: strings.Repeat("cd", 32), Size: 21})
	task := func(w int) error {
		if _, err := q.Enqueue(ctx, "bench", payload); err != nil {
			return err
		}
		for {
			l, err := q.Lease(ctx, "bench", fmt.Sprintf("w%d", w))
			if errors.Is(err, queue.ErrEmpty) { // the other worker took it: take the next
				continue
			}
			if err != nil {
				return err
			}
			return q.Complete(l, result)
		}
	}
	b.ReportAllocs()
	start := time.Now()
	var (
		next  atomic.Int64
		wg    sync.WaitGroup
		first atomic.Pointer[error]
	)
	for w := range workers {
		wg.Go(func() {
			for next.Add(1) <= int64(b.N) && first.Load() == nil {
				if err := task(w); err != nil {
					first.CompareAndSwap(nil, &err)
				}
			}
		})
	}
	wg.Wait()
	if p := first.Load(); p != nil {
		b.Fatal(*p)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "tasks/s")
}

// BenchmarkJobTasks measures the pipeline layer's work per task as a replica does it (a file
// without fsync, as the Machine's): lease and complete one task of a job of n inputs, one at a
// time. Work that grows with the job's size per task shows as a cost growing with n.
func BenchmarkJobTasks(b *testing.B) {
	for _, n := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("inputs=%d", n), func(b *testing.B) {
			ctx := context.Background()
			q, err := open(filepath.Join(b.TempDir(), "queue.db"), DefaultConfig(), true)
			if err != nil {
				b.Fatal(err)
			}
			defer q.Close()
			if err := q.DefinePipeline(queue.Pipeline{Name: "p", Stages: []queue.StageDef{{Name: "copy"}}}); err != nil {
				b.Fatal(err)
			}
			for i := 0; i < b.N; i += n {
				inputs := make([]queue.File, min(n, b.N-i))
				for k := range inputs {
					inputs[k] = queue.File{Name: fmt.Sprintf("r1/t%06d", i+k), SHA256: strings.Repeat("ab", 32), Size: 16}
				}
				if _, err := q.Submit(ctx, "", "p", inputs); err != nil {
					b.Fatal(err)
				}
			}
			result, _ := json.Marshal(queue.File{Name: "r1/t000000", SHA256: strings.Repeat("cd", 32), Size: 21})
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				l, err := q.Lease(ctx, StageQueue("p", 0), "w")
				if err != nil {
					b.Fatal(err)
				}
				if err := q.Complete(l, result); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkMachineTask is the replicated machine's share of a task of a one-stage pipeline, as
// two workers on the leader drive it: per op, two jobs are submitted, then each worker's
// command completes its lease and takes the next task, encoded as on the log. "apart" applies
// every command alone (Apply), "batched" the two workers' commands as one batch of the log
// (ApplyBatch, as Raft hands over entries committed together), "grouped" batched with the
// cluster's group commit (SetGroupCommit(64, 10 ms)). ns/op is per task.
func BenchmarkMachineTask(b *testing.B) {
	for _, tc := range []struct {
		name    string
		batched bool
		group   int
	}{{"apart", false, 0}, {"batched", true, 0}, {"grouped", true, 64}} {
		batched := tc.batched
		b.Run(tc.name, func(b *testing.B) {
			m := newMachine(b)
			m.SetGroupCommit(tc.group, 10*time.Millisecond)
			at := t0
			tick := func() time.Time { at = at.Add(time.Millisecond); return at }
			do(b, m, Command{Op: OpDefine, At: tick(), Pipeline: &queue.Pipeline{Name: "p", Stages: []queue.StageDef{{Name: "copy"}}}}, nil)
			q0 := StageQueue("p", 0)
			n := 0
			submit := func() {
				n++
				do(b, m, Command{Op: OpSubmit, At: tick(), Request: fmt.Sprint("r", n), Name: "p", Inputs: []queue.File{fileOf(fmt.Sprintf("in/t%06d", n))}}, nil)
			}
			var ls [2]*Lease
			for w := range ls {
				submit()
				ls[w] = do(b, m, Command{Op: OpLease, At: tick(), Name: q0, Worker: fmt.Sprint("w", w)}, nil).Lease
			}
			cmds := make([][]byte, 2)
			b.ReportAllocs()
			for b.Loop() {
				submit()
				submit()
				for w, l := range ls {
					out := fileOf(fmt.Sprintf("out/%d", l.TaskID))
					cmds[w] = encodeCmd(b, Command{Op: OpCompleteLease, At: tick(), Lease: l, Output: &out, Name: q0, Worker: fmt.Sprint("w", w)})
				}
				var res [][]byte
				if batched {
					res = m.ApplyBatch(cmds)
				} else {
					res = [][]byte{m.Apply(cmds[0]), m.Apply(cmds[1])}
				}
				for w, r := range res {
					if ls[w] = decodeResp(b, r).Next; ls[w] == nil {
						b.Fatalf("no next lease: %s", r)
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(2*b.N), "ns/task")
		})
	}
}
