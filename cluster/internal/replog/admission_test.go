package replog

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/wasmpod/wasmpod/cluster/internal/mtls"
)

// startSecure starts logs named names on loopback with fastTiming, each with a certificate of
// ca and the membership test of a real node (the name is in peers and has not left), reading
// their membership from peers; the first bootstraps. It returns them once the first leads.
func startSecure(t *testing.T, peers *peerList, ca *mtls.CA, names ...string) []*Log {
	t.Helper()
	isMember := func(name string) bool {
		for _, p := range peers.get() {
			if p.ID == name {
				return !p.Left
			}
		}
		return false
	}
	var logs []*Log
	for i, name := range names {
		cert, err := ca.Issue(name, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		id, err := mtls.NewIdentity(name, ca.Cert, cert, isMember)
		if err != nil {
			t.Fatal(err)
		}
		l, err := Start(Config{NodeID: name, BindAddr: "127.0.0.1:0", Bootstrap: i == 0, Timing: fastTiming,
			Peers: peers.get, TLS: id})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = l.Shutdown(context.Background()) })
		logs = append(logs, l)
	}
	return logs
}

// waitVotersOf waits until l leads with exactly the voters want (sorted).
func waitVotersOf(t *testing.T, l *Log, want ...string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		st := l.Status()
		if st.State == "Leader" && slices.Equal(st.Voters, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: state %s, voters %v, want leader with %v", l.NodeID(), st.State, st.Voters, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startWithIntruder starts n0, n1 and n2 with the cluster's CA (their peers to be set by the
// test) and a node "intruder" whose certificate comes from another CA. The intruder's
// membership test accepts the cluster's nodes: it would follow gladly.
func startWithIntruder(t *testing.T) (peers *peerList, logs []*Log, intruder *Log) {
	t.Helper()
	ca, err := mtls.NewCA("cluster", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	other, err := mtls.NewCA("other", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	peers = &peerList{}
	logs = startSecure(t, peers, ca, "n0", "n1", "n2")
	intruder = startSecure(t, &peerList{peers: []Peer{{ID: "n0"}, {ID: "n1"}, {ID: "n2"}, {ID: "intruder"}}}, other, "intruder")[0]
	return peers, logs, intruder
}

// TestAdmissionNeedsOwnCertificate: the leader adds a member as a voter only when the node at
// the member's Raft address proves, in the transport's mutual TLS, to be that member. A
// gossip name pointing at another (valid) node's address, and a node whose certificate comes
// from another CA, stay out; the real members get in.
func TestAdmissionNeedsOwnCertificate(t *testing.T) {
	peers, logs, intruder := startWithIntruder(t)
	peers.set(func([]Peer) []Peer {
		var ps []Peer
		for _, l := range logs {
			ps = append(ps, Peer{ID: l.NodeID(), RaftAddr: l.Addr(), Alive: true})
		}
		return append(ps,
			Peer{ID: "ghost", RaftAddr: logs[1].Addr(), Alive: true}, // n1's port answers as n1
			Peer{ID: "intruder", RaftAddr: intruder.Addr(), Alive: true})
	})
	waitVotersOf(t, logs[0], "n0", "n1", "n2")
	// Many reconciliations later (every 50 ms), still the three.
	for range 40 {
		if v := logs[0].Voters(); len(v) != 3 {
			t.Fatalf("voters %v: a member that did not prove itself was added", v)
		}
		time.Sleep(50 * time.Millisecond)
	}
	waitVotersOf(t, logs[0], "n0", "n1", "n2")
}

// TestImpostorVoterRemoved: a voter that an earlier release added without the check (here by
// hand), whose certificate comes from another CA, is removed by the leader once it has failed
// the check a few times; the real voters stay.
func TestImpostorVoterRemoved(t *testing.T) {
	peers, logs, intruder := startWithIntruder(t)
	peers.set(func([]Peer) []Peer {
		var ps []Peer
		for _, l := range logs {
			ps = append(ps, Peer{ID: l.NodeID(), RaftAddr: l.Addr(), Alive: true})
		}
		return ps
	})
	waitVotersOf(t, logs[0], "n0", "n1", "n2")
	if err := logs[0].raft.AddVoter("intruder", raft.ServerAddress(intruder.Addr()), 0, 5*time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	// Gossip knows it, alive: only the check can tell it is not a node of the cluster.
	peers.set(func(ps []Peer) []Peer {
		return append(ps, Peer{ID: "intruder", RaftAddr: intruder.Addr(), Alive: true})
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		var leader *Log
		for _, l := range logs {
			if l.IsLeader() {
				leader = l
			}
		}
		if leader != nil {
			v := leader.Status().Voters
			if fmt.Sprint(v) == "[n0 n1 n2]" {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("voters %v: the impostor voter stays", logs[0].Status().Voters)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
