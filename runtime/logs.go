package runtime

import (
	"bytes"
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
type lineWriter struct {
	mu     sync.Mutex
	module string
	source string
	level  Level
	sink   LogSink
	buf    []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	if w.sink == nil {
		return len(p), nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			w.buf = append(w.buf, p...)
			if len(w.buf) >= maxLogLine {
				w.emit()
			}
			break
		}
		w.buf = append(w.buf, p[:i]...)
		w.emit()
		p = p[i+1:]
	}
	return n, nil
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
