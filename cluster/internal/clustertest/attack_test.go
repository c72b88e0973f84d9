//go:build linux

package clustertest

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	wpcluster "github.com/wasmpod/wasmpod/cluster"
	"github.com/wasmpod/wasmpod/cluster/internal/blobs"
	"github.com/wasmpod/wasmpod/cluster/internal/election"
	"github.com/wasmpod/wasmpod/cluster/scatter"
)

// The outsider tests attack a running cluster from the control namespace, on the same network
// as the nodes, with the clients an attacker would use: hashicorp/raft's own public
// NetworkTransport, the forwarding and blob streams, and plain HTTP to the scatter endpoint.
// Each attempt is recorded with what it achieved; the test fails if any attempt got an answer
// or if anything it sent was applied (a forged lease, a term raised, a leader changed).

const raftPort = 7947 // gossip port 7946 + 1

// outsiderLayer is a raft.StreamLayer that dials from the control namespace, optionally with
// TLS, and writes the mux's kind byte for Raft.
type outsiderLayer struct {
	n    *Net
	tls  *tls.Config // nil: plain TCP
	done chan struct{}
	once sync.Once
}

func (l *outsiderLayer) Accept() (net.Conn, error) { <-l.done; return nil, net.ErrClosed }
func (l *outsiderLayer) Close() error              { l.once.Do(func() { close(l.done) }); return nil }
func (l *outsiderLayer) Addr() net.Addr            { return &net.TCPAddr{IP: net.IPv4(10, 0, 0, 66), Port: 7947} }
func (l *outsiderLayer) Dial(a raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return l.n.outsiderDial(string(a), 'R', l.tls, timeout)
}

// outsiderDial connects from the control namespace to addr and writes kind (after a TLS
// handshake with cfg, if set).
func (n *Net) outsiderDial(addr string, kind byte, cfg *tls.Config, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := n.ctl.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(timeout))
	if cfg != nil {
		tc := tls.Client(c, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			c.Close()
			return nil, fmt.Errorf("handshake: %w", err)
		}
		c = tc
	}
	if _, err := c.Write([]byte{kind}); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// attempt is one thing the outsider tried and what came of it.
type attempt struct {
	what   string
	target string
	err    error // nil: the outsider got an answer
	answer string
}

type attacker struct {
	t        *testing.T
	n        *Net
	tls      *tls.Config
	attempts []attempt
}

func (a *attacker) record(what, target string, answer string, err error) {
	a.attempts = append(a.attempts, attempt{what: what, target: target, err: err, answer: answer})
}

// report logs every attempt and fails the test for each that got an answer.
func (a *attacker) report() {
	a.t.Helper()
	for _, at := range a.attempts {
		if at.err == nil {
			a.t.Errorf("OUTSIDER ACHIEVED: %s on %s: answered %s", at.what, at.target, at.answer)
		} else {
			a.t.Logf("outsider: %s on %s: refused (%v)", at.what, at.target, firstLine(at.err.Error()))
		}
	}
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 160 {
		s = s[:160] + "..."
	}
	return s
}

