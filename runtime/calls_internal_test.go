package runtime

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/internal/wasmbuild"
)

// A call still running when Stop gives up waiting for it (a trusted one, which cannot be cut)
// has its slot revoked; when it returns, its instance is closed, its slot ends closed, and the
// call is counted in Stats.Calls like any other: whether its instance was fine (pool.put finds
// the slot revoked and retires it) or must be discarded (pool.clear).
func TestCallCountedWhenSlotRevoked(t *testing.T) {
	e := imageEngine(t, Config{})
	wasm := readTestFile(t, wasmbuild.WAT(t, "testdata/trapkit.wat"))
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		discard bool
	}{{"kept", false}, {"discarded", true}} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultModuleConfig("revoked-" + tc.name)
			cfg.Trusted = true
			cfg.MaxConcurrency = 2
			cfg.CallTimeout = 10 * time.Millisecond // how long Stop waits for a trusted call past its grace
			m, err := e.Load(ctx, wasm, cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { m.Close(ctx) })
			if err := m.Start(ctx, StartOptions{}); err != nil {
				t.Fatal(err)
			}
			if _, err := m.Call(ctx, RoleHandle, []byte("hi"), nil); err != nil {
				t.Fatal(err)
			}
			// A call in flight: it took a slot as Module.call does and has not returned yet.
			s := m.pool.tryIdle()
			if s == nil {
				t.Fatal("no idle slot")
			}
			err = m.Stop(ctx, StopOptions{Grace: time.Millisecond})
			if err == nil || !strings.Contains(err.Error(), "still running") {
				t.Fatalf("stop: %v; want a call still running", err)
			}
			if st := s.state(); st != slotRevoked {
				t.Fatalf("slot state %d after stop, want revoked (%d)", st, slotRevoked)
			}
			if tc.discard {
				s.inst.Load().broken = true
			}
			m.release(s, 1) // the call returns
			if st := s.state(); st != slotClosed || s.inst.Load() != nil {
				t.Fatalf("slot state %d with instance %v after the call returned, want closed and none", st, s.inst.Load())
			}
			if st := m.Stats(); st.Calls != 2 || st.Instances != 0 {
				t.Fatalf("calls %d instances %d; want 2 and 0", st.Calls, st.Instances)
			}
		})
	}
}

// The slot's call count and its state share one word: every state change keeps the count, and
// a move from a state the slot is not in changes nothing.
func TestSlotWordKeepsCount(t *testing.T) {
	var s slot
	steps := []struct {
		from, to int32
		calls    uint64
		ok       bool
	}{
		{slotEmpty, slotCreating, 0, true},
		{slotCreating, slotBusy, 0, true},
		{slotBusy, slotIdle, 1, true},
		{slotBusy, slotIdle, 1, false}, // not busy: no count either
		{slotIdle, slotBusy, 0, true},
		{slotBusy, slotRevoked, 0, true},
		{slotBusy, slotIdle, 1, false},
	}
	var want uint64
	for k, st := range steps {
		if got := s.move(st.from, st.to, st.calls); got != st.ok {
			t.Fatalf("step %d: move %d->%d = %v, want %v", k, st.from, st.to, got, st.ok)
		}
		if st.ok {
			want += st.calls
		}
		if s.calls() != want {
			t.Fatalf("step %d: %d calls, want %d", k, s.calls(), want)
		}
	}
	s.set(slotClosed, 1)
	if s.state() != slotClosed || s.calls() != want+1 {
		t.Fatalf("after set: state %d calls %d, want %d and %d", s.state(), s.calls(), slotClosed, want+1)
	}
	// A count past 32 bits stays exact.
	s.word.Store(1<<40<<stateBits | uint64(slotBusy))
	if !s.move(slotBusy, slotIdle, 1) || s.calls() != 1<<40+1 || s.state() != slotIdle {
		t.Fatalf("large count: state %d calls %d", s.state(), s.calls())
	}
}

// putCall, the call path's inlined release, takes only the common case (a busy slot whose
// instance may be reused): it then counts the call and makes the slot idle. A slot Stop
// revoked and an instance that trapped or was cut are left untouched for Module.release,
// which retires or discards them.
func TestPutCallOnlyCommonCase(t *testing.T) {
	for _, tc := range []struct {
		name    string
		state   int32
		broken  bool
		expired bool
		ok      bool
	}{
		{"busy", slotBusy, false, false, true},
		{"revoked", slotRevoked, false, false, false},
		{"closed", slotClosed, false, false, false},
		{"creating", slotCreating, false, false, false},
		{"trapped", slotBusy, true, false, false},
		{"cut", slotBusy, false, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var s slot
			inst := &instance{broken: tc.broken}
			inst.expired.Store(tc.expired)
			const before = 41
			s.word.Store(before<<stateBits | uint64(tc.state))
			wantState, wantCalls := tc.state, uint64(before)
			if tc.ok {
				wantState, wantCalls = slotIdle, before+1
			}
			if got := s.putCall(inst); got != tc.ok {
				t.Fatalf("putCall = %v, want %v", got, tc.ok)
			}
			if s.state() != wantState || s.calls() != wantCalls {
				t.Fatalf("state %d calls %d, want %d and %d", s.state(), s.calls(), wantState, wantCalls)
			}
		})
	}
}
