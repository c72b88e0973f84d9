package runtime

import (
	"context"
	"errors"
	"fmt"
)

// Snapshot takes the state of a running (or paused) module from one of its instances through
// the wasmpod_snapshot export, like a call: it waits for a free instance at most QueueTimeout.
// With several instances, each has its own state; stateful modules should run one.
func (m *Module) Snapshot(ctx context.Context) ([]byte, error) {
	if !m.has[expSnapshot] {
		return nil, fmt.Errorf("module %q: %w: wasmpod_snapshot", m.cfg.Name, ErrNoExport)
	}
	if st := m.State(); st != StateRunning && st != StatePaused {
		return nil, m.notRunning(st)
	}
	s, err := m.acquire(ctx)
	if err != nil {
		return nil, err
	}
	inst := s.inst.Load()
	inst.hasErrMsg = false
	err = inst.callRaw(ctx, expSnapshot)
	var state []byte
	if err == nil {
		state, err = inst.readResult(int64(inst.stack[0]), nil)
	}
	m.release(s, 0)
	if err != nil {
		return nil, fmt.Errorf("module %q: wasmpod_snapshot: %w", m.cfg.Name, err)
	}
	if state == nil {
		state = []byte{}
	}
	return state, nil
}

// Restore feeds a saved state to every instance of a running (or paused) module through the
// wasmpod_restore export. It holds every slot while it does so (calls wait, bounded by their
// queue timeout), so no call sees a mix of old and new state and no instance is created
// without it. An instance that refuses the state is discarded (replaced without it) and the
// refusal is returned.
func (m *Module) Restore(ctx context.Context, state []byte) error {
	if !m.has[expRestore] {
		return fmt.Errorf("module %q: %w: wasmpod_restore", m.cfg.Name, ErrNoExport)
	}
	if st := m.State(); st != StateRunning && st != StatePaused {
		return m.notRunning(st)
	}
	p := &m.pool
	// held is the state each slot had before we took it, plus one: 0 is not held (slotEmpty is 0,
	// so storing the state itself would lose the empty slots we hold and wait for them forever).
	held := make([]int32, len(p.slots))
	release := func() {
		for k, prev := range held {
			s := &p.slots[k]
			switch prev - 1 {
			case slotIdle:
				m.release(s, 0)
			case slotEmpty:
				p.clear(s, 0) // or closed, if Stop revoked it meanwhile
			}
		}
		p.broadcast()
		m.signalRefill()
	}
	p.waiters.Add(1)
	defer p.waiters.Add(-1)
	for {
		ch := p.wakeCh()
		pending := 0
		for k := range p.slots {
			if held[k] != 0 {
				continue
			}
			s := &p.slots[k]
			switch st := s.state(); st {
			case slotIdle:
				if s.move(slotIdle, slotBusy, 0) {
					held[k] = slotIdle + 1
					continue
				}
			case slotEmpty:
				// Hold empty slots too, so no instance is created without the state meanwhile.
				if s.move(slotEmpty, slotCreating, 0) {
					held[k] = slotEmpty + 1
					continue
				}
			case slotClosed, slotRevoked:
				release()
				return m.notRunning(m.State())
			}
			pending++
		}
		if pending == 0 {
			break
		}
		select {
		case <-ch:
		case <-ctx.Done():
			release()
			return fmt.Errorf("module %q: restore: waiting for in-flight calls: %w", m.cfg.Name, ctx.Err())
		}
	}
	var errs []error
	for k, prev := range held {
		if prev != slotIdle+1 {
			continue
		}
		inst := p.slots[k].inst.Load()
		if err := inst.restore(ctx, state); err != nil {
			inst.broken = true // released below, so discarded and replaced
			errs = append(errs, err)
		}
	}
	release()
	return errors.Join(errs...)
}
