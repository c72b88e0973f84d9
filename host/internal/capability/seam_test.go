package capability

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/runtime"
)

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(ents)
}

// TestTrapClosesConnections is issue 14's ambassador: a guest dials 64 connections (its
// handle limit) and traps, again and again. Each trapped instance is discarded and its
// connections are closed as it goes: none is open when the call returns, and the process's
// descriptors come back to their baseline (before the seam they piled up, 16 -> 3,280, until a
// sweeper found them idle for 60 s, and the host ran out of descriptors).
func TestTrapClosesConnections(t *testing.T) {
	addr := lineServer(t)
	p := newPod(t, []string{addr}, Config{}, func(mc *runtime.ModuleConfig) { mc.CallTimeout = 500 * time.Millisecond })
	if got, _ := p.call(t, context.Background(), "a", "echo warm"); got != "warm" {
		t.Fatal(got)
	}
	base := openFDs(t)
	const rounds = 20
	for i := range rounds {
		// Even rounds exit (a trap), odd rounds spin until the deadline cuts them.
		cmd, want := "dialtrap", runtime.ErrTrap
		if i%2 == 1 {
			cmd, want = "dialspin", runtime.ErrDeadline
		}
		_, err := p.call(t, context.Background(), "a", cmd+" "+addr+" 64")
		if !errors.Is(err, want) && !errors.Is(err, runtime.ErrDeadline) { // a slow machine may cut the dialing first
			t.Fatalf("round %d: got %v, want %v", i, err, want)
		}
		if n := p.caps.OpenConns(); n != 0 {
			t.Fatalf("round %d: %d connections still open after the trap", i, n)
		}
	}
	// The server side of each connection (in this process) closes when it reads EOF, on its own
	// goroutine: wait for that, generously, but far short of the old 60 s sweep.
	deadline := time.Now().Add(10 * time.Second)
	for {
		n := openFDs(t)
		// +8: a new warm instance, the runtime's and the test's own descriptors may come and go.
		if n <= base+8 {
			t.Logf("descriptors: %d before, %d after %d rounds of 64 connections", base, n, rounds)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("descriptors: %d before, still %d after %d rounds of 64 connections", base, n, rounds)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestChainSharesDeadline: a pod-local callee gets what is left of its caller's deadline, not a
// fresh timeout. a calls b after 1.5 s, b calls c after another 1.5 s, c sleeps; every module
// has a 2 s call timeout. The chain must end at a's deadline (2 s); with a fresh timeout per
// callee it ran until b's (1.5 + 2 = 3.5 s). The 3.2 s bound leaves 1.2 s for a loaded machine.
func TestChainSharesDeadline(t *testing.T) {
	p := newPod(t, nil, Config{}, func(mc *runtime.ModuleConfig) { mc.CallTimeout = 2 * time.Second })
	start := time.Now()
	out, err := p.call(t, context.Background(), "a", "after 1500 call b after 1500 call c after 10000 echo late")
	el := time.Since(start)
	t.Logf("chain ended after %v: %q, %v", el, out, err)
	if err == nil && !strings.HasPrefix(out, "ERR ") {
		t.Fatalf("the chain succeeded: %q", out)
	}
	if el > 3200*time.Millisecond {
		t.Fatalf("the chain ran %v, past its first caller's 2 s deadline", el)
	}
}

// TestReadChecksBufferFirst: net_read with a buffer outside guest memory fails at once, without
// waiting for data (the server sends nothing).
func TestReadChecksBufferFirst(t *testing.T) {
	addr := lineServer(t)
	p := newPod(t, []string{addr}, Config{})
	if got, _ := p.call(t, context.Background(), "a", "hold "+addr); got != "ok" {
		t.Fatal(got)
	}
	start := time.Now()
	got, err := p.call(t, context.Background(), "a", "badread")
	if err != nil || !strings.HasPrefix(got, "ERR badargs") {
		t.Fatalf("got %q, %v", got, err)
	}
	// The call's timeout is 5 s; blocking first would have taken all of it.
	if el := time.Since(start); el > 3*time.Second {
		t.Fatalf("net_read blocked %v before checking its buffer", el)
	}
}
