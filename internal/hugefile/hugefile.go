// Package hugefile helps tests show that a file is refused from its size, unread: it makes
// sparse files of any size (no disk) and watches the heap while the code under test runs, so a
// test of a read that is not bounded fails quickly instead of taking the machine's memory.
package hugefile

import (
	"os"
	goruntime "runtime"
	"testing"
	"time"
)

// Sparse makes path a sparse file of size bytes that starts with wasm's magic number and
// version (a module header: the size, not the content, is what must be refused).
func Sparse(t testing.TB, path string, size int64) {
	t.Helper()
	if err := os.WriteFile(path, []byte("\x00asm\x01\x00\x00\x00"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, size); err != nil {
		t.Fatal(err)
	}
}

// Heap is how much the heap may grow while a bounded read runs before the test fails.
const Heap = 256 << 20

// Watch measures the heap from now on. Check is called periodically while the code under test
// runs; Done when it is over.
type Watch struct {
	t            testing.TB
	path         string
	start        time.Time
	heap0, alloc uint64
}

// Start begins watching; path is the huge file, truncated if the heap grows by more than Heap
// (which ends a read of it, so that the code under test returns and the test can end).
func Start(t testing.TB, path string) *Watch {
	goruntime.GC()
	var ms goruntime.MemStats
	goruntime.ReadMemStats(&ms)
	return &Watch{t: t, path: path, start: time.Now(), heap0: ms.HeapAlloc, alloc: ms.TotalAlloc}
}

// Check fails the test (after truncating the file) if the heap grew by more than Heap or a
// minute passed; extra is added to the failure's message.
func (w *Watch) Check(extra string) {
	w.t.Helper()
	var ms goruntime.MemStats
	goruntime.ReadMemStats(&ms)
	if ms.HeapAlloc > w.heap0+Heap || time.Since(w.start) > time.Minute {
		os.Truncate(w.path, 0) // ends the read
		w.t.Fatalf("still reading after %v: heap grew by %d MiB%s", time.Since(w.start).Round(time.Millisecond), (ms.HeapAlloc-w.heap0)>>20, extra)
	}
}

// Done returns how long it has been since Start and what the process allocated meanwhile.
func (w *Watch) Done() (time.Duration, uint64) {
	var ms goruntime.MemStats
	goruntime.ReadMemStats(&ms)
	return time.Since(w.start), ms.TotalAlloc - w.alloc
}

// Bounded runs f, failing the test if the heap grows by more than Heap meanwhile (the file at
// path being read whole) or f takes a minute, and returns how long f took, what the process
// allocated meanwhile and f's error.
func Bounded(t testing.TB, path string, f func() error) (time.Duration, uint64, error) {
	t.Helper()
	w := Start(t, path)
	done := make(chan error, 1)
	go func() { done <- f() }()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			took, alloc := w.Done()
			return took, alloc, err
		case <-tick.C:
			w.Check("")
		}
	}
}
