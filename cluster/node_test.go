package cluster

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// testKey is the gossip key of the in-process test clusters (a multi-node cluster needs one;
// mutual TLS between the nodes is derived from it).
var testKey = []byte("0123456789abcdef0123456789abcdef")

func testConfig(name string, join ...string) Config {
	c := DefaultConfig()
	c.NodeName = name
	c.GossipKey = testKey
	c.BindAddr = "127.0.0.1:0"
	c.RaftAddr = "127.0.0.1:0"
	c.Join = join
	c.Gossip.Profile = "local"
	c.Gossip.RejoinInterval = time.Second
	return c
}

func startNode(t *testing.T, c Config) *Node {
	t.Helper()
	n, err := Start(c)
	if err != nil {
		t.Fatalf("start %s: %v", c.NodeName, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = n.Shutdown(ctx)
	})
	return n
}

// eventually polls f; the bound is a liveness guard, not a timing assertion.
func eventually(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var err error
	for time.Now().Before(deadline) {
		if err = f(); err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: %v", what, err)
}

func TestSingleNodeElection(t *testing.T) {
	n := startNode(t, testConfig("solo"))
	ctx := t.Context()
	var l Lease
	// A long TTL: the steps below need the lease still held, however slow a loaded machine is.
	eventually(t, "campaign", func() (err error) {
		l, err = n.Elections().Campaign(ctx, "lock", CampaignRequest{Session: "app", TTLMillis: 30000})
		return err
	})
	if !l.Held || l.Holder != "solo" || l.Token == 0 || l.ValidFor() <= 0 {
		t.Fatalf("campaign: %+v", l)
	}
	steps := []struct {
		name string
		do   func() (Lease, error)
		err  error
	}{
		{"campaign again renews", func() (Lease, error) {
			return n.Elections().Campaign(ctx, "lock", CampaignRequest{Session: "app", TTLMillis: 30000})
		}, nil},
		{"other session is refused", func() (Lease, error) { return n.Elections().Campaign(ctx, "lock", CampaignRequest{Session: "other"}) }, ErrNotLeader},
		{"renew", func() (Lease, error) {
			return n.Elections().Renew(ctx, "lock", RenewRequest{Session: "app", Token: l.Token})
		}, nil},
		{"renew with wrong token", func() (Lease, error) {
			return n.Elections().Renew(ctx, "lock", RenewRequest{Session: "app", Token: l.Token + 100})
		}, ErrStaleToken},
		{"renew from wrong session", func() (Lease, error) {
			return n.Elections().Renew(ctx, "lock", RenewRequest{Session: "x", Token: l.Token})
		}, ErrStaleToken},
		{"ttl too small", func() (Lease, error) {
			return n.Elections().Campaign(ctx, "lock", CampaignRequest{Session: "app", TTLMillis: 1})
		}, ErrInvalid},
		{"empty name", func() (Lease, error) { return n.Elections().Get(ctx, "") }, ErrInvalid},
		{"resign", func() (Lease, error) {
			return n.Elections().Resign(ctx, "lock", ResignRequest{Session: "app", Token: l.Token})
		}, nil},
		{"resign twice", func() (Lease, error) {
			return n.Elections().Resign(ctx, "lock", ResignRequest{Session: "app", Token: l.Token})
		}, ErrStaleToken},
	}
	for _, s := range steps {
		if _, err := s.do(); !errors.Is(err, s.err) {
			t.Fatalf("%s: err %v, want %v", s.name, err, s.err)
		}
	}
	g, err := n.Elections().Get(ctx, "lock")
	if err != nil || g.Held {
		t.Fatalf("get after resign: %+v %v", g, err)
	}
	l2, err := n.Elections().Campaign(ctx, "lock", CampaignRequest{Session: "other"})
	if err != nil || l2.Token <= l.Token {
		t.Fatalf("second grant %+v %v: token must grow past %d", l2, err, l.Token)
	}
	// Watch sees the next change.
	done := make(chan Lease, 1)
	go func() {
		w, _ := n.Elections().Watch(ctx, "lock", l2.Index)
		done <- w
	}()
	if _, err := n.Elections().Resign(ctx, "lock", ResignRequest{Session: "other", Token: l2.Token}); err != nil {
		t.Fatal(err)
	}
	if w := <-done; w.Held || w.Index <= l2.Index {
		t.Fatalf("watch: %+v", w)
	}
	if ms := n.Members(); len(ms) != 1 || ms[0].State != MemberAlive || !ms[0].Voter || !ms[0].Leader {
		t.Fatalf("members: %+v", ms)
	}
}

func TestLeaseExpiresWithoutRenewal(t *testing.T) {
	n := startNode(t, testConfig("solo"))
	ctx := t.Context()
	var l Lease
	eventually(t, "campaign", func() (err error) {
		l, err = n.Elections().Campaign(ctx, "x", CampaignRequest{Session: "a", TTLMillis: 500})
		return err
	})
	eventually(t, "expiry", func() error {
		g, err := n.Elections().Get(ctx, "x")
		if err == nil && g.Held {
			err = fmt.Errorf("still held: %+v", g)
		}
		return err
	})
	if _, err := n.Elections().Renew(ctx, "x", RenewRequest{Session: "a", Token: l.Token}); !errors.Is(err, ErrStaleToken) {
		t.Fatalf("renew after expiry: %v", err)
	}
}

func TestThreeNodesFailover(t *testing.T) {
	a := startNode(t, testConfig("a"))
	b := startNode(t, testConfig("b", a.GossipAddr()))
	c := startNode(t, testConfig("c", a.GossipAddr()))
	nodes := []*Node{a, b, c}
	eventually(t, "3 voters", func() error {
		for _, n := range nodes {
			if st := n.Status(); len(st.Voters) != 3 || st.RaftLeader == "" || st.Members != 3 {
				return fmt.Errorf("%s: %+v", n.Name(), st)
			}
		}
		return nil
	})
	ctx := t.Context()
	la, err := b.Elections().Campaign(ctx, "job", CampaignRequest{Session: "s"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Elections().Campaign(ctx, "job", CampaignRequest{Session: "s"}); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("c campaign: %v", err)
	}
	// Shut the Raft leader down; the others keep a quorum of 2 of 3 (or of
	// 2 of 2 once it is removed) and c gets the lease once b's expires.
	var leader *Node
	for _, n := range nodes {
		if n.Status().RaftState == "Leader" {
			leader = n
		}
	}
	if leader == nil {
		t.Fatal("no leader")
	}
	if err := leader.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	var rest []*Node
	for _, n := range nodes {
		if n != leader {
			rest = append(rest, n)
		}
	}
	eventually(t, "new raft leader", func() error {
		if st := rest[0].Status(); st.RaftLeader == "" || st.RaftLeader == leader.Name() {
			return fmt.Errorf("%+v", st)
		}
		return nil
	})
	if leader != b {
		// b still holds; stop renewing and let it expire.
		_ = la
	}
	eventually(t, "lease moves to a live node with a larger token", func() error {
		for _, n := range rest {
			if n == b {
				continue
			}
			l, err := n.Elections().Campaign(ctx, "job", CampaignRequest{Session: "s"})
			if err != nil {
				return err
			}
			if l.Token <= la.Token {
				return fmt.Errorf("token %d not > %d", l.Token, la.Token)
			}
			return nil
		}
		return errors.New("no candidate")
	})
}
