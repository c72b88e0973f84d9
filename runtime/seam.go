package runtime

import (
	"time"
)

// InstanceState is host-side state that a layer above the runtime keeps for one instance: open
// connections, the last response of a pod-local call. See [Caller.State].
type InstanceState interface {
	// Close releases the state. The runtime calls it exactly once, when the instance is
	// discarded for any reason (trap, deadline, stop, scale-down, upgrade, engine close), after
	// the instance's last call has returned and on the goroutine that discards it.
	Close()
}

// seam is an instance's part of the host-function seam: the state layers keep for it. The current
// call's deadline is the instance's own (instance.deadline), read by [Caller.Deadline].
type seam struct {
	states []keyedState // few keys per engine: a slice beats a map
	closed bool
}

type keyedState struct {
	key   any
	state InstanceState
}

// State returns the caller instance's state for key, creating it with create on first use. The
// state lives exactly as long as the instance: the runtime closes it when it discards the
// instance, for whatever reason, so nothing a host function opened for a guest outlives it. key
// is compared with ==; use an unexported type's value so layers cannot collide. State returns
// nil when the caller is not an instance of this engine, or when create returns nil.
//
// An instance runs one call at a time, so a host function may use its instance's state without
// locking against the instance's other host functions; Close runs after the last call returned.
func (c Caller) State(key any, create func() InstanceState) InstanceState {
	if c.inst == nil {
		return nil
	}
	s := &c.inst.seam
	for _, ks := range s.states {
		if ks.key == key {
			return ks.state
		}
	}
	if s.closed {
		return nil
	}
	st := create()
	if st == nil {
		return nil
	}
	s.states = append(s.states, keyedState{key: key, state: st})
	return st
}

// Deadline is the deadline of the caller's current call: the earlier of its context's deadline
// and its module's CallTimeout from the call's start, the moment the runtime cuts it. ok is false
// for trusted modules, which are not cut (use the context's deadline). The runtime fixes a
// call's deadline when it is first needed (the guest's first host import or yield, at most one
// fuel refill of guest work after the start), so "the call's start" is that moment.
func (c Caller) Deadline() (deadline time.Time, ok bool) {
	if c.inst == nil {
		return time.Time{}, false
	}
	dl := c.inst.stamp() // a nanotime; 0 between calls and for trusted modules
	if dl == 0 {
		return time.Time{}, false
	}
	return time.Now().Add(time.Duration(dl - nanotime())), true
}

// InRange reports whether [ptr, ptr+n) lies inside the caller's memory, so a host function can
// refuse a bad buffer before it blocks or does work it would then throw away.
func (c Caller) InRange(ptr, n uint32) bool {
	if c.inst == nil || c.inst.mem == nil {
		return false
	}
	return uint64(ptr)+uint64(n) <= uint64(c.inst.mem.Size())
}

// closeSeam closes every state of the instance; the instance's close calls it.
func (i *instance) closeSeam() {
	s := &i.seam
	s.closed = true
	states := s.states
	s.states = nil
	for _, ks := range states {
		ks.state.Close()
	}
}
