package cluster

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// TestGossipOnlyJoinersNeverVote: members that get into gossip (they hold the gossip key) but
// cannot prove themselves on the Raft port must not become voters. Before the leader checked,
// it added every alive gossip member: three good nodes and four such joiners made six or seven
// voters, a quorum the three could not reach, and no leader was ever elected again (only a
// leader removes voters). Two joiners have certificates of another CA (bring-your-own PKI on
// their side), two have none of their own (zero configuration: the CA derived from the gossip
// key, which is not the cluster's CA once it has its own).
func TestGossipOnlyJoinersNeverVote(t *testing.T) {
	goodCA, goodCAKey, err := NewCA("good", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	badCA, badCAKey, err := NewCA("bad", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	withCert := func(c Config, caPEM, caKey []byte) Config {
		cert, key, err := IssueNodeCert(caPEM, caKey, c.NodeName, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		c.TLS = TLSConfig{CAPEM: caPEM, CertPEM: cert, KeyPEM: key}
		return c
	}
	a := startNode(t, withCert(testConfig("a"), goodCA, goodCAKey))
	b := startNode(t, withCert(testConfig("b", a.GossipAddr()), goodCA, goodCAKey))
	c := startNode(t, withCert(testConfig("c", a.GossipAddr()), goodCA, goodCAKey))
	good := []*Node{a, b, c}
	eventually(t, "one leader, three voters", func() error {
		for _, n := range good {
			if st := n.Status(); st.RaftLeader == "" || len(st.Voters) != 3 {
				return fmt.Errorf("%s: leader %q, voters %v", n.Name(), st.RaftLeader, st.Voters)
			}
		}
		return nil
	})

	for i := 1; i <= 4; i++ {
		cfg := testConfig(fmt.Sprintf("intruder%d", i), a.GossipAddr())
		cfg.Bootstrap = BootstrapNever
		if i <= 2 {
			cfg = withCert(cfg, badCA, badCAKey)
		}
		startNode(t, cfg)
	}
	// Every good node sees the joiners alive in gossip, with the Raft address they advertise:
	// from here on the leader considers them on every reconciliation.
	eventually(t, "joiners in gossip with a Raft address", func() error {
		for _, n := range good {
			ps := 0
			for _, p := range n.peers() {
				if p.Alive && p.RaftAddr != "" {
					ps++
				}
			}
			if ps != 7 {
				return fmt.Errorf("%s sees %d alive members with a Raft address, want 7", n.Name(), ps)
			}
		}
		return nil
	})
	// Several reconciliations (one a second, and one per membership event): the voters stay
	// the three good nodes throughout.
	until := time.Now().Add(5 * time.Second)
	for time.Now().Before(until) {
		for _, n := range good {
			if v := voters(n); v != "[a b c]" {
				t.Fatalf("%s: voters %s, want [a b c]: a gossip-only member was made a voter", n.Name(), v)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	// A leader exists and a replicated write commits (from a follower too: forwarded to it).
	for _, n := range good {
		ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
		l, err := n.Elections().Campaign(ctx, "admission-"+n.Name(), CampaignRequest{Session: "s", TTLMillis: 30000})
		cancel()
		if err != nil || !l.Held {
			t.Fatalf("%s: replicated write: %+v, %v", n.Name(), l, err)
		}
	}
	if v := voters(a); v != "[a b c]" {
		t.Fatalf("voters %s after the writes, want [a b c]", v)
	}
}
