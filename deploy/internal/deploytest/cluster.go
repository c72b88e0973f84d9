package deploytest

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
)

// FreeAddr is a loopback address with a port free now (for a listener whose address must be
// known before it starts: gossip to join, a config file).
func FreeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// ClusterConfig describes a loopback cluster of real wasmpod processes (StartCluster).
type ClusterConfig struct {
	// Specs is each node's pod spec file: one node per entry, named n1, n2, ...
	Specs []string
	// Dir holds the nodes' state directories and the gossip key.
	Dir string
	// Label is the cluster label (--cluster-label); "" for none.
	Label string
	// Env is added to every node's environment.
	Env []string
}

// clusterKey is the test clusters' gossip key (base64 of 32 bytes): a multi-node cluster needs
// one, and the nodes' mutual TLS derives from it.
const clusterKey = "dGVzdC1rZXktdGVzdC1rZXktdGVzdC1rZXktMDEyMzQ=\n"

// StartCluster runs the wasmpod binary bin as a cluster on loopback (RunLocal per node): n1 is
// the seed the others join; each node has its own gossip, Raft and internal-endpoint ports.
// It returns once every node's listeners are up, which is before the nodes have found each
// other: callers wait for what they need (members, routes, a leader).
func StartCluster(t *testing.T, bin string, c ClusterConfig) []*Host {
	t.Helper()
	key := filepath.Join(c.Dir, "gossip.key")
	if err := os.WriteFile(key, []byte(clusterKey), 0o600); err != nil {
		t.Fatal(err)
	}
	hosts := make([]*Host, len(c.Specs))
	var seed string
	for i, spec := range c.Specs {
		name := fmt.Sprintf("n%d", i+1)
		gossip := FreeAddr(t)
		args := []string{"run", spec, "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
			"--state-dir", filepath.Join(c.Dir, name), "--node-name", name,
			"--bind", gossip, "--raft-addr", "127.0.0.1:0", "--internal", "127.0.0.1:0",
			"--gossip-key-file", key}
		if c.Label != "" {
			args = append(args, "--cluster-label", c.Label)
		}
		if seed != "" {
			args = append(args, "--join", seed)
		} else {
			seed = gossip
		}
		hosts[i] = RunLocal(t, bin, c.Env, args...)
	}
	return hosts
}
