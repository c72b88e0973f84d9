package cluster

import (
	"bytes"
	"context"
	"crypto/rand"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/cluster/internal/blobs"
)

// A member may push a blob to another node only when a replicated command refers to it: a
// push of a file nobody reserved is refused before its bytes are stored, even well within
// the per-peer quota; a push the log reserved for the pushing node goes through.
func TestBlobPushNeedsReservation(t *testing.T) {
	leader, fs := threeNodes(t)
	b := fs[0]
	content := make([]byte, 4096)
	_, _ = rand.Read(content)
	sha, _, err := b.wq.blobs.Put(bytes.NewReader(content))
	if err != nil {
		t.Fatal(err)
	}
	push := func() error {
		c, err := b.log.Dial(leader.log.Addr(), connBlob, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return blobs.Push(ctx, c, b.wq.blobs, sha)
	}
	if err := push(); err == nil {
		t.Fatal("a member pushed a blob no command refers to")
	}
	if _, err := leader.wq.blobs.Path(sha); err == nil {
		t.Fatal("the unreferenced blob was stored")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.wq.reserve(ctx, sha, int64(len(content))); err != nil {
		t.Fatal(err)
	}
	if err := push(); err != nil {
		t.Fatalf("reserved push refused: %v", err)
	}
	if _, err := leader.wq.blobs.Path(sha); err != nil {
		t.Fatalf("the reserved blob is not stored: %v", err)
	}
}
