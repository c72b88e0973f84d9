// Package clusterlog carries the cluster's libraries' log lines (memberlist, Raft) into the
// host's structured log.
package clusterlog

import (
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
)

// Writer forwards memberlist and Raft log lines to the host log at debug level (warnings and
// errors at warn).
type Writer struct {
	log *slog.Logger
	mu  sync.Mutex
	buf []byte
}

func (l *Writer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	rest := l.buf
	for {
		i := slices.Index(rest, '\n')
		if i < 0 {
			break
		}
		line := strings.TrimSpace(string(rest[:i]))
		rest = rest[i+1:]
		if strings.Contains(line, "[WARN]") || strings.Contains(line, "[ERR") || strings.Contains(line, "[error]") || strings.Contains(line, "[warn]") {
			l.log.Warn("cluster", "line", line)
		} else {
			l.log.Debug("cluster", "line", line)
		}
	}
	l.buf = append(l.buf[:0], rest...)
	return len(p), nil
}

var _ io.Writer = (*Writer)(nil)

// New returns a Writer into log. Safe for concurrent use.
func New(log *slog.Logger) *Writer { return &Writer{log: log} }
