package supervisor

import (
	"context"
	"errors"
	"testing"
	"time"
)

// These tests check what blocks and what releases it, never how long anything takes.

func newTestScheduler() *Scheduler {
	return NewScheduler(SchedulerConfig{Quiet: 100 * time.Microsecond, LowSlots: 1})
}

// eventually polls cond; it fails the test only after a generous minute.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func scavenging(t *testing.T, s *Scheduler) context.Context {
	t.Helper()
	ctx, err := s.AcquireLow(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.ReleaseLow)
	return ctx
}

func TestSchedulerQuietHostDoesNotPark(t *testing.T) {
	s := newTestScheduler()
	ctx := scavenging(t, s)
	for range 1000 {
		s.Yield(ctx, nil)
	}
	if _, total := s.Parked(); total != 0 {
		t.Fatalf("parked %d times on a quiet host", total)
	}
}

func TestSchedulerYield(t *testing.T) {
	for _, tc := range []struct {
		name string
		// release ends the block: it gets the scheduler, the cut channel's closer and the
		// context's cancel.
		release func(s *Scheduler, cut func(), cancel func())
		// stillBusy: the higher priority work is still in flight when Yield returns.
		stillBusy bool
	}{
		{"work ends", func(s *Scheduler, _, _ func()) { s.Exit() }, false},
		{"call is cut", func(_ *Scheduler, cut, _ func()) { cut() }, true},
		{"context ends", func(_ *Scheduler, _, cancel func()) { cancel() }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestScheduler()
			lctx := scavenging(t, s)
			ctx, cancel := context.WithCancel(lctx)
			defer cancel()
			cut := make(chan struct{})
			s.Enter()
			returned := make(chan struct{})
			go func() {
				s.Yield(ctx, cut)
				close(returned)
			}()
			eventually(t, "the guest to park", func() bool { n, _ := s.Parked(); return n == 1 })
			select {
			case <-returned:
				t.Fatal("Yield returned while higher priority work was in flight")
			default:
			}
			tc.release(s, func() { close(cut) }, cancel)
			<-returned
			if busy := s.Busy() > 0; busy != tc.stillBusy {
				t.Fatalf("busy %v when Yield returned, want %v", busy, tc.stillBusy)
			}
			if n, total := s.Parked(); n != 0 || total != 1 {
				t.Fatalf("parked now %d (want 0), total %d (want 1)", n, total)
			}
		})
	}
}

func TestSchedulerOnlyParksScavengingWork(t *testing.T) {
	s := newTestScheduler()
	s.Enter()
	defer s.Exit()
	// A health probe or lifecycle hook of a low-priority module runs on a context that did not
	// come from AcquireLow: never parked, even on a busy host.
	s.Yield(context.Background(), nil)
	if _, total := s.Parked(); total != 0 {
		t.Fatalf("unmarked work parked %d times", total)
	}
	// Another scheduler's mark does not count either.
	other := newTestScheduler()
	s.Yield(scavenging(t, other), nil)
	if _, total := s.Parked(); total != 0 {
		t.Fatalf("foreign scavenging work parked %d times", total)
	}
}

func TestSchedulerRecentWorkParksOneWindow(t *testing.T) {
	s := newTestScheduler()
	ctx := scavenging(t, s)
	s.Enter()
	s.Exit() // work came and went since the host was last seen quiet
	s.Yield(ctx, nil)
	if _, total := s.Parked(); total != 1 {
		t.Fatalf("parked %d times after recent work, want 1", total)
	}
	s.Yield(ctx, nil) // quiet confirmed: no more parking
	if _, total := s.Parked(); total != 1 {
		t.Fatalf("parked %d times once quiet, want 1", total)
	}
}

func TestSchedulerAcquireLow(t *testing.T) {
	t.Run("slots", func(t *testing.T) {
		s := newTestScheduler() // one low slot
		if _, err := s.AcquireLow(context.Background()); err != nil {
			t.Fatal(err)
		}
		got := make(chan error, 1)
		go func() {
			_, err := s.AcquireLow(context.Background())
			got <- err
		}()
		select {
		case err := <-got:
			t.Fatalf("second low call admitted with one slot: %v", err)
		case <-time.After(10 * time.Millisecond): // not a timing assertion: only a chance to fail
		}
		s.ReleaseLow()
		if err := <-got; err != nil {
			t.Fatal(err)
		}
		s.ReleaseLow()
	})
	t.Run("busy host then quiet", func(t *testing.T) {
		s := newTestScheduler()
		s.Enter()
		got := make(chan error, 1)
		go func() {
			_, err := s.AcquireLow(context.Background())
			got <- err
		}()
		eventually(t, "the call to park", func() bool { n, _ := s.Parked(); return n == 1 })
		s.Exit()
		if err := <-got; err != nil {
			t.Fatal(err)
		}
		s.ReleaseLow()
	})
	t.Run("busy host, caller gives up", func(t *testing.T) {
		s := newTestScheduler()
		s.Enter()
		defer s.Exit()
		ctx, cancel := context.WithCancel(context.Background())
		got := make(chan error, 1)
		go func() {
			_, err := s.AcquireLow(ctx)
			got <- err
		}()
		eventually(t, "the call to park", func() bool { n, _ := s.Parked(); return n == 1 })
		cancel()
		if err := <-got; !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v, want context.Canceled", err)
		}
		// its slot was given back
		select {
		case s.slots <- struct{}{}:
			<-s.slots
		default:
			t.Fatal("the abandoned call kept its low slot")
		}
	})
}
