package queuestate

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/wasmpod/wasmpod/cluster/queue"
)

// fakeClock is a race-safe manual clock.
type fakeClock struct{ n atomic.Int64 }

func newClock() *fakeClock {
	c := &fakeClock{}
	c.n.Store(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.n.Load()).UTC() }
func (c *fakeClock) Advance(d time.Duration) { c.n.Add(int64(d)) }

func testConfig(c *fakeClock) Config {
	cfg := DefaultConfig()
	cfg.LeaseDuration = 10 * time.Second
	cfg.MaxAttempts = 3
	cfg.BackoffBase = time.Second
	cfg.BackoffCap = 4 * time.Second
	cfg.Now = c.Now
	return cfg
}

func openTest(t *testing.T, path string, cfg Config) *Queue {
	t.Helper()
	q, err := Open(path, cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = q.Close() })
	return q
}

func newTest(t *testing.T, mutate func(*Config)) (*Queue, *fakeClock, string) {
	t.Helper()
	c := newClock()
	cfg := testConfig(c)
	if mutate != nil {
		mutate(&cfg)
	}
	path := filepath.Join(t.TempDir(), "queue.db")
	return openTest(t, path, cfg), c, path
}

func mustEnqueue(t *testing.T, q *Queue, pipeline, payload string) queue.TaskID {
	t.Helper()
	id, err := q.Enqueue(context.Background(), pipeline, []byte(payload))
	if err != nil {
		t.Fatalf("Enqueue(%q, %q): %v", pipeline, payload, err)
	}
	return id
}

func mustLease(t *testing.T, q *Queue, pipeline, worker string) Lease {
	t.Helper()
	l, err := q.Lease(context.Background(), pipeline, worker)
	if err != nil {
		t.Fatalf("Lease(%q, %q): %v", pipeline, worker, err)
	}
	return l
}

func wantEmpty(t *testing.T, q *Queue, pipeline string) {
	t.Helper()
	l, err := q.Lease(context.Background(), pipeline, "w")
	if !errors.Is(err, queue.ErrEmpty) {
		t.Fatalf("Lease(%q) = %+v, %v; want ErrEmpty", pipeline, l, err)
	}
}

func mustGet(t *testing.T, q *Queue, id queue.TaskID) Task {
	t.Helper()
	task, err := q.Get(id)
	if err != nil {
		t.Fatalf("Get(%d): %v", id, err)
	}
	return task
}

