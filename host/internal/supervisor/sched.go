package supervisor

import (
	"context"
	"sync/atomic"
	"time"
)

// Scheduler gives the CPU to normal- and high-priority work and lets low-priority guests
// scavenge what is left ("the sidecar scavenges spare CPU, main keeps low latency").
//
// Admitting low-priority calls only at their start is not enough: once a long low-priority guest
// call runs, it holds a core until it returns, and on a small host (GOMAXPROCS=2: the main
// module's calls, the ingress goroutines and the sidecar share two processors; compiled wasm is
// not preempted by the Go scheduler) that alone multiplied main's p99 by 19. So low-priority
// guest code is parked while it runs: a low-priority module is loaded with a Yield hook
// (runtime.ModuleConfig.Yield) that its guarded guest calls every few hundred loop iterations,
// and the hook blocks — the goroutine parks, its processor and OS thread are free — while the
// host is busy.
//
// The policy: low-priority guest code runs only while the host is quiet, that is when no
// normal- or high-priority work is in flight and none started during the last Quiet window (so
// the short gaps between the requests of a steady stream do not let the sidecar in, and the
// next request does not find it on a core). At most LowSlots low-priority calls run at once
// (GOMAXPROCS-1 by default: one processor is always left for the ingress goroutines that carry
// the next request, which could otherwise wait for a guest to yield).
//
// Costs. Normal and high priority work is bracketed by Enter and Exit: one atomic add each, no
// clock read, no hook in the guest. A low-priority guest pays one call out to Go per
// LowYieldInterval iterations, and its Yield is two atomic loads while the host stays quiet.
// A parked guest polls the host's state once per Quiet window (a timer), so nothing on the high
// priority path ever wakes it: it resumes between Quiet and 2*Quiet after the host went idle.
//
// Only work marked as scavenging (AcquireLow's context) is parked; the same module's health
// probes, start, stop, snapshot and restore run unparked, so a busy host does not fail a
// sidecar's probes. A parked call still has its deadline: if the host stays busy longer than
// the call's timeout the call is cut like any other, so scavenging modules want a timeout
// longer than the busy periods they may sit through.
type Scheduler struct {
	quiet time.Duration
	slots chan struct{}

	// state is entries<<32 | in-flight count of normal and high priority work: any change of
	// the value means work started or ended.
	state atomic.Uint64
	// clear is a value of state seen unchanged, with nothing in flight, for a whole quiet window.
	// While state still equals it the host is quiet. Two parked guests may store different
	// values; a stale one only costs the next low guest one more quiet window.
	clear atomic.Uint64

	parked atomic.Int64  // low-priority guests parked now
	parks  atomic.Uint64 // times a low-priority guest parked
}

// SchedulerConfig configures a Scheduler.
type SchedulerConfig struct {
	// Quiet is how long the host must have had no normal or high priority work in flight before
	// low-priority guest code runs again; it is also the poll period of a parked guest. Zero
	// means 1ms: far above the gap between back-to-back requests of a busy client (tens of
	// microseconds), far below a tick interval.
	Quiet time.Duration
	// LowSlots is the most low-priority calls (and ticks) running at once. Zero means 1.
	LowSlots int
}

// NewScheduler returns a scheduler with nothing in flight: the host starts quiet.
func NewScheduler(cfg SchedulerConfig) *Scheduler {
	if cfg.Quiet <= 0 {
		cfg.Quiet = time.Millisecond
	}
	if cfg.LowSlots <= 0 {
		cfg.LowSlots = 1
	}
	return &Scheduler{quiet: cfg.Quiet, slots: make(chan struct{}, cfg.LowSlots)}
}

// Enter records the start of normal or high priority work. Pair it with Exit.
func (s *Scheduler) Enter() { s.state.Add(1<<32 | 1) }

// Exit records the end of work started with Enter.
func (s *Scheduler) Exit() { s.state.Add(^uint64(0)) }

// Busy reports how much normal and high priority work is in flight.
func (s *Scheduler) Busy() int { return int(uint32(s.state.Load())) }

// Parked reports how many low-priority guests are parked now, and how many times one parked.
func (s *Scheduler) Parked() (now int, total uint64) {
	return int(s.parked.Load()), s.parks.Load()
}

type scavengeKey struct{}

// AcquireLow admits one low-priority call: it waits for a free low slot and for the host to be
// quiet, or until ctx ends (its error). The returned context marks the call as scavenging work,
// which Yield parks while the host is busy; pass it to the call. Call ReleaseLow when the call
// returns.
func (s *Scheduler) AcquireLow(ctx context.Context) (context.Context, error) {
	select {
	case s.slots <- struct{}{}:
	case <-ctx.Done():
		return ctx, ctx.Err()
	}
	if !s.wait(ctx, nil) {
		<-s.slots
		return ctx, ctx.Err()
	}
	return context.WithValue(ctx, scavengeKey{}, s), nil
}

// ReleaseLow ends a call admitted by AcquireLow.
func (s *Scheduler) ReleaseLow() { <-s.slots }

// Yield is the runtime.ModuleConfig.Yield hook of low-priority modules. For scavenging work
// (a context from AcquireLow) it blocks while the host is busy, returning once it is quiet, ctx
// ends, or cut closes (the call is being cut: the runtime then ends it). Anything else returns
// at once.
func (s *Scheduler) Yield(ctx context.Context, cut <-chan struct{}) {
	if s.state.Load() == s.clear.Load() {
		return
	}
	if ctx.Value(scavengeKey{}) != s {
		return
	}
	s.wait(ctx, cut)
}

// wait returns true once the host is quiet, false if ctx ends or cut closes first.
func (s *Scheduler) wait(ctx context.Context, cut <-chan struct{}) bool {
	v := s.state.Load()
	if v == s.clear.Load() {
		return true
	}
	s.parked.Add(1)
	s.parks.Add(1)
	defer s.parked.Add(-1)
	t := time.NewTimer(s.quiet)
	defer t.Stop()
	for {
		select {
		case <-cut:
			return false
		case <-ctx.Done():
			return false
		case <-t.C:
		}
		w := s.state.Load()
		if w == v && uint32(w) == 0 {
			s.clear.Store(w)
			return true
		}
		if w == s.clear.Load() {
			return true // another parked guest confirmed it meanwhile
		}
		v = w
		t.Reset(s.quiet)
	}
}
