package statelock

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"testing"
	"time"
)

// TestHelperHolder is not a test: run as a subprocess, it holds the lock until killed.
func TestHelperHolder(t *testing.T) {
	dir := os.Getenv("STATELOCK_HOLD")
	if dir == "" {
		t.Skip("helper process")
	}
	if _, err := Acquire(context.Background(), dir, nil); err != nil {
		t.Fatal(err)
	}
	os.Stdout.WriteString("held\n")
	time.Sleep(time.Minute)
}

// TestSecondProcessWaits: a real second process holds the lock; Acquire reports its pid at
// once, waits, gives up when its context ends, and gets the lock once the holder is gone.
func TestSecondProcessWaits(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperHolder$")
	cmd.Env = append(os.Environ(), "STATELOCK_HOLD="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	buf := make([]byte, 5)
	if _, err := out.Read(buf); err != nil || string(buf) != "held\n" {
		t.Fatalf("helper: %q %v", buf, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	var told []int
	_, err = Acquire(ctx, dir, func(pid int) { told = append(told, pid) })
	if !errors.Is(err, ErrInUse) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Acquire while held: %v", err)
	}
	if len(told) != 1 || told[0] != cmd.Process.Pid {
		t.Fatalf("waiting was told %v, want once the holder's pid %d", told, cmd.Process.Pid)
	}
	if Holder(dir) != cmd.Process.Pid {
		t.Fatalf("Holder = %d", Holder(dir))
	}
	cmd.Process.Kill()
	cmd.Wait()
	l, err := Acquire(context.Background(), dir, func(int) { t.Error("waited for a dead holder") })
	if err != nil {
		t.Fatal(err)
	}
	if Holder(dir) != os.Getpid() {
		t.Fatalf("Holder after acquiring = %d, want %d", Holder(dir), os.Getpid())
	}
	if err := l.Release(); err != nil || l.Release() != nil {
		t.Fatal("Release is not idempotent")
	}
	if _, err := Acquire(context.Background(), dir, nil); err != nil {
		t.Fatal(err)
	}
}