func TestOpenValidatesConfig(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Config)
	}{
		{"zero lease", func(c *Config) { c.LeaseDuration = 0 }},
		{"zero attempts", func(c *Config) { c.MaxAttempts = 0 }},
		{"zero backoff", func(c *Config) { c.BackoffBase = 0 }},
		{"cap below base", func(c *Config) { c.BackoffCap = c.BackoffBase / 2 }},
		{"negative payload limit", func(c *Config) { c.MaxPayloadBytes = -1 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tt.mutate(&cfg)
			q, err := Open(filepath.Join(t.TempDir(), "q.db"), cfg)
			if !errors.Is(err, queue.ErrInvalid) {
				if q != nil {
					_ = q.Close()
				}
				t.Fatalf("Open = %v; want ErrInvalid", err)
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	cfg := Config{BackoffBase: time.Second, BackoffCap: 5 * time.Second}
	tests := []struct {
		attempt int
		want    time.Duration
	}{
		{1, time.Second}, {2, 2 * time.Second}, {3, 4 * time.Second},
		{4, 5 * time.Second}, {10, 5 * time.Second}, {1000, 5 * time.Second},
	}
	for _, tt := range tests {
		if got := cfg.Backoff(tt.attempt); got != tt.want {
			t.Errorf("Backoff(%d) = %v; want %v", tt.attempt, got, tt.want)
		}
	}
}

func TestEnqueueValidation(t *testing.T) {
	q, _, _ := newTest(t, func(c *Config) { c.MaxPayloadBytes = 4 })
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name     string
		ctx      context.Context
		pipeline string
		payload  string
		want     error
	}{
		{"empty pipeline", context.Background(), "", "x", queue.ErrInvalid},
		{"long pipeline", context.Background(), strings.Repeat("p", maxPipelineLen+1), "x", queue.ErrInvalid},
		{"payload too big", context.Background(), "p", "12345", queue.ErrInvalid},
		{"canceled", canceled, "p", "x", context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := q.Enqueue(tt.ctx, tt.pipeline, []byte(tt.payload)); !errors.Is(err, tt.want) {
				t.Fatalf("Enqueue = %v; want %v", err, tt.want)
			}
		})
	}
	if s, err := q.Stats("p"); err != nil || s.Depth != 0 {
		t.Fatalf("Stats = %+v, %v; want nothing enqueued", s, err)
	}
}

// TestAckAfterDisk: every acknowledged task is in the file after reopen.
func TestAckAfterDisk(t *testing.T) {
	tests := []struct {
		pipeline string
		payload  string
	}{
		{"thumbs", "in/1.png"},
		{"thumbs", ""},
		{"ocr", "in/scan.tiff"},
		{"thumbs", strings.Repeat("x", 4096)},
	}
	q, c, path := newTest(t, nil)
	ids := make([]queue.TaskID, len(tests))
	for i, tt := range tests {
		ids[i] = mustEnqueue(t, q, tt.pipeline, tt.payload)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	q2 := openTest(t, path, testConfig(c))
	for i, tt := range tests {
		task := mustGet(t, q2, ids[i])
		if task.State != StateReady || task.Pipeline != tt.pipeline || string(task.Payload) != tt.payload || task.Attempts != 0 {
			t.Errorf("task %d after reopen = %+v; want ready %q/%q", ids[i], task, tt.pipeline, tt.payload)
		}
	}
	if s, err := q2.Stats("thumbs"); err != nil || s.Depth != 3 || s.Ready != 3 {
		t.Fatalf("Stats(thumbs) = %+v, %v; want depth 3", s, err)
	}
	// FIFO survives the reopen.
	for _, want := range []queue.TaskID{ids[0], ids[1], ids[3]} {
		if l := mustLease(t, q2, "thumbs", "w"); l.TaskID != want {
			t.Fatalf("leased %d; want %d", l.TaskID, want)
		}
	}
}

func TestLeaseLifecycle(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, q *Queue, c *fakeClock, id queue.TaskID)
	}{
		{"complete stores result", func(t *testing.T, q *Queue, c *fakeClock, id queue.TaskID) {
			l := mustLease(t, q, "p", "w1")
			if l.Attempt != 1 || l.Worker != "w1" || string(l.Payload) != "job" || !l.ExpiresAt.Equal(c.Now().Add(10*time.Second)) {
				t.Fatalf("lease = %+v", l)
			}
			wantEmpty(t, q, "p") // leased tasks are not handed out twice
			if err := q.Complete(l, []byte("out")); err != nil {
				t.Fatal(err)
			}
			task := mustGet(t, q, id)
			if task.State != StateDone || string(task.Result) != "out" || task.Attempts != 1 {
				t.Fatalf("task = %+v", task)
			}
			if err := q.Complete(l, []byte("again")); !errors.Is(err, queue.ErrLeaseLost) {
				t.Fatalf("second Complete = %v; want ErrLeaseLost", err)
			}
			if err := q.Fail(l, "x"); !errors.Is(err, queue.ErrLeaseLost) {
				t.Fatalf("Fail after Complete = %v; want ErrLeaseLost", err)
			}
		}},
		{"heartbeat keeps the lease", func(t *testing.T, q *Queue, c *fakeClock, id queue.TaskID) {
			l := mustLease(t, q, "p", "w1")
			for range 5 {
				c.Advance(8 * time.Second)
				var err error
				if l, err = q.Heartbeat(l); err != nil {
					t.Fatalf("Heartbeat: %v", err)
				}
				if !l.ExpiresAt.Equal(c.Now().Add(10 * time.Second)) {
					t.Fatalf("expiry %v; want now+10s", l.ExpiresAt)
				}
				wantEmpty(t, q, "p")
			}
			if err := q.Complete(l, nil); err != nil {
				t.Fatalf("Complete after 40s of heartbeats: %v", err)
			}
		}},
		{"expiry redelivers with attempt+1 after backoff", func(t *testing.T, q *Queue, c *fakeClock, id queue.TaskID) {
			l1 := mustLease(t, q, "p", "w1")
			c.Advance(10 * time.Second) // lease ends exactly now
			if _, err := q.Heartbeat(l1); !errors.Is(err, queue.ErrLeaseLost) {
				t.Fatalf("Heartbeat at expiry = %v; want ErrLeaseLost", err)
			}
			if s, _ := q.Stats("p"); s.Leased != 0 || s.Depth != 1 || s.Ready != 0 || s.Retries != 1 {
				t.Fatalf("Stats after expiry = %+v", s)
			}
			wantEmpty(t, q, "p") // backing off for 1s
			c.Advance(time.Second)
			l2 := mustLease(t, q, "p", "w2")
			if l2.Attempt != 2 || l2.ID == l1.ID || l2.TaskID != id {
				t.Fatalf("redelivery = %+v; first lease %+v", l2, l1)
			}
			task := mustGet(t, q, id)
			if len(task.Errors) != 1 || task.Errors[0].Attempt != 1 || !strings.Contains(task.Errors[0].Message, "expired") {
				t.Fatalf("errors = %+v", task.Errors)
			}
		}},
		{"late finisher is refused", func(t *testing.T, q *Queue, c *fakeClock, id queue.TaskID) {
			l1 := mustLease(t, q, "p", "slow")
			c.Advance(11 * time.Second)
			c.Advance(time.Second)
			l2 := mustLease(t, q, "p", "fast")
			for name, call := range map[string]func() error{
				"Complete":  func() error { return q.Complete(l1, []byte("stale")) },
				"Fail":      func() error { return q.Fail(l1, "stale") },
				"Heartbeat": func() error { _, err := q.Heartbeat(l1); return err },
			} {
				if err := call(); !errors.Is(err, queue.ErrLeaseLost) {
					t.Fatalf("%s with superseded lease = %v; want ErrLeaseLost", name, err)
				}
			}
			if err := q.Complete(l2, []byte("fresh")); err != nil {
				t.Fatal(err)
			}
			if task := mustGet(t, q, id); string(task.Result) != "fresh" {
				t.Fatalf("result %q; want fresh", task.Result)
			}
		}},
		{"expired but not yet noticed is refused", func(t *testing.T, q *Queue, c *fakeClock, id queue.TaskID) {
			l := mustLease(t, q, "p", "w")
			c.Advance(time.Hour)
			if err := q.Complete(l, nil); !errors.Is(err, queue.ErrLeaseLost) {
				t.Fatalf("Complete = %v; want ErrLeaseLost", err)
			}
			if task := mustGet(t, q, id); task.State != StateReady || len(task.Errors) != 1 {
				t.Fatalf("Get after expiry = %+v; want ready with one error", task)
			}
		}},
		{"unknown task", func(t *testing.T, q *Queue, c *fakeClock, id queue.TaskID) {
			if err := q.Complete(Lease{TaskID: id + 100, ID: 1}, nil); !errors.Is(err, queue.ErrNotFound) {
				t.Fatalf("Complete = %v; want ErrNotFound", err)
			}
			if _, err := q.Get(id + 100); !errors.Is(err, queue.ErrNotFound) {
				t.Fatalf("Get = %v; want ErrNotFound", err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q, c, _ := newTest(t, nil)
			id := mustEnqueue(t, q, "p", "job")
			tt.run(t, q, c, id)
		})
	}
}

func TestBackoffOrdering(t *testing.T) {
	q, c, _ := newTest(t, func(c *Config) { c.MaxAttempts = 4 })
	a := mustEnqueue(t, q, "p", "a")
	b := mustEnqueue(t, q, "p", "b")
	cc := mustEnqueue(t, q, "p", "c")

	la := mustLease(t, q, "p", "w")
	if la.TaskID != a {
		t.Fatalf("first lease %d; want %d", la.TaskID, a)
	}
	if err := q.Fail(la, "boom 1"); err != nil {
		t.Fatal(err)
	}
	// a backs off 1s; b and c, ready earlier, go first.
	steps := []struct {
		advance time.Duration
		want    queue.TaskID // 0: ErrEmpty
		attempt int
		fail    bool
	}{
		{0, b, 1, false},
		{0, cc, 1, false},
		{0, 0, 0, false},
		{999 * time.Millisecond, 0, 0, false},
		{time.Millisecond, a, 2, true}, // backoff now 2s
		{time.Second, 0, 0, false},
		{time.Second, a, 3, true}, // backoff now 4s (the cap)
		{3 * time.Second, 0, 0, false},
		{time.Second, a, 4, false},
	}
	for i, s := range steps {
		c.Advance(s.advance)
		l, err := q.Lease(context.Background(), "p", "w")
		if s.want == 0 {
			if !errors.Is(err, queue.ErrEmpty) {
				t.Fatalf("step %d: Lease = %+v, %v; want ErrEmpty", i, l, err)
			}
			continue
		}
		if err != nil || l.TaskID != s.want || l.Attempt != s.attempt {
			t.Fatalf("step %d: Lease = %+v, %v; want task %d attempt %d", i, l, err, s.want, s.attempt)
		}
		if s.fail {
			err = q.Fail(l, fmt.Sprintf("boom %d", l.Attempt))
		} else {
			err = q.Complete(l, nil)
		}
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	if s, err := q.Stats("p"); err != nil || s.Completed != 3 || s.Retries != 3 || s.Depth != 0 {
		t.Fatalf("Stats = %+v, %v", s, err)
	}
}

// TestPoisonDeadLetters: a task that always fails goes to the dead letters
// after MaxAttempts while the others finish; Retry brings it back.
func TestPoisonDeadLetters(t *testing.T) {
	q, c, _ := newTest(t, nil)
	poison := mustEnqueue(t, q, "p", "poison")
	var good []queue.TaskID
	for i := range 5 {
		good = append(good, mustEnqueue(t, q, "p", fmt.Sprintf("good %d", i)))
	}
	// The poison task is first in line and fails twice, then its worker
	// crashes (lease expiry) on the third attempt.
	for step := 0; step < 100; step++ {
		l, err := q.Lease(context.Background(), "p", "w")
		if errors.Is(err, queue.ErrEmpty) {
			s, err := q.Stats("p")
			if err != nil {
				t.Fatal(err)
			}
			if s.Depth == 0 && s.Leased == 0 {
				break
			}
			c.Advance(time.Second)
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case string(l.Payload) != "poison":
			err = q.Complete(l, []byte("ok"))
		case l.Attempt < 3:
			err = q.Fail(l, fmt.Sprintf("trap %d", l.Attempt))
		default:
			// crash: never report; the lease expires
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range good {
		if task := mustGet(t, q, id); task.State != StateDone {
			t.Errorf("good task %d is %v", id, task.State)
		}
	}
	dead, err := q.Dead("p")
	if err != nil {
		t.Fatal(err)
	}
	if len(dead) != 1 || dead[0].ID != poison || dead[0].State != StateDead || dead[0].Attempts != 3 {
		t.Fatalf("Dead = %+v; want the poison task after 3 attempts", dead)
	}
	wantMsgs := []string{"trap 1", "trap 2", "expired"}
	if len(dead[0].Errors) != len(wantMsgs) {
		t.Fatalf("errors = %+v", dead[0].Errors)
	}
	for i, e := range dead[0].Errors {
		if e.Attempt != i+1 || !strings.Contains(e.Message, wantMsgs[i]) {
			t.Errorf("error %d = %+v; want attempt %d %q", i, e, i+1, wantMsgs[i])
		}
	}
	if s, _ := q.Stats("p"); s.Dead != 1 || s.Completed != 5 || s.Retries != 2 {
		t.Fatalf("Stats = %+v", s)
	}

	// Retry.
	tests := []struct {
		id   queue.TaskID
		want error
	}{
		{good[0], queue.ErrNotDead},
		{999, queue.ErrNotFound},
		{poison, nil},
		{poison, queue.ErrNotDead},
	}
	for _, tt := range tests {
		if err := q.Retry(tt.id); !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
			t.Fatalf("Retry(%d) = %v; want %v", tt.id, err, tt.want)
		}
	}
	if dead, _ := q.Dead("p"); len(dead) != 0 {
		t.Fatalf("Dead after Retry = %+v", dead)
	}
	l := mustLease(t, q, "p", "w")
	if l.TaskID != poison || l.Attempt != 1 {
		t.Fatalf("lease after Retry = %+v", l)
	}
	if err := q.Complete(l, []byte("fixed")); err != nil {
		t.Fatal(err)
	}
	if task := mustGet(t, q, poison); task.State != StateDone || len(task.Errors) != 3 {
		t.Fatalf("retried task = %+v; want done with its history", task)
	}
}

// TestReopenWithLeases: leased tasks survive a close and come back once
// their lease has run out.
func TestReopenWithLeases(t *testing.T) {
	q, c, path := newTest(t, nil)
	ids := []queue.TaskID{mustEnqueue(t, q, "p", "1"), mustEnqueue(t, q, "p", "2"), mustEnqueue(t, q, "p", "3")}
	l1 := mustLease(t, q, "p", "w")
	l2 := mustLease(t, q, "p", "w")
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	q = openTest(t, path, testConfig(c))
	if s, err := q.Stats("p"); err != nil || s.Leased != 2 || s.Depth != 1 {
		t.Fatalf("Stats after reopen = %+v, %v", s, err)
	}
	if l := mustLease(t, q, "p", "w"); l.TaskID != ids[2] {
		t.Fatalf("leased %d; want %d", l.TaskID, ids[2])
	}
	wantEmpty(t, q, "p")
	c.Advance(10*time.Second + time.Second) // lease + first backoff
	for _, old := range []Lease{l1, l2} {
		l := mustLease(t, q, "p", "w2")
		if l.TaskID != old.TaskID || l.Attempt != 2 || l.ID <= old.ID {
			t.Fatalf("redelivery %+v; old %+v", l, old)
		}
		if err := q.Complete(old, nil); !errors.Is(err, queue.ErrLeaseLost) {
			t.Fatalf("Complete with pre-restart lease = %v; want ErrLeaseLost", err)
		}
		if err := q.Complete(l, nil); err != nil {
			t.Fatal(err)
		}
	}
}

// TestConcurrentWorkers: many workers, slow ones whose leases expire; no
// task is completed twice, and every completion is of a delivery whose
// predecessors all ended in an expiry.
func TestConcurrentWorkers(t *testing.T) {
	const tasks, workers = 150, 8
	q, c, _ := newTest(t, func(cfg *Config) {
		cfg.MaxAttempts = 1000
		cfg.BackoffBase = time.Millisecond
		cfg.BackoffCap = time.Millisecond
	})
	for i := range tasks {
		mustEnqueue(t, q, "p", fmt.Sprint(i))
	}
	var (
		mu        sync.Mutex
		completed = map[queue.TaskID]Lease{}
		lost      atomic.Int64
	)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ; n++ {
				l, err := q.Lease(context.Background(), "p", fmt.Sprint("w", w))
				if errors.Is(err, queue.ErrEmpty) {
					s, err := q.Stats("p")
					if err != nil {
						t.Error(err)
						return
					}
					if s.Depth == 0 && s.Leased == 0 {
						return
					}
					c.Advance(time.Millisecond)
					continue
				}
				if err != nil {
					t.Error(err)
					return
				}
				if (n+w)%3 == 0 {
					c.Advance(11 * time.Second) // this worker is slow: every live lease expires
				}
				err = q.Complete(l, []byte(l.Worker))
				switch {
				case errors.Is(err, queue.ErrLeaseLost):
					lost.Add(1)
				case err != nil:
					t.Error(err)
					return
				default:
					mu.Lock()
					if prev, dup := completed[l.TaskID]; dup {
						t.Errorf("task %d completed twice: %+v and %+v", l.TaskID, prev, l)
					}
					completed[l.TaskID] = l
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if len(completed) != tasks {
		t.Fatalf("%d tasks completed; want %d", len(completed), tasks)
	}
	if lost.Load() == 0 {
		t.Fatal("no lease was lost: the test did not exercise expiry")
	}
	for id, l := range completed {
		task := mustGet(t, q, id)
		if task.State != StateDone || task.LeaseID != l.ID || task.Attempts != l.Attempt || string(task.Result) != l.Worker {
			t.Errorf("task %d = %+v; completed by %+v", id, task, l)
		}
		if len(task.Errors) != min(task.Attempts-1, maxErrors) {
			t.Errorf("task %d: %d attempts but %d errors", id, task.Attempts, len(task.Errors))
		}
		for _, e := range task.Errors {
			if !strings.Contains(e.Message, "expired") {
				t.Errorf("task %d: earlier delivery ended with %q, not an expiry", id, e.Message)
			}
		}
	}
	s, err := q.Stats("p")
	if err != nil || s.Completed != tasks || s.Retries != uint64(lost.Load()) {
		t.Fatalf("Stats = %+v, %v; lost %d", s, err, lost.Load())
	}
	t.Logf("%d tasks, %d workers, %d late completions refused", tasks, workers, lost.Load())
}

func TestClose(t *testing.T) {
	q, _, _ := newTest(t, nil)
	id := mustEnqueue(t, q, "p", "x")
	for range 2 {
		if err := q.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
	}
	calls := map[string]func() error{
		"Enqueue": func() error { _, err := q.Enqueue(context.Background(), "p", nil); return err },
		"Lease":   func() error { _, err := q.Lease(context.Background(), "p", "w"); return err },
		"Get":     func() error { _, err := q.Get(id); return err },
		"Stats":   func() error { _, err := q.Stats("p"); return err },
		"Dead":    func() error { _, err := q.Dead("p"); return err },
		"Retry":   func() error { return q.Retry(id) },
		"Complete": func() error {
			return q.Complete(Lease{TaskID: id}, nil)
		},
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, queue.ErrClosed) {
			t.Errorf("%s after Close = %v; want ErrClosed", name, err)
		}
	}
}

// TestCorruptRecord: a damaged record is reported, not misread.
func TestCorruptRecord(t *testing.T) {
	q, c, path := newTest(t, nil)
	id := mustEnqueue(t, q, "p", "x")
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bTasks).Put(idKey(id), []byte{recordVersion, 99})
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	q = openTest(t, path, testConfig(c))
	if _, err := q.Get(id); !errors.Is(err, queue.ErrCorrupt) {
		t.Fatalf("Get = %v; want ErrCorrupt", err)
	}
	if _, err := q.Lease(context.Background(), "p", "w"); !errors.Is(err, queue.ErrCorrupt) {
		t.Fatalf("Lease = %v; want ErrCorrupt", err)
	}
}
