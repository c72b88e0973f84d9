package replog

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"net"
	"runtime"
	"testing"
	"time"
)

// bigKind is a kind that accepts large forwarded commands and answers with their sha256, so
// that a test can tell the leader read exactly the bytes that were sent.
func bigKind(maxCommand int) Kind {
	return Kind{Tag: 'B', Name: "big", Machine: &memKind{}, MaxCommand: maxCommand,
		Lead: func(_ context.Context, _ Caller, cmd []byte) ([]byte, error) {
			sum := sha256.Sum256(cmd)
			return []byte(hex.EncodeToString(sum[:])), nil
		}}
}

// heapAlloc is the live heap after a collection.
func heapAlloc() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestForwardBodyMemoryFollowsData: the leader's memory for a forwarded command grows with the
// bytes that arrive, not with the length its header declares. A member that sends headers
// declaring the kind's largest command and then nothing (the leader waits up to fwdIO for the
// body) must not make the leader reserve that much per connection; and commands of every size
// up to the bound still arrive whole, with the connection left in step for the next one.
func TestForwardBodyMemoryFollowsData(t *testing.T) {
	const (
		maxCommand = 16 << 20
		conns      = 16
		// bound separates the two behaviours: reserving the declared length up front costs
		// conns*maxCommand (256 MiB); growing with the data costs a small first chunk per
		// connection, plus whatever the three logs allocate meanwhile.
		bound = 2 * maxCommand
	)
	logs := startLogs(t, func(int) []Kind { return []Kind{bigKind(maxCommand)} })
	var ld, f *Log
	for _, l := range logs {
		if l.IsLeader() {
			ld = l
		} else {
			f = l
		}
	}
	if ld == nil {
		t.Fatal("no leader")
	}

	base := heapAlloc()
	var open []net.Conn
	defer func() {
		for _, c := range open {
			c.Close()
		}
	}()
	hdr := make([]byte, 9)
	hdr[0] = 'B'
	binary.BigEndian.PutUint32(hdr[1:], 1000)
	binary.BigEndian.PutUint32(hdr[5:], maxCommand)
	for range conns {
		c, err := f.Dial(ld.Addr(), connDo, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, c)
		if _, err := c.Write(hdr); err != nil {
			t.Fatal(err)
		}
	}
	// The leader reads the headers at once and then waits for the bodies: watch the heap for
	// a while (well within fwdIO, so every connection is still held open).
	var grew uint64
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if h := heapAlloc(); h > base {
			grew = max(grew, h-base)
		}
		if grew > bound {
			break
		}
	}
	if grew > bound {
		t.Fatalf("%d headers declaring %d-byte commands and no body grew the heap by %d MiB (bound %d MiB)",
			conns, maxCommand, grew>>20, bound>>20)
	}
	t.Logf("heap grew by %d KiB for %d headers declaring %d MiB each", grew>>10, conns, maxCommand>>20)
	for _, c := range open {
		c.Close()
	}
	open = nil

	// Real commands arrive whole, at the sizes around the first chunk and odd sizes that take
	// several reads and doublings; the pooled connection stays in step from one to the next.
	// (Not megabytes: with the loopback tests' 100 ms leader lease, on a loaded machine, a
	// transfer that large can cost the leader its lease, before this change as after it.)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, n := range []int{1, 100, firstChunk, firstChunk + 1, 64<<10 + 3, 1<<20 + 7} {
		cmd := bytes.Repeat([]byte{byte(n), byte(n >> 8), 0x5a}, n/3+1)[:n]
		sum := sha256.Sum256(cmd)
		out, err := f.Do(ctx, 'B', cmd)
		for try := 0; errors.Is(err, ErrNoLeader) && try < 5; try++ {
			out, err = f.Do(ctx, 'B', cmd) // an election on a loaded machine: ask the next leader
		}
		if err != nil {
			t.Fatalf("forwarding %d bytes: %v", n, err)
		}
		if want := hex.EncodeToString(sum[:]); string(out) != want {
			t.Fatalf("forwarding %d bytes: the leader read a command hashing to %s, want %s", n, out, want)
		}
	}
}
