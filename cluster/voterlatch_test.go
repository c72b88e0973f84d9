package cluster

import (
	"fmt"
	"strings"
	"testing"

	"github.com/wasmpod/wasmpod/cluster/internal/membership"
	"github.com/wasmpod/wasmpod/cluster/internal/queuestate"
	"github.com/wasmpod/wasmpod/cluster/queue"
	"github.com/wasmpod/wasmpod/internal/podtest"
)

// linesWith counts the lines of what b holds that contain s.
func linesWith(b *podtest.SyncBuffer, s string) int {
	n := 0
	for _, l := range strings.Split(b.String(), "\n") {
		if strings.Contains(l, s) {
			n++
		}
	}
	return n
}

// startEarlier starts a node with an empty state that advertises queue commands of version
// ops from its first gossip on (as a node of that release would), and joins it to join.
func startEarlier(t *testing.T, name string, ops int, join string) *Node {
	t.Helper()
	c := testConfig(name)
	c.Bootstrap = BootstrapNever
	n := startNode(t, c)
	advertiseQueueOps(t, n, ops)
	if _, err := n.Join([]string{join}); err != nil {
		t.Fatal(err)
	}
	return n
}

// completeLease commits complete_lease commands on the single node n (the only voter, which
// advertises them).
func completeLease(t *testing.T, n *Node) {
	t.Helper()
	ctx := t.Context()
	eventually(t, "define", func() error {
		return n.Queue().DefinePipeline(ctx, queue.Pipeline{Name: "p", Stages: []queue.StageDef{{Name: "s"}}})
	})
	if _, err := n.Queue().Submit(ctx, "p", putFiles(t, n, map[string]string{"a": "1", "b": "2"}), ""); err != nil {
		t.Fatal(err)
	}
	name, worker := queuestate.StageQueue("p", 0), n.Name()+"/p/0/0"
	r, err := n.wq.do(ctx, queuestate.Command{Op: queuestate.OpLease, Name: name, Worker: worker}, 0)
	if err != nil {
		t.Fatal(err)
	}
	l := *r.Lease
	l.Payload = nil
	before := n.wq.m.Applied()
	out := &queue.File{Name: "out", SHA256: fmt.Sprintf("%064x", 1), Size: 1}
	r, err = n.wq.do(ctx, queuestate.Command{Op: queuestate.OpCompleteLease, Lease: &l, Output: out, Name: name, Worker: worker}, 0)
	if err != nil || r.Next == nil {
		t.Fatalf("complete_lease: %+v, %v", r, err)
	}
	if got := n.wq.m.Applied() - before; got != 1 || !n.wq.m.CombinedApplied() {
		t.Fatalf("%d commands applied, combined applied %v: want one complete_lease", got, n.wq.m.CombinedApplied())
	}
}

// voters is n's view of the Raft voters, sorted.
func voters(n *Node) string { return fmt.Sprint(n.Status().Voters) }

// TestVoterLatch: a member of a release before complete_lease (qo absent), joining with an
// empty state, becomes a voter while the log holds no complete_lease, and is kept from the
// voters (the leader logging why, once) once it does, while a member of this release still
// joins them.
func TestVoterLatch(t *testing.T) {
	t.Run("before any complete_lease", func(t *testing.T) {
		a := startNode(t, testConfig("a"))
		eventually(t, "a leads", func() error {
			if v := voters(a); v != "[a]" {
				return fmt.Errorf("voters %s", v)
			}
			return nil
		})
		startEarlier(t, "b-old", 0, a.GossipAddr())
		eventually(t, "b-old a voter", func() error {
			if v := voters(a); v != "[a b-old]" {
				return fmt.Errorf("voters %s", v)
			}
			return nil
		})
		if a.wq.m.CombinedApplied() {
			t.Fatal("combined applied without a complete_lease")
		}
	})
	t.Run("after complete_lease", func(t *testing.T) {
		logs := &podtest.SyncBuffer{}
		c := testConfig("a")
		c.LogOutput = logs
		a := startNode(t, c)
		completeLease(t, a)
		startEarlier(t, "b-old", 0, a.GossipAddr())
		// a sees b-old alive, with its Raft address and no queue commands version, before
		// c-new exists: every reconcile that adds c-new has gone over b-old first (members
		// are listed by name, and a pass adds them one at a time).
		eventually(t, "a sees b-old", func() error {
			for _, m := range a.gossip.Members() {
				if _, raft, _ := splitMeta(m.Meta); m.Name == "b-old" && m.State == membership.StateAlive && raft != "" && queueOpsOf(m.Meta) == 0 {
					return nil
				}
			}
			return fmt.Errorf("members %+v", a.gossip.Members())
		})
		startNode(t, testConfig("c-new", a.GossipAddr()))
		eventually(t, "c-new a voter", func() error {
			if v := voters(a); v != "[a c-new]" {
				return fmt.Errorf("voters %s", v)
			}
			return nil
		})
		const why = "not adding member b-old as a Raft voter: it advertises queue commands version 0"
		eventually(t, "the leader logs why", func() error {
			if n := linesWith(logs, why); n != 1 {
				return fmt.Errorf("%d lines %q", n, why)
			}
			return nil
		})
		for range 3 {
			for _, p := range a.peers() {
				if want := p.ID == "b-old"; p.NoVote != want {
					t.Fatalf("peer %+v: NoVote %v, want %v", p, p.NoVote, want)
				}
			}
		}
		if n := linesWith(logs, why); n != 1 || linesWith(logs, "of version 1") != 1 {
			t.Fatalf("%d lines %q (%d naming version 1), want one", n, why, linesWith(logs, "of version 1"))
		}
		if v := voters(a); v != "[a c-new]" {
			t.Fatalf("voters %s", v)
		}
	})
}
