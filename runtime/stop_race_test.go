package runtime_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	goruntime "runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/runtime"
)

// TestCallRacesStop hammers Call on a module that cold-starts instances (MinInstances 0, traps
// discarding instances) while the module is stopped, closed (Stop without grace, then its
// compiled code released), or stopped right after it started. Every call must succeed or fail
// with one of the runtime's sentinels, never with an error of wazero's, and no call admitted
// before Stop may create an instance after Stop returned.
func TestCallRacesStop(t *testing.T) {
	e := newEngine(t, runtime.DefaultConfig())
	wasm := trapkit(t)
	for _, mode := range []string{"stop", "close", "stop-after-start"} {
		t.Run(mode, func(t *testing.T) {
			for round := 0; round < 4; round++ {
				raceStop(t, e, wasm, mode, round)
			}
		})
	}
}

func raceStop(t *testing.T, e *runtime.Engine, wasm []byte, mode string, round int) {
	t.Helper()
	ctx := context.Background()
	cfg := runtime.DefaultModuleConfig(fmt.Sprintf("race-%s-%d", mode, round))
	cfg.MaxConcurrency = 4
	cfg.MinInstances = 0
	cfg.QueueTimeout = 5 * time.Millisecond
	cfg.CallTimeout = 100 * time.Millisecond
	m, err := e.Load(ctx, wasm, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(ctx)
	if mode != "stop-after-start" {
		if err := m.Start(ctx, runtime.StartOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	var stopped atomic.Bool // set once Stop (or Close) returned
	var ok atomic.Int64
	var mu sync.Mutex
	var unexpected []error
	bad := func(err error) {
		mu.Lock()
		unexpected = append(unexpected, err)
		mu.Unlock()
	}
	begin := make(chan struct{})
	var wg sync.WaitGroup
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			<-begin
			for k := 0; ; k++ {
				op := byte('e') // echo
				switch {
				case k%5 == 2:
					op = 0 // trap: the instance is discarded, the next call may cold start
				case k%89 == 40:
					op = 5 // spin until the deadline or Stop cuts it
				}
				in := []byte{op, byte(g), byte(k)}
				out, err := m.Call(ctx, runtime.RoleHandle, in, nil)
				switch {
				case err == nil:
					if op != 'e' || !bytes.Equal(out, in) {
						bad(fmt.Errorf("op %d: output %q for input %q", op, out, in))
						return
					}
					ok.Add(1)
				case errors.Is(err, runtime.ErrNotRunning):
					if stopped.Load() {
						return
					}
					goruntime.Gosched() // not started yet, or stopping
				case errors.Is(err, runtime.ErrOverloaded),
					// a cold start (or call) starved past CallTimeout on a loaded machine
					errors.Is(err, runtime.ErrDeadline),
					op == 0 && errors.Is(err, runtime.ErrTrap):
				default:
					bad(fmt.Errorf("op %d: %w", op, err))
					return
				}
			}
		}(g)
	}
	close(begin)

	var stopErr error
	switch mode {
	case "stop":
		eventually(t, "calls succeed", func() bool { return ok.Load() > 20 })
		time.Sleep(time.Duration(round) * 300 * time.Microsecond)
		stopErr = m.Stop(ctx, runtime.StopOptions{Grace: 5 * time.Second})
	case "close":
		eventually(t, "calls succeed", func() bool { return ok.Load() > 20 })
		time.Sleep(time.Duration(round) * 300 * time.Microsecond)
		stopErr = m.Close(ctx) // no grace: in-flight calls are cut, then the code is released
	case "stop-after-start":
		if err := m.Start(ctx, runtime.StartOptions{}); err != nil {
			t.Fatal(err)
		}
		stopErr = m.Stop(ctx, runtime.StopOptions{Grace: 5 * time.Second})
	}
	after := m.Stats()
	stopped.Store(true)
	// Close without grace reports the calls it cut; anything else must stop cleanly.
	drained := mode != "close" || stopErr == nil || !strings.Contains(stopErr.Error(), "still running")
	if mode != "close" && stopErr != nil {
		t.Fatalf("%s: stop: %v", m.Name(), stopErr)
	}
	if after.State != runtime.StateStopped {
		t.Fatalf("%s: state %s after stop", m.Name(), after.State)
	}
	if drained && after.Instances != 0 {
		t.Fatalf("%s: %d instances left after stop: %+v", m.Name(), after.Instances, after)
	}
	wg.Wait()
	if len(unexpected) > 0 {
		t.Fatalf("%s: %d unexpected results, first: %v", m.Name(), len(unexpected), unexpected[0])
	}
	if mode == "close" {
		if err := m.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
	final := m.Stats()
	if drained && final.ColdStarts != after.ColdStarts {
		t.Fatalf("%s: %d cold start(s) after stop returned", m.Name(), final.ColdStarts-after.ColdStarts)
	}
	if drained && (final.Instantiations != after.Instantiations || final.Instances != 0) {
		t.Fatalf("%s: instances created after stop returned: before %+v, after %+v", m.Name(), after, final)
	}
	if _, err := m.Call(ctx, runtime.RoleHandle, []byte("late"), nil); !errors.Is(err, runtime.ErrNotRunning) {
		t.Fatalf("%s: call after stop: %v", m.Name(), err)
	}
}
