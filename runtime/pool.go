package runtime

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Slot states. A slot holds at most one instance; the number of slots is MaxConcurrency, so the
// slots are both the admission limit and the instance pool.
const (
	slotEmpty int32 = iota
	slotIdle
	slotBusy
	slotCreating
	slotClosed  // reserved by Stop; never handed out again
	slotRevoked // taken back by a Stop whose grace ran out while its owner still used it
)

// A slot's state word holds its state in the low stateBits bits and, above them, the number of
// calls that ended on the slot (Stats.Calls sums them over the slots). A call's release moves
// the state and counts the call with the same compare-and-swap, so an exact call counter costs
// the call no locked instruction of its own (on amd64 every atomic write is one: a shared
// counter was a third locked instruction per call, next to the slot's take and release). The
// count changes only with the state, so a compare-and-swap of the state alone is a loop that
// retries only when the state went away and back (move).
const (
	stateBits = 8
	stateMask = 1<<stateBits - 1
)

// Ownership: a busy or creating slot and its instance belong to the goroutine that moved it
// there; an idle slot to the pool; a closed slot to Stop. Stop turns the slots still busy or
// creating after its grace into revoked ones: their owners close their instances when they
// return, and the slot ends closed. Closed is final: once a module stopped, no slot can be taken
// again, so a call admitted before Stop cannot create an instance after it. The pool counts the
// revoked slots whose owners have not returned yet (outstanding): the module's compiled code and
// the engine's wazero runtime, which such an owner's guest code may still use, are released only
// once that count is back to zero (Module.releaseAll, Module.finalRelease).

type slot struct {
	word atomic.Uint64            // state and call count, see stateBits
	inst atomic.Pointer[instance] // owned by whoever moved the slot to busy or creating
}

// state returns the slot's state.
func (s *slot) state() int32 { return int32(s.word.Load() & stateMask) }

// calls returns the number of calls that ended on the slot.
func (s *slot) calls() uint64 { return s.word.Load() >> stateBits }

// move sets the slot's state to `to` if it is `from`, adds calls to its call count, and reports
// whether it did.
func (s *slot) move(from, to int32, calls uint64) bool {
	for {
		w := s.word.Load()
		if int32(w&stateMask) != from {
			return false
		}
		if s.word.CompareAndSwap(w, (w&^stateMask)+calls<<stateBits+uint64(to)) {
			return true
		}
	}
}

// set sets the slot's state to `to` whatever it is, and adds calls to its call count.
func (s *slot) set(to int32, calls uint64) {
	for {
		w := s.word.Load()
		if s.word.CompareAndSwap(w, (w&^stateMask)+calls<<stateBits+uint64(to)) {
			return
		}
	}
}

// pool hands out instances. The fast path is one compare-and-swap to take an idle slot and one
// to give it back (which also counts the call, see stateBits); waiting (all slots busy) and
// creating are slow paths.
type pool struct {
	slots   []slot
	waiters atomic.Int32
	mu      sync.Mutex
	wake    chan struct{} // closed and replaced to wake every waiter

	// outstanding counts the revoked slots whose owners have not returned (Module.closeAll adds
	// one before it revokes a slot, the owner takes it back as it closes the slot); drained runs
	// on the goroutine of the owner that brings it back to zero. Only the slow paths of revoked
	// slots touch them, never a call's own.
	outstanding atomic.Int64
	drained     func()
}

func newPool(n int) pool {
	return pool{slots: make([]slot, n), wake: make(chan struct{})}
}

// tryIdle takes an idle slot, or returns nil.
func (p *pool) tryIdle() *slot {
	for k := range p.slots {
		s := &p.slots[k]
		if s.move(slotIdle, slotBusy, 0) {
			return s
		}
	}
	return nil
}

// tryEmpty claims an empty slot for creating an instance, or returns nil.
func (p *pool) tryEmpty() *slot {
	for k := range p.slots {
		s := &p.slots[k]
		if s.move(slotEmpty, slotCreating, 0) {
			return s
		}
	}
	return nil
}

// put returns a busy or creating slot, with its instance, as idle, counts calls calls that ended
// on it, and wakes waiters. It reports false if Stop revoked the slot meanwhile: then the
// instance is closed and the slot stays closed.
func (p *pool) put(s *slot, calls uint64) bool {
	if !s.move(slotBusy, slotIdle, calls) && !s.move(slotCreating, slotIdle, calls) {
		p.retire(s, calls)
		return false
	}
	if p.waiters.Load() > 0 {
		p.broadcast()
	}
	return true
}

// publishBusy gives a creating slot its new instance and makes it busy for its creator. It
// reports false if Stop revoked the slot meanwhile: then the instance is closed.
func (p *pool) publishBusy(s *slot, inst *instance) bool {
	s.inst.Store(inst)
	if s.move(slotCreating, slotBusy, 0) {
		return true
	}
	p.retire(s, 0)
	return false
}

// clear empties a busy or creating slot (its instance is gone), counts calls calls that ended
// on it, and wakes waiters. A slot Stop revoked meanwhile ends closed instead.
func (p *pool) clear(s *slot, calls uint64) {
	s.inst.Store(nil)
	revoked := false
	if !s.move(slotBusy, slotEmpty, calls) && !s.move(slotCreating, slotEmpty, calls) {
		s.set(slotClosed, calls) // revoked
		revoked = true
	}
	if p.waiters.Load() > 0 {
		p.broadcast()
	}
	if revoked {
		p.ownerReturned()
	}
}

