package runtime

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
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
	module string
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
	if len(msg) > maxLogLine {
		msg = append(msg[:maxLogLine:maxLogLine], " [truncated]"...)
	}
	w.sink.Log(LogEntry{Time: time.Now(), Module: w.module, Level: w.level, Source: w.source, Message: string(msg)})
	w.buf = w.buf[:0]
}
