package runtime

import (
	"testing"
	"time"
)

// TestLogLimiterBucket drives the token buckets with a made-up clock: the burst passes, the
// next line is dropped, the rate refills, a summary comes at most once a second and carries
// every drop, a line costs at most maxLogLine bytes, and a negative rate turns a bucket off.
func TestLogLimiterBucket(t *testing.T) {
	t0 := time.Now()
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	c := &ModuleConfig{LogLinesPerSecond: 10, LogLineBurst: 5, LogBytesPerSecond: -1}
	var l logLimiter
	for i := range 5 {
		if ok, n, _ := l.admit(c, t0, 3); !ok || n != 0 {
			t.Fatalf("line %d of the burst: %v, summary %d", i, ok, n)
		}
	}
	if ok, _, _ := l.admit(c, t0, 3); ok {
		t.Fatal("a line past the burst passed")
	}
	if ok, _, _ := l.admit(c, at(50), 3); ok {
		t.Fatal("half a token's refill let a line pass")
	}
	// 100 ms at 10 lines/s: one token. The first summary comes at once, with both drops.
	if ok, n, b := l.admit(c, at(100), 3); !ok || n != 2 || b != 6 {
		t.Fatalf("after a token's refill: %v, summary %d lines %d bytes; want true, 2, 6", ok, n, b)
	}
	if ok, _, _ := l.admit(c, at(101), 3); ok {
		t.Fatal("a line passed with the bucket empty")
	}
	// The next token, 200 ms later: admitted, but the summary waits for its second.
	if ok, n, _ := l.admit(c, at(200), 3); !ok || n != 0 {
		t.Fatalf("second token: %v, summary %d; want true and no summary yet", ok, n)
	}
	if ok, n, _ := l.admit(c, at(1100), 3); !ok || n != 1 {
		t.Fatalf("a second after the first summary: %v, summary %d; want the one pending drop", ok, n)
	}
	if got := l.droppedLines.Load(); got != 3 {
		t.Fatalf("dropped %d lines, want 3", got)
	}
	// An earlier time (a caller that read the clock before another) refills nothing.
	var e logLimiter
	e.admit(c, at(1000), 1)
	for range 4 {
		e.admit(c, at(1000), 1)
	}
	if ok, _, _ := e.admit(c, at(0), 1); ok {
		t.Fatal("a clock reading from before the last refill refilled the bucket")
	}

	// Bytes: a line costs at most maxLogLine, so a burst of one line's bytes passes any line.
	b := &ModuleConfig{LogLinesPerSecond: -1, LogBytesPerSecond: 1, LogByteBurst: maxLogLine}
	var lb logLimiter
	if ok, _, _ := lb.admit(b, t0, 1<<20); !ok {
		t.Fatal("a long line did not pass a full byte bucket")
	}
	if ok, _, _ := lb.admit(b, t0, 1); ok {
		t.Fatal("a line passed an empty byte bucket")
	}
	// Both off: everything passes.
	off := &ModuleConfig{LogLinesPerSecond: -1, LogBytesPerSecond: -1}
	var lo logLimiter
	for range 100_000 {
		if ok, _, _ := lo.admit(off, t0, maxLogLine); !ok {
			t.Fatal("a line was dropped with both limits off")
		}
	}
	// Zero takes the defaults.
	var ld logLimiter
	ld.admit(&ModuleConfig{}, t0, 1)
	if d := DefaultModuleConfig(""); ld.lineRate != float64(d.LogLinesPerSecond) || ld.lineBurst != float64(d.LogLineBurst) ||
		ld.byteRate != float64(d.LogBytesPerSecond) || ld.byteBurst != float64(d.LogByteBurst) {
		t.Fatalf("zero config resolved to %v %v %v %v", ld.lineRate, ld.lineBurst, ld.byteRate, ld.byteBurst)
	}
}

// TestLogLimiterAllocs: the check on a line allocates nothing, admitted or dropped.
func TestLogLimiterAllocs(t *testing.T) {
	c := &ModuleConfig{LogLinesPerSecond: 1000, LogLineBurst: 10}
	var l logLimiter
	now := time.Now()
	if n := testing.AllocsPerRun(1000, func() { l.admit(c, now, 100) }); n != 0 {
		t.Fatalf("%v allocations a line", n)
	}
}
