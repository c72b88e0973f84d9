package runtime

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Level is a log level, as the guest's log import numbers them.
type Level int8

// Log levels.
const (
	LevelDebug Level = iota
	LevelInfo
	LevelWarn
	LevelError
)

func (l Level) String() string {
	switch l {
	case LevelDebug:
		return "debug"
	case LevelInfo:
		return "info"
	case LevelWarn:
		return "warn"
	case LevelError:
		return "error"
	}
	return "unknown"
}

// MarshalText renders the level's name in JSON.
func (l Level) MarshalText() ([]byte, error) { return []byte(l.String()), nil }

// UnmarshalText parses a level's name (debug, info, warn, error).
func (l *Level) UnmarshalText(b []byte) error {
	for v := LevelDebug; v <= LevelError; v++ {
		if v.String() == string(b) {
			*l = v
			return nil
		}
	}
	return fmt.Errorf("unknown log level %q (want debug, info, warn or error)", b)
}

// LogEntry is one log line of a module.
type LogEntry struct {
	Time   time.Time `json:"time"`
	Module string    `json:"module"`
	Level  Level     `json:"level"`
	// Source is "guest" (the log import), "stdout", "stderr" or "runtime" (said by the runtime
	// about the module, e.g. an instance discarded after a trap).
	Source  string `json:"source"`
	Message string `json:"message"`
}

// LogSink receives module log lines. Implementations must be safe for concurrent use and must
// not block for long: they are called on the guest's call path.
type LogSink interface {
	Log(LogEntry)
}

// maxLogLine bounds one log line; longer lines are cut and marked.
const maxLogLine = 8 << 10

// lineWriter turns a guest's stdout or stderr into log lines. One per instance and stream.
//
// It is a host function's loop the guest controls: one WASI fd_write may name millions of
// buffers (each up to the whole memory), and no fuel check runs between them. So every buffer
// first asks cut whether the call is past its deadline (or cut otherwise), and a line keeps at
// most maxLogLine bytes however long the guest makes it.
type lineWriter struct {
	mu     sync.Mutex
	m      *Module // whose lines these are, counted against its log rate limit
	source string
	level  Level
	sink   LogSink
	buf    []byte
	// cut, when set, reports on the calling goroutine whether the instance's call is over its
	// deadline or cut; a write then fails (the guest sees EIO) and its next check ends the call.
	cut func() bool
}

// errOutputCut is what a write past the call's deadline fails with.
var errOutputCut = errors.New("the call is past its deadline")

func (w *lineWriter) Write(p []byte) (int, error) {
	if w.cut != nil && w.cut() {
		return 0, errOutputCut
	}
	if w.sink == nil {
		return len(p), nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			w.add(p)
			if len(w.buf) > maxLogLine {
				w.emit()
			}
			break
		}
		w.add(p[:i])
		w.emit()
		p = p[i+1:]
	}
	return n, nil
}

// add appends p to the line, keeping at most one byte past maxLogLine (which marks the line
// as cut): the rest of a longer line is dropped, not buffered.
func (w *lineWriter) add(p []byte) {
	if room := maxLogLine + 1 - len(w.buf); len(p) > room {
		p = p[:max(room, 0)]
	}
	w.buf = append(w.buf, p...)
}

// flush emits a pending partial line (called when the instance closes).
func (w *lineWriter) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.emit()
	}
}

func (w *lineWriter) emit() {
	msg := w.buf
	w.buf = w.buf[:0]
	now := time.Now()
	if !w.m.admitLog(w.sink, now, len(msg)) {
		return
	}
	if len(msg) > maxLogLine {
		msg = append(msg[:maxLogLine:maxLogLine], " [truncated]"...)
	}
	w.sink.Log(LogEntry{Time: now, Module: w.m.cfg.Name, Level: w.level, Source: w.source, Message: string(msg)})
}

// logLimiter is a module's log rate limit (ModuleConfig.LogLinesPerSecond and the fields after
// it): a token bucket of lines and one of bytes, shared by every instance and every source of
// the module (the log import, stdout, stderr, Extism's log_*, and the runtime's own lines about
// the module, which a guest can trigger once a call: traps, scale). A line that either bucket
// cannot pay for is dropped, never waited for: the guest's call is not slowed, and the sink
// is not flooded. Drops are counted; the next line admitted is preceded by one runtime line
// saying how many were dropped (at most one such line a second: logSummaryEvery). One mutex a
// line, no allocation.
type logLimiter struct {
	mu   sync.Mutex
	init bool
	// Resolved limits; a rate below zero turns its bucket off.
	lineRate, lineBurst, byteRate, byteBurst float64
	lines, bytes                             float64   // tokens
	last                                     time.Time // of the last refill
	// Drops since the last summary, and when that was said.
	pendLines, pendBytes uint64
	said                 time.Time
	// Drops since the module was loaded.
	droppedLines, droppedBytes atomic.Uint64
}