// putCall is put for a call's slot (busy, counting one call) in the common case: the instance
// may be reused and Stop did not revoke the slot. It reports false, having done nothing, in
// every other case; the caller then releases the slot the general way (Module.release). The
// caller wakes waiters (wakeWaiters) after a true. Small enough to be inlined into the call path.
func (s *slot) putCall(inst *instance) bool {
	w := s.word.Load()
	return w&stateMask == uint64(slotBusy) && !inst.dead() && s.word.CompareAndSwap(w, w+1<<stateBits-uint64(slotBusy)+uint64(slotIdle))
}

// wakeWaiters wakes the callers waiting for an instance, if any.
func (p *pool) wakeWaiters() {
	if p.waiters.Load() > 0 {
		p.broadcast()
	}
}

// retire closes the instance of a slot Stop revoked from its owner, who calls it, counts calls
// calls that ended on it, and closes the slot for good.
func (p *pool) retire(s *slot, calls uint64) {
	if inst := s.inst.Load(); inst != nil {
		inst.close(context.Background())
	}
	s.inst.Store(nil)
	s.set(slotClosed, calls)
	if p.waiters.Load() > 0 {
		p.broadcast()
	}
	p.ownerReturned()
}

// ownerReturned is the last step of the owner of a revoked slot, once its instance is closed:
// the last one to return runs drained (which releases what a Close left to it).
func (p *pool) ownerReturned() {
	if p.outstanding.Add(-1) == 0 && p.drained != nil {
		p.drained()
	}
}

func (p *pool) broadcast() {
	p.mu.Lock()
	close(p.wake)
	p.wake = make(chan struct{})
	p.mu.Unlock()
}

func (p *pool) wakeCh() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.wake
}

// reserved returns the instance of slot k if Stop reserved it (drain), else nil: only those are
// Stop's to snapshot and stop; a busy slot's instance may still run a call.
func (p *pool) reserved(k int) *instance {
	s := &p.slots[k]
	if s.state() != slotClosed {
		return nil
	}
	return s.inst.Load()
}

// counts returns live instances (idle, busy or being created) and busy ones.
func (p *pool) counts() (live, busy int) {
	for k := range p.slots {
		switch p.slots[k].state() {
		case slotIdle:
			live++
		case slotBusy:
			live++
			busy++
		case slotRevoked:
			if p.slots[k].inst.Load() != nil {
				live++
				busy++
			}
		case slotCreating:
			live++
		case slotClosed:
			if p.slots[k].inst.Load() != nil {
				live++
			}
		}
	}
	return
}

// acquire returns a busy slot with a ready instance. It never waits longer than the queue
// timeout or the context allows.
func (m *Module) acquire(ctx context.Context) (*slot, error) {
	if s := m.pool.tryIdle(); s != nil {
		return s, nil
	}
	return m.acquireSlow(ctx)
}

func (m *Module) acquireSlow(ctx context.Context) (*slot, error) {
	p := &m.pool
	var timer *time.Timer
	p.waiters.Add(1)
	defer p.waiters.Add(-1)
	for {
		ch := p.wakeCh() // taken before looking, so a release after the look is not missed
		if s := p.tryIdle(); s != nil {
			if timer != nil {
				timer.Stop()
			}
			return s, nil
		}
		if s := p.tryEmpty(); s != nil {
			if timer != nil {
				timer.Stop()
			}
			// A call admitted just before Stop creates no instance: Stop is draining.
			if m.stopping() {
				p.clear(s, 0)
				return nil, m.notRunning(m.State())
			}
			// No warm instance and room for one: create it on this call's path (a cold start).
			m.coldStarts.Add(1)
			inst, err := m.startInstance(ctx)
			if err != nil {
				p.clear(s, 0)
				m.signalRefill()
				return nil, err
			}
			if !p.publishBusy(s, inst) {
				// Stop's grace ran out during the cold start and it took the slot back.
				return nil, m.notRunning(State(m.state.Load()))
			}
			return s, nil
		}
		if st := State(m.state.Load()); st != StateRunning {
			return nil, m.notRunning(st)
		}
		if timer == nil {
			timer = time.NewTimer(m.cfg.QueueTimeout)
		}
		select {
		case <-ch:
		case <-ctx.Done():
			timer.Stop()
			return nil, fmt.Errorf("module %q: waiting for an instance: %w", m.cfg.Name, ctx.Err())
		case <-timer.C:
			m.overloads.Add(1)
			return nil, fmt.Errorf("module %q: %w: all %d instances busy for %s", m.cfg.Name, ErrOverloaded, len(p.slots), m.cfg.QueueTimeout)
		}
	}
}

// release gives the slot back, or discards its instance if it may not be reused, and counts
// calls calls (Stats.Calls) that ended on it: 1 for a call, 0 for the module's own uses.
func (m *Module) release(s *slot, calls uint64) {
	if s.inst.Load().dead() {
		m.discard(s, calls)
		return
	}
	m.pool.put(s, calls)
}

func (m *Module) discard(s *slot, calls uint64) {
	inst := s.inst.Load()
	m.discards.Add(1)
	inst.close(context.Background())
	m.pool.clear(s, calls)
	m.signalRefill()
}
