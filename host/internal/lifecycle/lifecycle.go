// Package lifecycle is how the host's composition root starts and stops its parts (cluster
// node, supervisor, listeners, scatter service, ...): each part, once it has started, registers
// the function that stops it, and the stack stops them in reverse order (the last started
// first). A start that fails half-way stops exactly what had started, by the same path as a
// normal stop; there is no per-error teardown to keep in step.
package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
)

// Stack holds the stop functions of the parts started so far. The zero value is an empty
// stack. Safe for concurrent use; Stop runs the stop functions on the caller's goroutine.
type Stack struct {
	mu    sync.Mutex
	parts []part
}

type part struct {
	name string
	stop func(context.Context) error
}

// Push registers the stop function of the part called name, which has just started. A stop
// function must bound its own wait (it gets Stop's ctx) and may be called once only.
func (s *Stack) Push(name string, stop func(context.Context) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.parts = append(s.parts, part{name: name, stop: stop})
}

// PushFunc registers a stop function that takes no context and cannot fail (a listener's or a
// background loop's).
func (s *Stack) PushFunc(name string, stop func()) {
	s.Push(name, func(context.Context) error { stop(); return nil })
}

// Stop stops every registered part, the last registered first, each even if an earlier one
// failed or panicked, and forgets them: a second Stop stops nothing. The error joins the parts'
// errors, each prefixed with its part's name; a stop function's panic is one of them (with its
// stack), so that a bug in stopping a listener does not leave the supervisor, and the modules'
// snapshots, unstopped.
func (s *Stack) Stop(ctx context.Context) error {
	s.mu.Lock()
	parts := s.parts
	s.parts = nil
	s.mu.Unlock()
	var errs []error
	for i := len(parts) - 1; i >= 0; i-- {
		if err := parts[i].stopSafely(ctx); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", parts[i].name, err))
		}
	}
	return errors.Join(errs...)
}

// Len is how many parts are registered (not yet stopped).
func (s *Stack) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.parts)
}

// stopSafely runs p's stop function, turning a panic into an error.
func (p part) stopSafely(ctx context.Context) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v\n%s", r, debug.Stack())
		}
	}()
	return p.stop(ctx)
}
