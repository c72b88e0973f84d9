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