// logSummaryEvery is the least time between two of a module's drop summaries: under a steady
// flood every refilled token would otherwise bring one, doubling the lines it lets through.
const logSummaryEvery = time.Second

// logLimits resolves c's log limits: 0 takes the default.
func logLimits(c *ModuleConfig) (lineRate, lineBurst, byteRate, byteBurst float64) {
	d := DefaultModuleConfig("")
	or := func(v, def int64) float64 {
		if v == 0 {
			return float64(def)
		}
		return float64(v)
	}
	return or(int64(c.LogLinesPerSecond), int64(d.LogLinesPerSecond)), or(int64(c.LogLineBurst), int64(d.LogLineBurst)),
		or(c.LogBytesPerSecond, d.LogBytesPerSecond), or(c.LogByteBurst, d.LogByteBurst)
}

// admit reports whether a line of n bytes may be logged at now, taking its tokens if so. When
// it may, and a summary is due, dropLines and dropBytes are the drops it is to report.
func (l *logLimiter) admit(c *ModuleConfig, now time.Time, n int) (ok bool, dropLines, dropBytes uint64) {
	cost := float64(min(n, maxLogLine))
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.init {
		l.init = true
		l.lineRate, l.lineBurst, l.byteRate, l.byteBurst = logLimits(c)
		l.lines, l.bytes, l.last = l.lineBurst, l.byteBurst, now
	}
	// Callers read the clock before the lock: a late one may bring an earlier time, which
	// refills nothing (the monotonic reading makes the difference exact).
	if dt := now.Sub(l.last).Seconds(); dt > 0 {
		l.last = now
		l.lines = min(l.lineBurst, l.lines+dt*l.lineRate)
		l.bytes = min(l.byteBurst, l.bytes+dt*l.byteRate)
	}
	if (l.lineRate >= 0 && l.lines < 1) || (l.byteRate >= 0 && l.bytes < cost) {
		l.pendLines++
		l.pendBytes += uint64(n)
		l.droppedLines.Add(1)
		l.droppedBytes.Add(uint64(n))
		return false, 0, 0
	}
	l.lines--
	l.bytes -= cost
	if l.pendLines > 0 && (l.said.IsZero() || now.Sub(l.said) >= logSummaryEvery) {
		dropLines, dropBytes = l.pendLines, l.pendBytes
		l.pendLines, l.pendBytes, l.said = 0, 0, now
	}
	return true, dropLines, dropBytes
}

// admitLog reports whether the module may send a line of n bytes to sink now; if lines were
// dropped before it, it first says so on sink (Source "runtime", level warn).
func (m *Module) admitLog(sink LogSink, now time.Time, n int) bool {
	l := &m.logs
	ok, lines, bytes := l.admit(&m.cfg, now, n)
	if ok && lines > 0 {
		sink.Log(LogEntry{Time: now, Module: m.cfg.Name, Level: LevelWarn, Source: "runtime", Message: l.summary(lines, bytes)})
	}
	return ok
}

// summary is the runtime's line about dropped lines.
func (l *logLimiter) summary(lines, bytes uint64) string {
	limit := func(rate, burst float64, unit string) string {
		if rate < 0 {
			return "no " + unit + " limit"
		}
		return fmt.Sprintf("%.0f %s/s (burst %.0f)", rate, unit, burst)
	}
	return fmt.Sprintf("log rate limit: dropped %d lines (%d bytes) over the module's limit of %s and %s",
		lines, bytes, limit(l.lineRate, l.lineBurst, "lines"), limit(l.byteRate, l.byteBurst, "bytes"))
}

// LogsDropped returns how many log lines of the module, and how many bytes of them, were
// dropped by its log rate limit (ModuleConfig.LogLinesPerSecond) since it was loaded.
func (m *Module) LogsDropped() (lines, bytes uint64) {
	return m.logs.droppedLines.Load(), m.logs.droppedBytes.Load()
}
