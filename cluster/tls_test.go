package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/cluster/internal/election"
	"github.com/wasmpod/wasmpod/cluster/internal/queuestate"
	"github.com/wasmpod/wasmpod/cluster/internal/replog"
)

func TestInsecureClusterRefused(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(c *Config)
		err    error
		secure bool
	}{
		{"join without key", func(c *Config) { c.GossipKey = nil; c.Join = []string{"127.0.0.1:1"} }, ErrInsecure, false},
		{"all interfaces without key", func(c *Config) { c.GossipKey = nil; c.BindAddr = "0.0.0.0:0" }, ErrInsecure, false},
		{"raft on all interfaces without key", func(c *Config) { c.GossipKey = nil; c.RaftAddr = ":0" }, ErrInsecure, false},
		{"loopback without key: a cluster of one", func(c *Config) { c.GossipKey = nil }, nil, true},
		{"join without key, insecure by request", func(c *Config) {
			c.GossipKey, c.InsecureCluster, c.Join = nil, true, []string{"127.0.0.1:1"}
		}, nil, false},
		{"join with key", func(c *Config) { c.Join = []string{"127.0.0.1:1"} }, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := testConfig("n")
			c.Bootstrap = BootstrapAlways
			tc.mutate(&c)
			n, err := Start(c)
			if tc.err != nil {
				if !errors.Is(err, tc.err) || !strings.Contains(err.Error(), "openssl rand") {
					t.Fatalf("Start: %v, want %v saying how to make a key", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer n.Shutdown(t.Context())
			if n.Secure() != tc.secure || (n.InsecureWarning() == "") != tc.secure {
				t.Errorf("Secure() %v, warning %q; want secure %v", n.Secure(), n.InsecureWarning(), tc.secure)
			}
		})
	}
}

func TestBringYourOwnPKI(t *testing.T) {
	caPEM, caKey, err := NewCA("test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := IssueNodeCert(caPEM, caKey, "a", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c := testConfig("a")
	c.GossipKey = nil
	c.Join = []string{"127.0.0.1:1"} // multi-node: certificates alone are enough
	c.TLS = TLSConfig{CAPEM: caPEM, CertPEM: cert, KeyPEM: key}
	n, err := Start(c)
	if err != nil {
		t.Fatal(err)
	}
	n.Shutdown(t.Context())
	if !n.Secure() {
		t.Error("not secure with certificates")
	}
	c.NodeName = "b" // the certificate names a
	if _, err := Start(c); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "names \"a\"") {
		t.Errorf("a certificate for a started node b: %v", err)
	}
}

// threeNodes starts a, b, c with the test key and waits for one leader.
func threeNodes(t *testing.T) (leader *Node, followers []*Node) {
	t.Helper()
	a := startNode(t, testConfig("a"))
	b := startNode(t, testConfig("b", a.GossipAddr()))
	c := startNode(t, testConfig("c", a.GossipAddr()))
	all := []*Node{a, b, c}
	eventually(t, "one leader, three voters", func() error {
		for _, n := range all {
			st := n.Status()
			if st.RaftLeader == "" || len(st.Voters) != 3 {
				return errors.New(n.Name() + ": no leader or voters yet")
			}
		}
		return nil
	})
	for _, n := range all {
		if n.log.IsLeader() {
			leader = n
		} else {
			followers = append(followers, n)
		}
	}
	if leader == nil {
		t.Fatal("no leader")
	}
	return leader, followers
}

// A member forwarding an operation for another node's sessions or workers is refused by the
// leader, which knows who forwarded from the certificate; bounds apply as on the admin API.
func TestForwardedOperationsAuthorized(t *testing.T) {
	leader, fs := threeNodes(t)
	b := fs[0]
	other := fs[1].Name()
	addr := leader.log.Addr()
	lease := func(req election.Request) string {
		c, err := b.log.Dial(addr, 'F', 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		_ = json.NewEncoder(c).Encode(req)
		var resp struct {
			Err string `json:"err"`
		}
		if err := json.NewDecoder(c).Decode(&resp); err != nil {
			t.Fatal(err)
		}
		return resp.Err
	}
	q := func(cmd queuestate.Command) queuestate.Response {
		c, err := b.log.Dial(addr, connQueue, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		_ = json.NewEncoder(c).Encode(fwdRequest{Cmd: cmd})
		var r legacyResponse
		if err := json.NewDecoder(io.LimitReader(c, 1<<20)).Decode(&r); err != nil {
			t.Fatal(err)
		}
		var resp queuestate.Response
		_ = json.Unmarshal(r.Resp, &resp)
		return resp
	}
	// The same commands through the replicated log's own forwarding stream.
	doLease := func(req election.Request) string {
		cmd, _ := json.Marshal(req)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		out, err := b.log.Do(ctx, replog.TagLeases, cmd)
		if err != nil {
			t.Fatal(err)
		}
		var resp struct {
			Err string `json:"err"`
		}
		_ = json.Unmarshal(out, &resp)
		return resp.Err
	}
	doQueue := func(cmd queuestate.Command) queuestate.Response {
		b2, _ := json.Marshal(fwdRequest{Cmd: cmd})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		out, err := b.log.Do(ctx, replog.TagQueue, b2)
		if err != nil {
			t.Fatal(err)
		}
		var resp queuestate.Response
		_ = json.Unmarshal(out, &resp)
		return resp
	}
	century := 100 * 365 * 24 * time.Hour
	for _, tc := range []struct {
		name string
		req  election.Request
		want string
	}{
		{"campaign for another node", election.Request{Kind: "campaign", Name: "x", Node: other, Session: "s", TTL: time.Second}, election.ErrForbidden.Error()},
		{"resign another node's lease", election.Request{Kind: "resign", Name: "x", Node: other, Session: "s", Token: 1}, election.ErrForbidden.Error()},
		{"campaign for 100 years", election.Request{Kind: "campaign", Name: "x", Node: b.Name(), Session: "s", TTL: century}, election.ErrBadRequest.Error()},
		{"renew for 100 years", election.Request{Kind: "renew", Name: "x", Node: b.Name(), Session: "s", Token: 1, TTL: century}, election.ErrBadRequest.Error()},
		{"own campaign", election.Request{Kind: "campaign", Name: "x", Node: b.Name(), Session: "s", TTL: time.Second}, ""},
	} {
		if got := lease(tc.req); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
		if got := doLease(tc.req); got != tc.want && tc.want != "" {
			t.Errorf("%s (replog stream): %q, want %q", tc.name, got, tc.want)
		}
	}
	for _, tc := range []struct {
		name string
		cmd  queuestate.Command
		ok   bool
	}{
		{"prune", queuestate.Command{Op: queuestate.OpPrune, Before: time.Now().Add(time.Hour)}, false},
		{"lease for another node's worker", queuestate.Command{Op: queuestate.OpLease, Name: "p/0", Worker: other + "/p/0/0"}, false},
		{"complete another node's lease", queuestate.Command{Op: queuestate.OpComplete, Lease: &queuestate.Lease{ID: 1, Worker: other + "/p/0/0"}}, false},
		{"lease for its own worker", queuestate.Command{Op: queuestate.OpLease, Name: "p/0", Worker: b.Name() + "/p/0/0"}, true},
		{"complete another node's lease and lease for its own worker", queuestate.Command{Op: queuestate.OpCompleteLease,
			Lease: &queuestate.Lease{ID: 1, Worker: other + "/p/0/0"}, Name: "p/0", Worker: b.Name() + "/p/0/0"}, false},
		{"complete its own lease and lease for another node's worker", queuestate.Command{Op: queuestate.OpCompleteLease,
			Lease: &queuestate.Lease{ID: 1, Worker: b.Name() + "/p/0/0"}, Name: "p/0", Worker: other + "/p/0/0"}, false},
		{"complete its own lease and lease for its own worker", queuestate.Command{Op: queuestate.OpCompleteLease,
			Lease: &queuestate.Lease{ID: 1, Worker: b.Name() + "/p/0/0"}, Name: "p/0", Worker: b.Name() + "/p/0/0"}, true},
	} {
		r := q(tc.cmd)
		forbidden := strings.Contains(r.Error, "forbidden")
		if forbidden == tc.ok {
			t.Errorf("%s: %+v", tc.name, r)
		}
		r = doQueue(tc.cmd)
		if forbidden := strings.Contains(r.Error, "forbidden"); forbidden == tc.ok {
			t.Errorf("%s (replog stream): %+v", tc.name, r)
		}
	}
}

func TestBlobQuota(t *testing.T) {
	refs := map[string]struct{}{}
	q := &blobQuota{maxBytes: 100, maxFiles: 3, grace: time.Hour, peers: map[string][]pendingBlob{},
		refs: func() (map[string]struct{}, error) { return refs, nil }}
	must := func(peer, sha string, size int64, ok bool) {
		t.Helper()
		if err := q.admit(peer, sha, size); (err == nil) != ok {
			t.Fatalf("admit %s %s %d: %v, want ok=%v", peer, sha, size, err, ok)
		}
	}
	must("a", "1", 60, true)
	must("a", "2", 60, false) // 120 bytes unreferenced
	must("b", "2", 60, true)  // another peer's quota
	refs["1"] = struct{}{}    // a command now refers to 1: its bytes are released
	must("a", "2", 60, true)
	must("a", "3", 10, true)
	must("a", "4", 10, true)
	must("a", "5", 10, false) // four files unreferenced
	refs["5"] = struct{}{}
	must("a", "5", 10, true) // referenced already: no charge
}