// raftAttacks sends the four Raft RPCs with a term far ahead of the cluster's, through
// hashicorp/raft's public NetworkTransport, each carrying a forged lease for "mallory".
func (a *attacker) raftAttacks(targets map[string]string, term uint64) {
	trans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: &outsiderLayer{n: a.n, tls: a.tls, done: make(chan struct{})}, MaxPool: 1, Timeout: 3 * time.Second,
		Logger: hclog.New(&hclog.LoggerOptions{Output: io.Discard}),
	})
	defer trans.Close()
	forged, _ := json.Marshal(election.Command{Op: election.OpAcquire, Name: leaseName, Node: "mallory", Session: "evil", TTL: 100 * 365 * 24 * time.Hour})
	hdr := raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("mallory"), Addr: []byte("10.0.0.66:7947")}
	for id, addr := range targets {
		sid, sa := raft.ServerID(id), raft.ServerAddress(addr)
		var ae raft.AppendEntriesResponse
		err := trans.AppendEntries(sid, sa, &raft.AppendEntriesRequest{RPCHeader: hdr, Term: term + 100, PrevLogEntry: 0, PrevLogTerm: 0,
			Entries:           []*raft.Log{{Index: 1, Term: term + 100, Type: raft.LogCommand, Data: forged}},
			LeaderCommitIndex: 1}, &ae)
		a.record("raft AppendEntries (term +100, forged lease)", id, fmt.Sprintf("%+v", ae), err)
		var rv raft.RequestVoteResponse
		err = trans.RequestVote(sid, sa, &raft.RequestVoteRequest{RPCHeader: hdr, Term: term + 200, LastLogIndex: 1 << 40, LastLogTerm: term + 200}, &rv)
		a.record("raft RequestVote (term +200)", id, fmt.Sprintf("%+v", rv), err)
		var tn raft.TimeoutNowResponse
		err = trans.TimeoutNow(sid, sa, &raft.TimeoutNowRequest{RPCHeader: hdr}, &tn)
		a.record("raft TimeoutNow", id, fmt.Sprintf("%+v", tn), err)
		var is raft.InstallSnapshotResponse
		err = trans.InstallSnapshot(sid, sa, &raft.InstallSnapshotRequest{RPCHeader: hdr, SnapshotVersion: raft.SnapshotVersionMax,
			Term: term + 300, LastLogIndex: 1 << 40, LastLogTerm: term + 300, Size: 2}, &is, bytes.NewReader([]byte("{}")))
		a.record("raft InstallSnapshot (term +300)", id, fmt.Sprintf("%+v", is), err)
	}
}

// streamAttacks sends one request on each of the other stream kinds of the Raft port.
func (a *attacker) streamAttacks(targets map[string]string) {
	for id, addr := range targets {
		// Leader forwarding of the election: a 100-year campaign for mallory.
		a.jsonStream(id, addr, 'F', "forwarded campaign (100-year TTL)", election.Request{Kind: "campaign", Name: leaseName, Node: "mallory",
			Session: "evil", TTL: 100 * 365 * 24 * time.Hour})
		// Leader forwarding of the queue: prune everything.
		a.jsonStream(id, addr, 'Q', "forwarded queue prune", map[string]any{"cmd": map[string]any{"op": "prune", "before": time.Now().Add(24 * time.Hour)}})
		// Blob push of a file no command refers to.
		a.blobPush(id, addr)
	}
}

