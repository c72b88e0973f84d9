package cluster

import (
	"errors"
	"strings"
	"testing"

	"github.com/wasmpod/wasmpod/cluster/internal/queuestate"
	"github.com/wasmpod/wasmpod/cluster/queue"
)

// TestLeaderRunsItsCommandsHere: the leader's own queue commands (definitions, submits,
// leases, completions, heartbeats of its workers) run without the encoding of a forwarded
// command, which the log would otherwise hand back to this node's leadForward; a follower's go
// to the leader as before; and a command too large to forward is refused on the leader too,
// naming its size.
func TestLeaderRunsItsCommandsHere(t *testing.T) {
	a := startNode(t, inlineConfig(t, "a"))
	// A command sent before the node was leader may reach it through the log's retries, which
	// hand it to leadForward once the node leads: counted from the moment it leads.
	eventually(t, "a leads", func() error {
		if !a.wq.isLeader() {
			return errors.New("not yet")
		}
		return nil
	})
	before := a.wq.selfForwarded.Load()
	j, want := runInlineJob(t, a)
	for _, o := range j.Outputs {
		if got := readBlob(t, a, o.SHA256); got != want[o.Name] {
			t.Fatalf("output %s = %q, want %q", o.Name, got, want[o.Name])
		}
	}
	if n := a.wq.selfForwarded.Load() - before; n != 0 {
		t.Errorf("the leader forwarded %d of its own commands to itself, want 0", n)
	}

	b := startNode(t, testConfig("b", a.GossipAddr()))
	eventually(t, "b follows a", func() error {
		if a.wq.isLeader() && len(a.Status().Voters) == 2 {
			return nil
		}
		return errors.New("not yet")
	})
	id, err := b.Queue().Submit(t.Context(), "in", putFiles(t, b, map[string]string{"f": "from b"}), "")
	if err != nil {
		t.Fatalf("submit through the follower: %v", err)
	}
	if _, err := a.Queue().Job(id); err != nil {
		t.Fatalf("the follower's submit, read on the leader: %v", err)
	}

	// 13 MiB of content is over 17 MiB of JSON (base64): more than a forwarded command may be.
	big := queuestate.Command{Op: queuestate.OpComplete, Lease: &queuestate.Lease{}, Output: &queue.File{Name: "x"}, Content: make([]byte, 13<<20)}
	_, err = a.wq.do(t.Context(), big, 0)
	if !errors.Is(err, queue.ErrInvalid) || !strings.Contains(err.Error(), "limit") {
		t.Fatalf("a command over the forwarding limit on the leader: %v, want ErrInvalid naming the limit", err)
	}
}
