package runtime

import (
	"fmt"
	"time"
)

// State is a module's lifecycle state. The same words are used by the host's API, CLI and metrics.
type State int32

// The lifecycle: created -> starting -> running <-> paused -> stopping -> stopped, or failed.
const (
	StateCreated State = iota
	StateStarting
	StateRunning
	StatePaused
	StateStopping
	StateStopped
	StateFailed
)

var stateNames = [...]string{"created", "starting", "running", "paused", "stopping", "stopped", "failed"}

// String returns the lower-case name used everywhere (events, JSON, metrics labels).
func (s State) String() string {
	if s < 0 || int(s) >= len(stateNames) {
		return fmt.Sprintf("state(%d)", int32(s))
	}
	return stateNames[s]
}

// MarshalText makes states render as their names in JSON.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText parses a state's name (the inverse of MarshalText).
func (s *State) UnmarshalText(b []byte) error {
	v, err := ParseState(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// ParseState is the inverse of State.String.
func ParseState(s string) (State, error) {
	for i, n := range stateNames {
		if n == s {
			return State(i), nil
		}
	}
	return 0, fmt.Errorf("unknown state %q", s)
}

// States lists all states in lifecycle order.
func States() []State {
	out := make([]State, len(stateNames))
	for i := range out {
		out[i] = State(i)
	}
	return out
}

// legal lists the allowed transitions. Anything else is rejected with ErrIllegalTransition.
var legal = map[State][]State{
	StateCreated:  {StateStarting, StateStopped},
	StateStarting: {StateRunning, StateFailed, StateStopping},
	StateRunning:  {StatePaused, StateStopping, StateFailed},
	StatePaused:   {StateRunning, StateStopping, StateFailed},
	StateStopping: {StateStopped, StateFailed},
	StateStopped:  {},
	StateFailed:   {StateStopped},
}

// CanTransition reports whether from -> to is a legal lifecycle transition.
func CanTransition(from, to State) bool {
	for _, s := range legal[from] {
		if s == to {
			return true
		}
	}
	return false
}

// Event is one observed lifecycle transition.
type Event struct {
	Module string
	From   State
	To     State
	Time   time.Time
	// Reason says why, e.g. "start", "stop requested", "start export failed: ...".
	Reason string
}

func (e Event) String() string {
	return fmt.Sprintf("%s: %s -> %s (%s)", e.Module, e.From, e.To, e.Reason)
}
