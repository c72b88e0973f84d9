//go:build linux

package clustertest

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const leaseName = "job"

var (
	binOnce sync.Once
	binPath string
	binErr  error
	binDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

func nodeBinary(t *testing.T) string {
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "wasmpod-clustertest")
		if binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "node")
		out, err := exec.Command("go", "build", "-o", binPath, "github.com/wasmpod/wasmpod/cluster/internal/clustertest/node").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("%v: %s", err, out)
		}
	})
	if binErr != nil {
		t.Fatalf("build node: %v", binErr)
	}
	return binPath
}

type cluster struct {
	t     *testing.T
	net   *Net
	bin   string
	key   string
	procs map[string]*Proc
	idx   map[string]int
}

func newCluster(t *testing.T) *cluster {
	n := NewNet(t) // skips when netns is unavailable
	c := &cluster{t: t, net: n, bin: nodeBinary(t), procs: map[string]*Proc{}, idx: map[string]int{}}
	c.key = c.writeKey("key", "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTAxMjM=") // 32 bytes
	n.AddHost("store", 100)
	n.Start("store", c.bin, "-store-mode", "-http", n.IP(100)+":9000")
	return c
}

func (c *cluster) writeKey(name, b64 string) string {
	p := filepath.Join(c.t.TempDir(), name)
	if err := os.WriteFile(p, []byte(b64+"\n"), 0o600); err != nil {
		c.t.Fatal(err)
	}
	return p
}

func label(i int) string { return fmt.Sprintf("n%d", i) }

// startNode starts node i; key "" means no encryption.
func (c *cluster) startNode(i int, key string, extra ...string) {
	l := label(i)
	if _, ok := c.idx[l]; !ok {
		c.net.AddHost(l, i)
	}
	c.idx[l] = i
	args := []string{"-name", l, "-bind", c.net.IP(i) + ":7946", "-http", c.net.IP(i) + ":8080",
		"-label", "wasmpod-test", "-lease", leaseName, "-store", "http://" + c.net.IP(100) + ":9000",
		"-write-without-expiry-check"}
	if os.Getenv("CT_VERBOSE") != "" {
		args = append(args, "-v")
	}
	if i != 1 {
		args = append(args, "-join", c.net.IP(1)+":7946")
	}
	if key != "" {
		args = append(args, "-gossip-key-file", key)
	}
	c.procs[l] = c.net.Start(l, c.bin, append(args, extra...)...)
}

type member struct {
	Name   string `json:"name"`
	State  string `json:"state"`
	Voter  bool   `json:"voter"`
	Leader bool   `json:"leader"`
}

type nodeStatus struct {
	Status struct {
		RaftState  string   `json:"raft_state"`
		RaftLeader string   `json:"raft_leader"`
		Voters     []string `json:"voters"`
	} `json:"status"`
	Members []member `json:"members"`
}

