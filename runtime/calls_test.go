package runtime_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/runtime"
)

// Stats.Calls is exact: every call that returns is counted once, whatever its outcome and
// whatever happens to its instance and slot meanwhile (traps discard and replace instances,
// Scale closes idle ones and creates new ones, all slots busy makes calls overload without an
// instance). The counts live in the slots' state words (pool.go), so this is what catches a
// count lost with a replaced instance or a racing release.
func TestStatsCallsExactUnderConcurrency(t *testing.T) {
	e := newEngine(t, runtime.DefaultConfig())
	for _, tc := range []struct {
		name    string
		trusted bool
		scale   bool // a goroutine scales the warm pool up and down meanwhile
		queue   time.Duration
	}{
		{"guarded", false, false, 5 * time.Second},
		{"trusted", true, false, 5 * time.Second},
		{"guarded-scale", false, true, 5 * time.Second},
		{"trusted-scale-overload", true, true, time.Microsecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := runtime.DefaultModuleConfig("calls-" + tc.name)
			cfg.Trusted = tc.trusted
			cfg.MaxConcurrency = 3
			cfg.QueueTimeout = tc.queue
			m := started(t, e, trapkit(t), cfg)
			ctx := context.Background()
			const goroutines, perG = 8, 300
			var calls, errs, traps, guestErrs, overloads atomic.Uint64
			var mu sync.Mutex
			var unexpected []error
			var wg sync.WaitGroup
			stopScale := make(chan struct{})
			scaled := make(chan struct{})
			go func() {
				defer close(scaled)
				for k := 0; tc.scale; k++ {
					select {
					case <-stopScale:
						return
					default:
					}
					if err := m.Scale(k % 4); err != nil {
						t.Error(err)
						return
					}
					time.Sleep(200 * time.Microsecond)
				}
			}()
			for g := range goroutines {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for k := range perG {
						in := []byte{'e', byte(g), byte(k)}
						switch k % 7 {
						case 3:
							in[0] = 0 // trap: the instance is discarded and replaced
						case 5:
							in[0] = 7 // guest error: the instance is kept
						}
						_, err := m.Call(ctx, runtime.RoleHandle, in, nil)
						calls.Add(1)
						if err == nil {
							continue
						}
						errs.Add(1)
						switch {
						case errors.Is(err, runtime.ErrTrap):
							traps.Add(1)
						case errors.Is(err, runtime.ErrGuest):
							guestErrs.Add(1)
						case errors.Is(err, runtime.ErrOverloaded):
							overloads.Add(1)
						default:
							mu.Lock()
							unexpected = append(unexpected, err)
							mu.Unlock()
						}
					}
				}()
			}
			wg.Wait()
			close(stopScale)
			<-scaled
			if len(unexpected) > 0 {
				t.Fatalf("%d unexpected errors, first: %v", len(unexpected), unexpected[0])
			}
			s := m.Stats()
			got := [5]uint64{s.Calls, s.Errors, s.Traps, s.GuestErrors, s.Overloads}
			want := [5]uint64{calls.Load(), errs.Load(), traps.Load(), guestErrs.Load(), overloads.Load()}
			if got != want {
				t.Fatalf("stats calls, errors, traps, guest errors, overloads = %v; the callers saw %v", got, want)
			}
			if s.Discards < s.Traps {
				t.Fatalf("%d traps but %d discards", s.Traps, s.Discards)
			}
			// The counts survive the module's stop: the slots keep them when they close.
			if err := m.Stop(ctx, runtime.StopOptions{}); err != nil {
				t.Fatal(err)
			}
			if after := m.Stats().Calls; after != want[0] {
				t.Fatalf("calls after stop %d, before %d", after, want[0])
			}
		})
	}
}

