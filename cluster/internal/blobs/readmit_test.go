package blobs

import (
	"bytes"
	"errors"
	"net"
	"os"
	"sync"
	"testing"
	"time"
)

// A push of a blob the store already has refreshes its time (garbage collection keeps it a
// full grace period again), so it is admitted like a new file: a peer the admission check
// refuses neither keeps an old file alive nor gets an acknowledgement, and one it admits is
// checked (and charged) with the stored size, not the size it claims.
func TestPushOfStoredBlobIsAdmitted(t *testing.T) {
	local, remote := openStore(t, 0), openStore(t, 0)
	data := content(1000, 7)
	sha, _, err := local.Put(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := remote.Put(bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour).Truncate(time.Second)
	if err := os.Chtimes(remote.path(sha), old, old); err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	var asked []int64
	refuse := true
	c := startHandler(t, func(c net.Conn) {
		ServeAdmit(c, remote, 5*time.Second, func(s string, size int64) error {
			mu.Lock()
			defer mu.Unlock()
			if s != sha {
				t.Errorf("admission asked for %s, want %s", s, sha)
			}
			asked = append(asked, size)
			if refuse {
				return errors.New("quota exceeded")
			}
			return nil
		})
	}).dial(t)

	if err := Push(testCtx(t), c, local, sha); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("push of a stored blob past the admission check: %v, want ErrTooLarge", err)
	}
	if st, err := os.Stat(remote.path(sha)); err != nil || !st.ModTime().Equal(old) {
		t.Fatalf("a refused push refreshed the stored blob: %v, %v (was %v)", st.ModTime(), err, old)
	}

	mu.Lock()
	refuse = false
	mu.Unlock()
	if err := Push(testCtx(t), c, local, sha); err != nil {
		t.Fatalf("admitted push: %v", err)
	}
	if st, err := os.Stat(remote.path(sha)); err != nil || !st.ModTime().After(old) {
		t.Fatalf("an admitted push did not refresh the stored blob: %v", err)
	}
	// A pusher that claims the stored blob is 1 byte long is still charged its 1000.
	req, err := request{op: opPut, sha: sha, length: 1}.encode()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(req); err != nil {
		t.Fatal(err)
	}
	if _, err := readReply(c); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(asked) != 3 || asked[0] != 1000 || asked[1] != 1000 || asked[2] != 1000 {
		t.Fatalf("admission asked with sizes %v, want [1000 1000 1000]", asked)
	}
}
