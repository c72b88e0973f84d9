//go:build !wasip1

package core

import (
	"fmt"
	"os"
	"sync"
)

// Host stands in for the wasmpod host imports when the SDK is compiled natively (for unit tests
// of the SDK and of plugin logic). It is not used on wasip1.
var Host = NewFakeHost()

// FakeHost records what a guest asks of the host, in memory.
type FakeHost struct {
	mu          sync.Mutex
	Logs        []LogLine           // every log line
	Errors      []string            // every error message
	Config      map[string]string   // what config_get returns
	Metrics     []Metric            // defined metrics; the id is the index
	Values      map[int32][]float64 // recorded values per metric id
	ScaleTarget int32               // current target; scaling is refused (-1) unless ScaleAllow
	ScaleAllow  bool
	LogToStderr bool // also print log lines to stderr
}

// LogLine is one line logged through the log import.
type LogLine struct {
	Level int32
	Msg   string
}

// Metric is one defined metric.
type Metric struct {
	Kind       int32
	Name, Help string
}

// NewFakeHost returns an empty FakeHost with scaling allowed from a target of 1.
func NewFakeHost() *FakeHost {
	return &FakeHost{Config: map[string]string{}, Values: map[int32][]float64{}, ScaleTarget: 1, ScaleAllow: true}
}

// LastError returns the last error message, or "".
func (h *FakeHost) LastError() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.Errors) == 0 {
		return ""
	}
	return h.Errors[len(h.Errors)-1]
}

func hostLog(level int32, msg string) {
	h := Host
	h.mu.Lock()
	defer h.mu.Unlock()
	h.Logs = append(h.Logs, LogLine{level, msg})
	if h.LogToStderr {
		fmt.Fprintf(os.Stderr, "wasmpod log %d: %s\n", level, msg)
	}
}

func hostError(msg string) {
	h := Host
	h.mu.Lock()
	defer h.mu.Unlock()
	h.Errors = append(h.Errors, msg)
}

func hostConfigGet(key string, b []byte) int32 {
	h := Host
	h.mu.Lock()
	defer h.mu.Unlock()
	v, ok := h.Config[key]
	if !ok {
		return -1
	}
	copy(b, v)
	return int32(len(v))
}

func validMetricName(name string) bool {
	if name == "" || len(name) > 128 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '_', c == ':':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

func hostMetricDefine(kind int32, name, help string) int32 {
	h := Host
	h.mu.Lock()
	defer h.mu.Unlock()
	if kind < 0 || kind > 2 {
		return -4
	}
	if !validMetricName(name) {
		return -1
	}
	for i, m := range h.Metrics {
		if m.Name == name {
			if m.Kind != kind {
				return -2
			}
			return int32(i)
		}
	}
	if len(h.Metrics) >= 256 {
		return -3
	}
	h.Metrics = append(h.Metrics, Metric{kind, name, help})
	return int32(len(h.Metrics) - 1)
}

func hostMetricRecord(id int32, value float64) {
	h := Host
	h.mu.Lock()
	defer h.mu.Unlock()
	if id < 0 || int(id) >= len(h.Metrics) {
		return
	}
	h.Values[id] = append(h.Values[id], value)
}

func hostScale(delta int32) int32 {
	h := Host
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.ScaleAllow {
		return -1
	}
	h.ScaleTarget = max(h.ScaleTarget+delta, 0)
	return h.ScaleTarget
}
