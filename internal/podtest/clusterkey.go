package podtest

import (
	"os"
	"path/filepath"
	"testing"
)

// GossipKeyFile writes a fixed 32-byte gossip key (base64) into a temporary directory and
// returns its path: every multi-node test cluster needs one (`wasmpod run` refuses a
// multi-node cluster without a key or certificates), and mutual TLS between the nodes is
// derived from it. The directory is removed when the test ends.
func GossipKeyFile(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "wasmpod-key")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	p := filepath.Join(dir, "gossip.key")
	if err := os.WriteFile(p, []byte("dGVzdC1rZXktdGVzdC1rZXktdGVzdC1rZXktMDEyMzQ=\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