// A call cut because its module stopped is counted like any other: Stop cuts it, its instance
// is discarded and its slot reserved, and Stats still has it (and every call before it).
func TestStatsCallsCountCallsCutByStop(t *testing.T) {
	e := newEngine(t, runtime.DefaultConfig())
	cfg := runtime.DefaultModuleConfig("calls-cut")
	cfg.MaxConcurrency = 2
	cfg.CallTimeout = time.Minute
	m := started(t, e, trapkit(t), cfg)
	ctx := context.Background()
	const n = 50
	for k := range n {
		if _, err := m.Call(ctx, runtime.RoleHandle, []byte(fmt.Sprint("e", k)), nil); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan error, 1)
	go func() {
		_, err := m.Call(ctx, runtime.RoleHandle, []byte{5}, nil) // spins until cut
		done <- err
	}()
	eventually(t, "the spinning call holds an instance", func() bool { return m.Stats().Busy == 1 })
	stopErr := m.Stop(ctx, runtime.StopOptions{Grace: 10 * time.Millisecond})
	if stopErr == nil || !strings.Contains(stopErr.Error(), "cut") {
		t.Fatalf("stop: %v; want the grace period over and a call cut", stopErr)
	}
	if err := <-done; !errors.Is(err, runtime.ErrNotRunning) {
		t.Fatalf("spinning call: %v; want cut with ErrNotRunning", err)
	}
	if s := m.Stats(); s.Calls != n+1 || s.Errors != 1 {
		t.Fatalf("calls %d errors %d; want %d and 1", s.Calls, s.Errors, n+1)
	}
}

// The call path copies an input that fits the guest's buffer straight in; anything else goes
// through the checks: the engine's input limit (also below the buffer's size) and a larger
// buffer asked of the guest (which trapkit refuses past 64 KiB).
func TestCallInputLimits(t *testing.T) {
	for _, tc := range []struct {
		name     string
		maxInput uint32
		size     int
		want     error
	}{
		{"fits", 100, 100, nil},
		{"over a limit below the buffer", 100, 101, runtime.ErrInput},
		{"buffer size", 1 << 20, 65536, nil},
		{"needs a larger buffer", 1 << 20, 65537, runtime.ErrTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ecfg := runtime.DefaultConfig()
			ecfg.MaxInputBytes = tc.maxInput
			e := newEngine(t, ecfg)
			m := started(t, e, trapkit(t), runtime.DefaultModuleConfig("input"))
			in := []byte(strings.Repeat("e", tc.size))
			out, err := m.Call(context.Background(), runtime.RoleHandle, in, nil)
			if tc.want != nil {
				if !errors.Is(err, tc.want) {
					t.Fatalf("%d bytes: %v, want %v", tc.size, err, tc.want)
				}
				return
			}
			if err != nil || string(out) != string(in) {
				t.Fatalf("%d bytes: echoed %d bytes, %v", tc.size, len(out), err)
			}
		})
	}
}

// Concurrent callers never share an instance: every call has its instance to itself from
// writing its input to reading its output, on the fast path (Module.call) and after traps
// replace instances. Each call echoes an input unique to it, long enough that a second call
// on the same instance would overwrite it before it is read back; under -race, two calls on
// one instance are also a data race on its fields.
func TestConcurrentCallsNeverShareAnInstance(t *testing.T) {
	e := newEngine(t, runtime.DefaultConfig())
	for _, trusted := range []bool{false, true} {
		t.Run(fmt.Sprint("trusted=", trusted), func(t *testing.T) {
			cfg := runtime.DefaultModuleConfig(fmt.Sprint("exclusive-", trusted))
			cfg.Trusted = trusted
			cfg.MaxConcurrency = 2
			cfg.QueueTimeout = 10 * time.Second
			m := started(t, e, trapkit(t), cfg)
			ctx := context.Background()
			const goroutines, perG = 6, 200
			var wg sync.WaitGroup
			var bad atomic.Uint64
			for g := range goroutines {
				wg.Add(1)
				go func() {
					defer wg.Done()
					in := make([]byte, 4096)
					var out []byte
					for k := range perG {
						if k%50 == 49 { // a trap: the instance is replaced
							if _, err := m.Call(ctx, runtime.RoleHandle, []byte{0}, nil); !errors.Is(err, runtime.ErrTrap) {
								t.Errorf("trap call: %v", err)
							}
							continue
						}
						in[0] = 'e'
						for j := 1; j < len(in); j++ {
							in[j] = byte(g*31 + k + j)
						}
						var err error
						out, err = m.Call(ctx, runtime.RoleHandle, in, out[:0])
						if err != nil {
							t.Errorf("call: %v", err)
							return
						}
						if !bytes.Equal(out, in) {
							bad.Add(1)
						}
					}
				}()
			}
			wg.Wait()
			if n := bad.Load(); n > 0 {
				t.Fatalf("%d calls read back another call's input: an instance was shared", n)
			}
			if s := m.Stats(); s.Calls != goroutines*perG || s.Busy != 0 {
				t.Fatalf("calls %d busy %d; want %d and 0", s.Calls, s.Busy, goroutines*perG)
			}
		})
	}
}
