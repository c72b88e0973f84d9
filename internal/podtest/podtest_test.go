package podtest

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// TestFreePortNeverRepeats: ports handed out and not yet bound are never handed out again,
// even though the kernel is free to offer them to the next listener on port 0.
func TestFreePortNeverRepeats(t *testing.T) {
	seen := map[int]bool{}
	for range 300 {
		p := FreePort(t)
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
	}
}

// TestFreePortAcrossProcesses: a port this process was handed is never handed to another
// process (a child running FreePortChild) while this one runs, though nothing is bound to it;
// and every port comes from below the kernel's ephemeral range, which listeners on port 0 and
// outgoing connections use.
func TestFreePortAcrossProcesses(t *testing.T) {
	if os.Getenv("PODTEST_FREEPORT_CHILD") != "" {
		t.Skip("the child's side runs in TestFreePortChild")
	}
	lo, hi := reservedRange()
	if hi-lo < 1000 {
		t.Skipf("no room below the ephemeral range (%d)", hi)
	}
	// Both processes start looking at the same port, so only the reservation keeps them apart.
	defer func(f func(int) int) { startOffset = f }(startOffset)
	startOffset = func(int) int { return 0 }
	mine := map[int]bool{}
	for range 100 {
		p := FreePort(t)
		if p < lo || p >= hi {
			t.Fatalf("port %d outside %d-%d", p, lo, hi-1)
		}
		mine[p] = true
	}
	cmd := exec.Command(os.Args[0], "-test.run", "^TestFreePortChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), "PODTEST_FREEPORT_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	var theirs int
	for _, f := range strings.Fields(string(out)) {
		p, err := strconv.Atoi(strings.TrimPrefix(f, "port="))
		if err != nil || !strings.HasPrefix(f, "port=") {
			continue
		}
		theirs++
		if mine[p] {
			t.Fatalf("port %d handed to this process and to the child", p)
		}
	}
	if theirs != 100 {
		t.Fatalf("the child reported %d ports, want 100:\n%s", theirs, out)
	}
}

// TestFreePortChild is TestFreePortAcrossProcesses's child: it prints 100 ports from FreePort.
func TestFreePortChild(t *testing.T) {
	if os.Getenv("PODTEST_FREEPORT_CHILD") == "" {
		t.Skip("run by TestFreePortAcrossProcesses")
	}
	startOffset = func(int) int { return 0 }
	for range 100 {
		fmt.Printf("port=%d\n", FreePort(t))
	}
}
