package cluster

import (
	"bytes"
	"context"
	"crypto/rand"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/cluster/internal/blobs"
)

// A member may keep alive on another node only as many files no command refers to as its
// quota allows. Re-pushing files the node already has renews their grace period, so it is
// charged like a first push: a member that keeps re-pushing two old files (quota: two files)
// cannot push a third, however long it keeps at it, and once it stops they age out and its
// quota comes back. (Reproduction of the flaw: the re-push was acknowledged before any
// quota check, the quota entries expired after the grace, and the member kept 2, 4, 6... files
// alive.)
func TestBlobRepushChargedToQuota(t *testing.T) {
	leader, fs := threeNodes(t)
	b := fs[0]
	const grace = time.Second
	q := leader.wq.quota
	q.mu.Lock()
	q.maxFiles, q.grace = 2, grace
	q.mu.Unlock()

	shas := make([]string, 3)
	for i := range shas {
		content := make([]byte, 4096)
		_, _ = rand.Read(content)
		sha, size, err := b.wq.blobs.Put(bytes.NewReader(content))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = b.wq.reserve(ctx, sha, size)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		shas[i] = sha
	}
	c, err := b.log.Dial(leader.log.Addr(), connBlob, 15*time.Second) // generous: a loaded machine
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	push := func(sha string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return blobs.Push(ctx, c, b.wq.blobs, sha)
	}
	stored := func() (n int) {
		for _, sha := range shas {
			if _, err := leader.wq.blobs.Path(sha); err == nil {
				n++
			}
		}
		return n
	}

	for _, sha := range shas[:2] {
		if err := push(sha); err != nil {
			t.Fatalf("first push within the quota: %v", err)
		}
	}
	// Keep the two alive for twice the grace: each re-push is within the quota (the same
	// files), and renews them.
	for end := time.Now().Add(2 * grace); time.Now().Before(end); time.Sleep(grace / 4) {
		for _, sha := range shas[:2] {
			if err := push(sha); err != nil {
				t.Fatalf("re-push of a file within the quota: %v", err)
			}
		}
	}
	if err := push(shas[2]); err == nil {
		t.Fatalf("a third file was admitted while the member kept two alive (quota: two files); the node holds %d", stored())
	}
	if n := stored(); n != 2 {
		t.Fatalf("the node holds %d of the member's files, want 2", n)
	}

	// The member stops: past the grace the two files are garbage, and its quota is back.
	time.Sleep(grace + 100*time.Millisecond)
	if n, err := leader.wq.collectBlobs(time.Now().Add(-grace)); err != nil || n < 2 {
		t.Fatalf("collected %d files (%v), want the member's 2", n, err)
	}
	if err := push(shas[2]); err != nil {
		t.Fatalf("push after the old files aged out: %v", err)
	}
	if _, err := leader.wq.blobs.Path(shas[2]); err != nil {
		t.Fatalf("the third file is not stored: %v", err)
	}
}
