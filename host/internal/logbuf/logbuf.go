// Package logbuf keeps the recent log lines of each module in a bounded ring buffer, lets readers
// follow new lines, and copies every line to the host's structured log. A Hub is the
// runtime.LogSink the host gives its engine.
package logbuf

import (
	"context"
	"log/slog"
	"sync"

	"github.com/wasmpod/wasmpod/runtime"
)

// Config configures a Hub.
type Config struct {
	// Lines is how many lines are kept per module.
	Lines int
	// FollowBuffer is the channel buffer of a follower; lines are dropped for a follower that
	// falls that far behind (the call path never blocks on a slow reader).
	FollowBuffer int
	// Logger receives every line; nil discards.
	Logger *slog.Logger
}

// DefaultConfig returns the host's defaults.
func DefaultConfig() Config {
	return Config{
		// 1000 lines: enough to see what led up to a failure, ~100 KiB per module.
		Lines: 1000,
		// 256: a follower over a slow network still keeps up with bursts.
		FollowBuffer: 256,
	}
}

// Hub routes log lines to per-module rings.
type Hub struct {
	cfg Config
	mu  sync.Mutex
	mod map[string]*ring
}

type ring struct {
	lines []runtime.LogEntry
	next  int
	full  bool
	subs  map[chan runtime.LogEntry]struct{}
}

// New returns a Hub.
func New(cfg Config) *Hub {
	if cfg.Lines <= 0 {
		cfg.Lines = DefaultConfig().Lines
	}
	if cfg.FollowBuffer <= 0 {
		cfg.FollowBuffer = DefaultConfig().FollowBuffer
	}
	return &Hub{cfg: cfg, mod: map[string]*ring{}}
}

func (h *Hub) ring(module string) *ring {
	r := h.mod[module]
	if r == nil {
		r = &ring{lines: make([]runtime.LogEntry, h.cfg.Lines), subs: map[chan runtime.LogEntry]struct{}{}}
		h.mod[module] = r
	}
	return r
}

var levels = [...]slog.Level{slog.LevelDebug, slog.LevelInfo, slog.LevelWarn, slog.LevelError}

// Log implements runtime.LogSink.
func (h *Hub) Log(e runtime.LogEntry) {
	h.mu.Lock()
	r := h.ring(e.Module)
	r.lines[r.next] = e
	r.next++
	if r.next == len(r.lines) {
		r.next, r.full = 0, true
	}
	for c := range r.subs {
		select {
		case c <- e:
		default: // slow follower: drop
		}
	}
	h.mu.Unlock()
	if l := h.cfg.Logger; l != nil {
		lvl := slog.LevelInfo
		if e.Level >= 0 && int(e.Level) < len(levels) {
			lvl = levels[e.Level]
		}
		if l.Enabled(context.Background(), lvl) {
			l.LogAttrs(context.Background(), lvl, e.Message, slog.String("module", e.Module), slog.String("source", e.Source))
		}
	}
}

// All asks Tail and Follow for every kept line. Any n below zero does; 0 asks for none, as a
// reader following only new lines (`wasmpod logs --tail 0 -f`) wants.
const All = -1

// Tail returns up to n of the module's most recent lines, oldest first: none for n == 0, every
// kept line for n < 0 (All).
func (h *Hub) Tail(module string, n int) []runtime.LogEntry {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.tail(module, n)
}

func (h *Hub) tail(module string, n int) []runtime.LogEntry {
	r := h.mod[module]
	if r == nil || n == 0 {
		return nil
	}
	var all []runtime.LogEntry
	if r.full {
		all = append(all, r.lines[r.next:]...)
	}
	all = append(all, r.lines[:r.next]...)
	if n > 0 && len(all) > n {
		all = all[len(all)-n:]
	}
	return all
}

// Follow returns the last n lines (as Tail: none for 0, every kept line for All) and a channel
// of the lines logged after them, atomically (no line is lost or repeated between the two).
// cancel ends the subscription and closes the channel.
func (h *Hub) Follow(module string, n int) (tail []runtime.LogEntry, lines <-chan runtime.LogEntry, cancel func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	tail = h.tail(module, n)
	c := make(chan runtime.LogEntry, h.cfg.FollowBuffer)
	r := h.ring(module)
	r.subs[c] = struct{}{}
	var once sync.Once
	return tail, c, func() {
		once.Do(func() {
			h.mu.Lock()
			delete(r.subs, c)
			h.mu.Unlock()
			close(c)
		})
	}
}