func (a *attacker) jsonStream(id, addr string, kind byte, what string, req any) {
	c, err := a.n.outsiderDial(addr, kind, a.tls, 3*time.Second)
	if err != nil {
		a.record(what, id, "", err)
		return
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if err := json.NewEncoder(c).Encode(req); err != nil {
		a.record(what, id, "", err)
		return
	}
	var resp json.RawMessage
	err = json.NewDecoder(c).Decode(&resp)
	a.record(what, id, string(resp), err)
}

func (a *attacker) blobPush(id, addr string) {
	const what = "blob push (1 MiB, unreferenced)"
	st, err := blobs.Open(filepath.Join(a.t.TempDir(), "blobs"), 1<<30)
	if err != nil {
		a.t.Fatal(err)
	}
	sha, _, err := st.Put(bytes.NewReader(bytes.Repeat([]byte("x"), 1<<20)))
	if err != nil {
		a.t.Fatal(err)
	}
	c, err := a.n.outsiderDial(addr, 'B', a.tls, 3*time.Second)
	if err != nil {
		a.record(what, id, "", err)
		return
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = blobs.Push(ctx, c, st, sha)
	a.record(what, id, "stored "+sha, err)
}

// scatterAttack posts to a scatter endpoint from the control namespace (plain HTTP, or HTTPS
// with the attacker's TLS configuration) and asks for the shard's secret.
func (a *attacker) scatterAttack(id, addr string) {
	tr := &http.Transport{DialContext: a.n.ctl.DialContext, DisableKeepAlives: true}
	scheme := "http"
	if a.tls != nil {
		scheme, tr.TLSClientConfig = "https", a.tls
	}
	hc := &http.Client{Timeout: 5 * time.Second, Transport: tr}
	what := "scatter " + scheme + " POST to the shard \"secret\""
	req, _ := http.NewRequest(http.MethodPost, scheme+"://"+addr+scatter.PathPrefix+"secret", strings.NewReader("q"))
	req.Header.Set("Wasmpod-Request-Id", "0123456789abcdef0123456789abcdef")
	resp, err := hc.Do(req)
	if err != nil {
		a.record(what, id, "", err)
		return
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	a.record(what, id, fmt.Sprintf("%d %q", resp.StatusCode, b), nil)
}

// snapshot is what the cluster looks like, to compare before and after an attack.
type snapshot struct {
	term   map[string]uint64
	leader map[string]string
}

func (c *cluster) snapshot(t *testing.T, ls []string) snapshot {
	t.Helper()
	s := snapshot{term: map[string]uint64{}, leader: map[string]string{}}
	for _, l := range ls {
		var st struct {
			Status wpcluster.Status `json:"status"`
		}
		resp, err := c.net.Client(3 * time.Second).Get("http://" + c.net.IP(c.idx[l]) + ":8080/status")
		if err != nil {
			t.Fatalf("%s: %v", l, err)
		}
		_ = json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		s.term[l], s.leader[l] = st.Status.Term, st.Status.RaftLeader
	}
	return s
}

// nothingApplied fails the test if the attack left a trace: a lease held by mallory, a term
// raised by the outsider's, a leader outside the cluster, a grant to anyone but a member.
func (c *cluster) nothingApplied(t *testing.T, ls []string, before snapshot, attackTerm uint64) {
	t.Helper()
	after := c.snapshot(t, ls)
	members := map[string]bool{}
	for _, l := range ls {
		members[l] = true
	}
	for _, l := range ls {
		if after.term[l] >= attackTerm {
			t.Errorf("APPLIED: %s is at term %d, the outsider's terms start at %d (before: %d)", l, after.term[l], attackTerm, before.term[l])
		}
		if !members[after.leader[l]] {
			t.Errorf("APPLIED: %s follows leader %q", l, after.leader[l])
		}
		var lease wpcluster.Lease
		resp, err := c.net.Client(5 * time.Second).Get("http://" + c.net.IP(c.idx[l]) + ":8080/lease/" + leaseName)
		if err != nil {
			t.Fatalf("%s: %v", l, err)
		}
		_ = json.NewDecoder(resp.Body).Decode(&lease)
		resp.Body.Close()
		if lease.Holder == "mallory" || lease.TTLMillis > int64(time.Hour/time.Millisecond) {
			t.Errorf("APPLIED: %s: lease %s held by %q, TTL %d ms", l, leaseName, lease.Holder, lease.TTLMillis)
		}
	}
	for _, e := range c.net.Hist.Filter(func(e Event) bool { return e.Ev == "grant" }) {
		if !members[e.Node] {
			t.Errorf("APPLIED: a grant to %s", e.Node)
		}
	}
	t.Logf("after the attack: terms %v (before %v), leaders %v", after.term, before.term, after.leader)
}

func (c *cluster) raftTargets(ls []string) map[string]string {
	out := map[string]string{}
	for _, l := range ls {
		out[l] = fmt.Sprintf("%s:%d", c.net.IP(c.idx[l]), raftPort)
	}
	return out
}

// TestNetnsOutsiders: a 3-node cluster started with a gossip key (so mutual TLS derived from
// it) is attacked by an outsider on its network with no key: every Raft RPC, forwarding
// stream, blob push and scatter request must fail at the handshake, and nothing may change.
// WASMPOD_ATTACK_INSECURE=1 runs the same attacks against an --insecure-cluster, where they
// land: the proof that the test can fail.
func TestNetnsOutsiders(t *testing.T) {
	c := newCluster(t)
	insecure := os.Getenv("WASMPOD_ATTACK_INSECURE") == "1"
	var ls []string
	for i := 1; i <= 3; i++ {
		extra := []string{"-scatter", c.net.IP(i) + ":7948"}
		key := c.key
		if insecure {
			key, extra = "", append(extra, "-insecure-cluster")
		}
		c.startNode(i, key, extra...)
		ls = append(ls, label(i))
		if i == 1 {
			waitFor(t, 20*time.Second, "n1 leader", func() error { return c.converged(ls) })
		}
	}
	waitFor(t, 30*time.Second, "cluster converged", func() error { return c.converged(ls) })
	c.waitHolder(t, time.Time{}, nil)

	// Control: members reach each other's scatter endpoints over the cluster's TLS.
	resp, err := c.net.Client(10 * time.Second).Get("http://" + c.net.IP(1) + ":8080/scatter-call?addr=" + c.net.IP(2) + ":7948")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "secret of n2") {
		t.Fatalf("member-to-member scatter call: %d %s", resp.StatusCode, body)
	}

	before := c.snapshot(t, ls)
	var top uint64
	for _, v := range before.term {
		top = max(top, v)
	}
	a := &attacker{t: t, n: c.net}
	for round := 0; round < 3; round++ { // repeated: a term raised 10 times a second once left the cluster leaderless
		a.raftAttacks(c.raftTargets(ls), top)
	}
	a.streamAttacks(c.raftTargets(ls))
	for _, l := range ls {
		a.scatterAttack(l, c.net.IP(c.idx[l])+":7948")
	}
	time.Sleep(3 * time.Second) // whatever the attempts did has had time to show
	a.report()
	c.nothingApplied(t, ls, before, top+100)
	c.checkSafety(t)
}

// pki writes a CA and node certificates for names into dir and returns the file paths of
// each node's (ca, cert, key).
func pki(t *testing.T, dir string, names ...string) map[string][3]string {
	t.Helper()
	caPEM, caKey, err := wpcluster.NewCA("test CA "+filepath.Base(dir), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	caPath := filepath.Join(dir, "ca.pem")
	write := func(p string, b []byte) {
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(caPath, caPEM)
	out := map[string][3]string{}
	for _, n := range names {
		cp, kp, err := wpcluster.IssueNodeCert(caPEM, caKey, n, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		cf, kf := filepath.Join(dir, n+".pem"), filepath.Join(dir, n+"-key.pem")
		write(cf, cp)
		write(kf, kp)
		out[n] = [3]string{caPath, cf, kf}
	}
	return out
}

func tlsArgs(f [3]string) []string {
	return []string{"-tls-ca", f[0], "-tls-cert", f[1], "-tls-key", f[2]}
}

// TestNetnsWrongCA: a node with the cluster's gossip key (so it joins gossip) but a
// certificate from another CA never takes part in Raft: it learns no leader, wins no lease,
// and the cluster keeps its leader and lease.
func TestNetnsWrongCA(t *testing.T) {
	c := newCluster(t)
	good := pki(t, filepath.Join(t.TempDir(), "good"), "n1", "n2", "n3")
	bad := pki(t, filepath.Join(t.TempDir(), "bad"), "n4")
	var ls []string
	for i := 1; i <= 3; i++ {
		c.startNode(i, c.key, tlsArgs(good[label(i)])...)
		ls = append(ls, label(i))
		if i == 1 {
			waitFor(t, 20*time.Second, "n1 leader", func() error { return c.converged(ls) })
		}
	}
	waitFor(t, 30*time.Second, "cluster converged", func() error { return c.converged(ls) })
	c.waitHolder(t, time.Time{}, nil)
	start := time.Now()
	c.startNode(4, c.key, tlsArgs(bad["n4"])...)
	time.Sleep(10 * time.Second)
	st, err := c.status("n4")
	if err != nil {
		t.Fatal(err)
	}
	if st.Status.RaftLeader != "" {
		t.Errorf("n4 (wrong CA) follows leader %q: it joined Raft", st.Status.RaftLeader)
	}
	if gs := c.net.Hist.Filter(func(e Event) bool { return e.Ev == "grant" && e.Node == "n4" }); len(gs) > 0 {
		t.Errorf("n4 (wrong CA) was granted the lease: %+v", gs)
	}
	for _, l := range ls {
		st, err := c.status(l)
		if err != nil {
			t.Fatal(err)
		}
		if st.Status.RaftLeader == "" || st.Status.RaftLeader == "n4" {
			t.Errorf("%s: leader %q", l, st.Status.RaftLeader)
		}
	}
	var lease wpcluster.Lease
	resp, err := c.net.Client(5 * time.Second).Get("http://" + c.net.IP(1) + ":8080/lease/" + leaseName)
	if err != nil {
		t.Fatal(err)
	}
	_ = json.NewDecoder(resp.Body).Decode(&lease)
	resp.Body.Close()
	if !lease.Held || lease.Holder == "n4" {
		t.Errorf("lease after n4 came: %+v", lease)
	}
	if rs := c.net.Hist.Filter(func(e Event) bool { return e.Ev == "renew" && e.T > start.UnixNano() && e.Node == lease.Holder }); len(rs) == 0 {
		t.Errorf("the holder %s renewed nothing while n4 was trying to join", lease.Holder)
	}
	t.Logf("n4 with a certificate of another CA: raft state %s, leader %q", st.Status.RaftState, st.Status.RaftLeader)
	c.checkSafety(t)
}

// TestNetnsDepartedCert: a member leaves; its certificate and key, replayed by an outsider
// from the same network, no longer get past the handshake (revocation by membership). While
// it was a member, the same certificate was let in: the control that the test can fail.
func TestNetnsDepartedCert(t *testing.T) {
	c := newCluster(t)
	files := pki(t, filepath.Join(t.TempDir(), "pki"), "n1", "n2", "n3", "n4")
	var ls []string
	for i := 1; i <= 4; i++ {
		c.startNode(i, c.key, tlsArgs(files[label(i)])...)
		ls = append(ls, label(i))
		if i == 1 {
			waitFor(t, 20*time.Second, "n1 leader", func() error { return c.converged(ls) })
		}
	}
	waitFor(t, 30*time.Second, "cluster converged", func() error { return c.converged(ls) })
	c.waitHolder(t, time.Time{}, nil)

	cert, err := tls.LoadX509KeyPair(files["n4"][1], files["n4"][2])
	if err != nil {
		t.Fatal(err)
	}
	stolen := &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true}
	get := func(target string) error {
		cn, err := c.net.outsiderDial(target, 'F', stolen, 3*time.Second)
		if err != nil {
			return err
		}
		defer cn.Close()
		_ = cn.SetDeadline(time.Now().Add(5 * time.Second))
		if err := json.NewEncoder(cn).Encode(election.Request{Kind: "get", Name: leaseName}); err != nil {
			return err
		}
		var resp json.RawMessage
		return json.NewDecoder(cn).Decode(&resp)
	}
	n1 := c.raftTargets([]string{"n1"})["n1"]
	if err := get(n1); err != nil {
		t.Fatalf("control: n4's certificate while n4 is a member: %v", err)
	}

	// n4 leaves gracefully.
	_ = c.procs["n4"].Signal(syscall.SIGTERM)
	if !c.procs["n4"].Wait(20 * time.Second) {
		t.Fatal("n4 did not stop")
	}
	rest := ls[:3]
	waitFor(t, 30*time.Second, "n4 gone from the voters", func() error { return c.converged(rest) })

	before := c.snapshot(t, rest)
	var top uint64
	for _, v := range before.term {
		top = max(top, v)
	}
	a := &attacker{t: t, n: c.net, tls: stolen}
	a.raftAttacks(c.raftTargets(rest), top)
	a.streamAttacks(c.raftTargets(rest))
	for _, l := range rest {
		if err := get(c.raftTargets([]string{l})[l]); err == nil {
			a.record("forwarded get with n4's certificate", l, "a lease", nil)
		} else {
			a.record("forwarded get with n4's certificate", l, "", err)
		}
	}
	time.Sleep(3 * time.Second)
	a.report()
	c.nothingApplied(t, rest, before, top+100)
	c.checkSafety(t)
}
