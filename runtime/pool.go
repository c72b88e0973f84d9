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
	slotClosed // reserved by Stop; never handed out again
)

type slot struct {
	state atomic.Int32
	inst  atomic.Pointer[instance] // owned by whoever moved the slot to busy or creating
}

// pool hands out instances. The fast path is one compare-and-swap to take an idle slot and one
// store to give it back; waiting (all slots busy) and creating are slow paths.
type pool struct {
	slots   []slot
	waiters atomic.Int32
	mu      sync.Mutex
	wake    chan struct{} // closed and replaced to wake every waiter
}

func newPool(n int) pool {
	return pool{slots: make([]slot, n), wake: make(chan struct{})}
}

// tryIdle takes an idle slot, or returns nil.
func (p *pool) tryIdle() *slot {
	for k := range p.slots {
		s := &p.slots[k]
		if s.state.Load() == slotIdle && s.state.CompareAndSwap(slotIdle, slotBusy) {
			return s
		}
	}
	return nil
}

// tryEmpty claims an empty slot for creating an instance, or returns nil.
func (p *pool) tryEmpty() *slot {
	for k := range p.slots {
		s := &p.slots[k]
		if s.state.Load() == slotEmpty && s.state.CompareAndSwap(slotEmpty, slotCreating) {
			return s
		}
	}
	return nil
}

// put returns a busy slot as idle and wakes waiters.
func (p *pool) put(s *slot) {
	s.state.Store(slotIdle)
	if p.waiters.Load() > 0 {
		p.broadcast()
	}
}

// clear empties a busy or creating slot (its instance is gone) and wakes waiters.
func (p *pool) clear(s *slot) {
	s.inst.Store(nil)
	s.state.Store(slotEmpty)
	if p.waiters.Load() > 0 {
		p.broadcast()
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

// counts returns live instances (idle, busy or being created) and busy ones.
func (p *pool) counts() (live, busy int) {
	for k := range p.slots {
		switch p.slots[k].state.Load() {
		case slotIdle:
			live++
		case slotBusy:
			live++
			busy++
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
			// No warm instance and room for one: create it on this call's path (a cold start).
			m.coldStarts.Add(1)
			inst, err := m.startInstance(ctx)
			if err != nil {
				p.clear(s)
				if timer != nil {
					timer.Stop()
				}
				m.signalRefill()
				return nil, err
			}
			s.inst.Store(inst)
			s.state.Store(slotBusy)
			if timer != nil {
				timer.Stop()
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

// release gives the slot back, or discards its instance if it may not be reused.
func (m *Module) release(s *slot) {
	if s.inst.Load().dead() {
		m.discard(s)
		return
	}
	m.pool.put(s)
}

func (m *Module) discard(s *slot) {
	inst := s.inst.Load()
	m.discards.Add(1)
	inst.close(context.Background())
	m.pool.clear(s)
	m.signalRefill()
}