func (c *cluster) status(l string) (nodeStatus, error) {
	var st nodeStatus
	resp, err := c.net.Client(2 * time.Second).Get("http://" + c.net.IP(c.idx[l]) + ":8080/status")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

func (s nodeStatus) alive() []string {
	var out []string
	for _, m := range s.Members {
		if m.State == "alive" {
			out = append(out, m.Name)
		}
	}
	sort.Strings(out)
	return out
}

// converged: every node in ls sees exactly ls alive, the same Raft leader
// (one of ls), and ls as voters.
func (c *cluster) converged(ls []string) error {
	want := strings.Join(sorted(ls), ",")
	leader := ""
	for _, l := range ls {
		st, err := c.status(l)
		if err != nil {
			return fmt.Errorf("%s: %v", l, err)
		}
		if got := strings.Join(st.alive(), ","); got != want {
			return fmt.Errorf("%s sees alive %s, want %s", l, got, want)
		}
		if got := strings.Join(sorted(st.Status.Voters), ","); got != want {
			return fmt.Errorf("%s sees voters %s, want %s", l, got, want)
		}
		if st.Status.RaftLeader == "" || (leader != "" && st.Status.RaftLeader != leader) {
			return fmt.Errorf("%s sees leader %q (others %q)", l, st.Status.RaftLeader, leader)
		}
		leader = st.Status.RaftLeader
	}
	return nil
}

func sorted(s []string) []string {
	s = append([]string(nil), s...)
	sort.Strings(s)
	return s
}

func waitFor(t *testing.T, d time.Duration, what string, f func() error) time.Duration {
	t.Helper()
	start := time.Now()
	var err error
	for time.Since(start) < d {
		if err = f(); err == nil {
			return time.Since(start)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: not within %v: %v", what, d, err)
	return 0
}

// boot starts n nodes and waits for one view; it returns the gossip
// convergence time measured from the start of the last node.
func (c *cluster) boot(n int) []string {
	var ls []string
	for i := 1; i <= n; i++ {
		c.startNode(i, c.key)
		ls = append(ls, label(i))
		if i == 1 { // let the first node bootstrap before others join
			waitFor(c.t, 20*time.Second, "n1 leader", func() error { return c.converged(ls) })
		}
	}
	d := waitFor(c.t, 30*time.Second, "cluster converged", func() error { return c.converged(ls) })
	c.t.Logf("FIGURE %d nodes: one view (gossip + voters) %v after the last node started", n, d.Round(time.Millisecond))
	return ls
}

func (c *cluster) waitHolder(t *testing.T, after time.Time, among map[string]bool) Event {
	t.Helper()
	var g Event
	waitFor(t, 30*time.Second, "a lease holder", func() error {
		gs := c.net.Hist.Filter(func(e Event) bool {
			return e.Ev == "grant" && e.Lease == leaseName && e.T > after.UnixNano() && (among == nil || among[e.Node])
		})
		if len(gs) == 0 {
			return fmt.Errorf("no grant yet")
		}
		g = gs[0]
		// and the holder writes successfully
		ws := c.net.Hist.Filter(func(e Event) bool { return e.Ev == "store_accept" && e.Token == g.Token })
		if len(ws) == 0 {
			return fmt.Errorf("no write with token %d yet", g.Token)
		}
		return nil
	})
	return g
}

func (c *cluster) checkSafety(t *testing.T) {
	t.Helper()
	for _, v := range c.net.Hist.Check(leaseName) {
		t.Errorf("SAFETY: %s", v)
	}
	gs := c.net.Hist.Filter(func(e Event) bool { return e.Ev == "grant" })
	var s []string
	for _, g := range gs {
		s = append(s, fmt.Sprintf("%s:%d", g.Node, g.Token))
	}
	t.Logf("grants: %s", strings.Join(s, " "))
}

func sizes() []int { return []int{3, 5} }

func TestNetnsLeaderKilled(t *testing.T) {
	for _, n := range sizes() {
		t.Run(fmt.Sprintf("%dnodes", n), func(t *testing.T) {
			c := newCluster(t)
			c.boot(n)
			g := c.waitHolder(t, time.Time{}, nil)
			// Let the holder renew a few times, then kill it right after a renewal: the worst
			// case, a renewal committed on the leader (the holder) whose commit the followers
			// learn only from the next leader, after an election.
			time.Sleep(1500 * time.Millisecond)
			killed := c.killAfterRenew(t, g)
			others := map[string]bool{}
			for l := range c.idx {
				if l != g.Node {
					others[l] = true
				}
			}
			ng := c.waitHolder(t, killed, others)
			failover := ng.Time().Sub(killed)
			t.Logf("FIGURE %d nodes: SIGKILL of holder %s -> %s granted token %d after %v", n, g.Node, ng.Node, ng.Token, failover.Round(time.Millisecond))
			if failover > failoverBound {
				t.Errorf("failover %v > %v", failover, failoverBound)
			}
			if t.Failed() || os.Getenv("CT_VERBOSE") != "" {
				c.timeline(t, killed)
			}
			c.checkSafety(t)
		})
	}
}

// killAfterRenew SIGKILLs g's holder as soon as it reports a renewal of g's token (within a
// few milliseconds of the renewal's commit) and returns when it did.
func (c *cluster) killAfterRenew(t *testing.T, g Event) time.Time {
	t.Helper()
	since := time.Now().UnixNano()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if len(c.net.Hist.Filter(func(e Event) bool {
			return e.Ev == "renew" && e.Node == g.Node && e.Token == g.Token && e.T > since
		})) > 0 {
			killed := time.Now()
			if err := c.procs[g.Node].Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			return killed
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatalf("%s did not renew token %d within 10 s", g.Node, g.Token)
	return time.Time{}
}

// timeline logs the lease events around at (times relative to it), for a failover that took
// too long: renewals, grants, losses.
func (c *cluster) timeline(t *testing.T, at time.Time) {
	t.Helper()
	for _, e := range c.net.Hist.Filter(func(e Event) bool {
		return e.T > at.UnixNano()-3e9 && (e.Ev == "grant" || e.Ev == "renew" || e.Ev == "lost")
	}) {
		t.Logf("  %+.3fs %s %s token %d (holder's expiry %+.3fs) %s", float64(e.T-at.UnixNano())/1e9, e.Node, e.Ev, e.Token,
			float64(e.Expiry-at.UnixNano())/1e9, e.Err)
	}
}

// failoverBound is the 3 s.
const failoverBound = 3 * time.Second

func TestNetnsPartition(t *testing.T) {
	for _, n := range sizes() {
		t.Run(fmt.Sprintf("%dnodes", n), func(t *testing.T) {
			c := newCluster(t)
			all := c.boot(n)
			g := c.waitHolder(t, time.Time{}, nil)
			// Minority: the holder plus enough others to make n/2 nodes.
			minority := map[string]int{g.Node: c.idx[g.Node]}
			majority := map[string]int{}
			for _, l := range all {
				if l == g.Node {
					continue
				}
				if len(minority) < n/2 {
					minority[l] = c.idx[l]
				} else {
					majority[l] = c.idx[l]
				}
			}
			cut := time.Now()
			c.net.Cut(minority, majority)
			// The partition is complete once every route is down (Cut runs one ip command per
			// pair, tens of milliseconds each under load): a renewal granted before then was
			// granted on a working network, so the minority's lease bound counts from here.
			cutDone := time.Now()
			inMaj := map[string]bool{}
			for l := range majority {
				inMaj[l] = true
			}
			ng := c.waitHolder(t, cut, inMaj)
			t.Logf("FIGURE %d nodes: partition %d|%d, majority holder %s token %d after %v", n, len(minority), len(majority), ng.Node, ng.Token, ng.Time().Sub(cut).Round(time.Millisecond))
			// The minority has no leader within one lease duration (2 s): its
			// holder's own deadline has passed, and it has no Raft leader.
			time.Sleep(time.Until(cut.Add(2500 * time.Millisecond)))
			for l := range minority {
				st, err := c.status(l)
				if err != nil {
					t.Fatalf("%s: %v", l, err)
				}
				if st.Status.RaftState == "Leader" {
					t.Errorf("minority node %s is still Raft leader", l)
				}
			}
			rs := c.net.Hist.Filter(func(e Event) bool {
				return (e.Ev == "grant" || e.Ev == "renew") && minority[e.Node] != 0 && e.Expiry > cutDone.Add(2100*time.Millisecond).UnixNano()
			})
			if len(rs) > 0 {
				t.Errorf("minority node %s held the lease until %v (cut from %v to %v)", rs[0].Node, time.Unix(0, rs[0].Expiry), cut, cutDone)
			}
			// Wait until gossip has split into two views (each side declared
			// the other dead), so that the heal exercises the rejoin loop.
			split := waitFor(t, 60*time.Second, "split views", func() error {
				for _, side := range []map[string]int{minority, majority} {
					var want []string
					for l := range side {
						want = append(want, l)
					}
					for l := range side {
						st, err := c.status(l)
						if err != nil {
							return err
						}
						if got, w := strings.Join(st.alive(), ","), strings.Join(sorted(want), ","); got != w {
							return fmt.Errorf("%s sees %s alive, want %s", l, got, w)
						}
					}
				}
				return nil
			})
			t.Logf("FIGURE %d nodes: gossip split into two views %v after the cut", n, (time.Since(cut)).Round(time.Millisecond))
			_ = split
			c.net.Heal(minority, majority)
			d := waitFor(t, 60*time.Second, "one view after heal", func() error { return c.converged(all) })
			t.Logf("FIGURE %d nodes: one view %v after heal", n, d.Round(time.Millisecond))
			time.Sleep(time.Second)
			c.checkSafety(t)
		})
	}
}

func TestNetnsFrozenLeader(t *testing.T) {
	c := newCluster(t)
	c.boot(3)
	g := c.waitHolder(t, time.Time{}, nil)
	p := c.procs[g.Node]
	if err := p.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	others := map[string]bool{}
	for l := range c.idx {
		if l != g.Node {
			others[l] = true
		}
	}
	ng := c.waitHolder(t, stopped, others)
	time.Sleep(time.Until(stopped.Add(5 * time.Second))) // longer than the 2 s lease
	resumed := time.Now()
	if err := p.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "frozen node notices the loss", func() error {
		if len(c.net.Hist.Filter(func(e Event) bool { return e.Node == g.Node && e.Ev == "lost" && e.T > resumed.UnixNano() })) == 0 {
			return fmt.Errorf("no loss yet")
		}
		return nil
	})
	rej := c.net.Hist.Filter(func(e Event) bool {
		return e.Ev == "store_reject" && e.Writer == g.Node && e.Token == g.Token && e.T > resumed.UnixNano()
	})
	acc := c.net.Hist.Filter(func(e Event) bool {
		return e.Ev == "store_accept" && e.Writer == g.Node && e.Token == g.Token && e.T > resumed.UnixNano()
	})
	t.Logf("FIGURE frozen holder %s (token %d), new holder %s (token %d): %d stale writes after SIGCONT, all rejected: %v",
		g.Node, g.Token, ng.Node, ng.Token, len(rej)+len(acc), len(acc) == 0)
	if len(acc) > 0 {
		t.Errorf("store accepted %d writes with stale token %d", len(acc), g.Token)
	}
	if len(rej) == 0 {
		t.Logf("the frozen node wrote nothing after SIGCONT (it noticed the loss first): safe, fencing not exercised")
	}
	c.checkSafety(t)
}

func TestNetnsWrongGossipKey(t *testing.T) {
	c := newCluster(t)
	all := c.boot(3)
	other := c.writeKey("other", "b3RoZXItb3RoZXItb3RoZXItb3RoZXItb3RoZXIwMTI=")
	c.startNode(4, other)                   // wrong key
	c.startNode(5, "", "-insecure-cluster") // no key (a multi-node node without one must say so)
	time.Sleep(8 * time.Second)
	if err := c.converged(all); err != nil {
		t.Fatalf("cluster disturbed by intruders: %v", err)
	}
	for _, l := range all {
		st, _ := c.status(l)
		for _, m := range st.Members {
			if m.Name == "n4" || m.Name == "n5" {
				t.Errorf("%s lists %s (%s)", l, m.Name, m.State)
			}
		}
	}
	for _, l := range []string{"n4", "n5"} {
		st, err := c.status(l)
		if err != nil {
			t.Fatalf("%s: %v", l, err)
		}
		if a := st.alive(); len(a) != 1 {
			t.Errorf("%s joined: sees %v", l, a)
		}
	}
	c.checkSafety(t)
}

// TestNetnsPacketLoss runs 3 nodes for 30 s with 20 % loss and 20±10 ms jitter on their gossip:
// with tc netem on every node's eth0 when the kernel has sch_netem, else with the nodes'
// userspace fault injection (-gossip-loss 0.2 -gossip-delay 20ms, gossip packets only: Raft
// traffic is not degraded). It asserts no member flapping (no member seen dead or left) and
// at most 3 leader changes.
func TestNetnsPacketLoss(t *testing.T) {
	c := newCluster(t)
	netem := c.net.NetemAvailable(c.net.NS("store"))
	var all []string
	var start time.Time
	if netem {
		t.Log("packet loss: tc netem on eth0 (all traffic)")
		all = c.boot(3)
		c.waitHolder(t, time.Time{}, nil)
		start = time.Now()
		for _, l := range all {
			if err := c.net.Netem(l, "loss 20% delay 20ms 10ms"); err != nil {
				t.Fatal(err)
			}
		}
	} else {
		t.Log("packet loss: tc netem unavailable (no sch_netem): userspace fallback, 20 % of gossip packets dropped, 20±10 ms delay")
		for i := 1; i <= 3; i++ {
			c.startNode(i, c.key, "-gossip-loss", "0.2", "-gossip-delay", "20ms")
			all = append(all, label(i))
			if i == 1 {
				waitFor(t, 20*time.Second, "n1 leader", func() error { return c.converged(all) })
			}
		}
		d := waitFor(t, 30*time.Second, "cluster converged under loss", func() error { return c.converged(all) })
		t.Logf("FIGURE 3 nodes under 20%% gossip loss: one view %v after the last node started", d.Round(time.Millisecond))
		c.waitHolder(t, time.Time{}, nil)
		start = time.Now()
	}
	time.Sleep(30 * time.Second)
	if netem {
		for _, l := range all {
			_ = c.net.Netem(l, "")
		}
	}
	grants := c.net.Hist.Filter(func(e Event) bool { return e.Ev == "grant" && e.T > start.UnixNano() })
	flaps := c.net.Hist.Filter(func(e Event) bool {
		return e.Ev == "member" && e.T > start.UnixNano() && (strings.HasSuffix(e.Err, ":dead") || strings.HasSuffix(e.Err, ":left"))
	})
	t.Logf("FIGURE 20%% loss + 20±10 ms jitter for 30 s: %d leader changes, %d member flaps", len(grants), len(flaps))
	for _, f := range flaps {
		t.Errorf("member flap under loss: %s saw %s %s", f.Node, f.Writer, f.Err)
	}
	if len(grants) > 3 {
		t.Errorf("%d leader changes in 30 s under loss", len(grants))
	}
	waitFor(t, 30*time.Second, "one view after loss", func() error { return c.converged(all) })
	c.checkSafety(t)
}
