//go:build linux

package clustertest

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	wp "github.com/wasmpod/wasmpod/cluster"
	"github.com/wasmpod/wasmpod/cluster/queue"
	"github.com/wasmpod/wasmpod/examples/search"
	"github.com/wasmpod/wasmpod/internal/podtest"
	"github.com/wasmpod/wasmpod/internal/wasmbuild"
)

// The rolling-upgrade test (issue 18 part 5): three `wasmpod run` processes, one per network
// namespace, run the search example's scatter pod (six shards, two replicas of s0, s2 and s4)
// and the pipeline example's "counts" work-queue pipeline, under constant query, submit and
// election load. They start on the previous release's binary (fromBinary) and are upgraded one
// at a time to the binary under test, each keeping its state directory (deploy/README.md,
// "Upgrading node by node"); then one is downgraded. When the new release has cluster TLS and
// the old one none, the new nodes run with --insecure-cluster until all run it, and the test
// ends with the whole-cluster restart into TLS.

const (
	rollingToken  = "rolling-test-token"
	rollingLease  = "rolling"
	rollingShards = 6
	rollingK      = 10
)

// rollingShardsOf lists the shards each node holds (as examples/search/node-N.yaml): only s1,
// s3 and s5 have a single replica, so only they may go missing while their node is down.
var rollingShardsOf = map[int][]int{1: {0, 1, 2}, 2: {2, 3, 4}, 3: {4, 5, 0}}

var rollingQueries = []string{"license", "warranty", "gnu general public", "copyright software permission", "apache"}

type rollingNode struct {
	i       int
	bin     binInfo
	proc    *Proc
	dir     string
	inSvc   atomic.Bool // the "load balancer" sends it queries and submits
	upgrade bool        // runs the binary under test
	// insecure: run with --insecure-cluster (a binary with cluster TLS, in plaintext)
	insecure bool
}

type rollingCluster struct {
	t       *testing.T
	net     *Net
	dir     string
	old     binInfo
	new     binInfo
	token   string
	key     string
	nodes   map[int]*rollingNode
	members [][]search.Document
	// secure: the whole cluster runs the new release and restarts into cluster TLS.
	secure bool

	truthMu sync.Mutex
	truth   map[string]string

	winMu   sync.Mutex
	windows []downWindow
}

// downWindow is a time during which node may be out: from when it left the load balancer until
// a while after it came back complete.
type downWindow struct {
	node             int
	start, back, end time.Time
}

func TestRollingUpgrade(t *testing.T) {
	n := NewNet(t) // skips without root and netns
	oldPath, commit := fromBinary(t)
	c := &rollingCluster{t: t, net: n, dir: t.TempDir(), nodes: map[int]*rollingNode{}, truth: map[string]string{}}
	c.old, c.new = inspect(t, oldPath), inspect(t, podtest.Binary(t))
	t.Logf("upgrading from %s (%s) to %s", c.old, commit[:12], c.new)
	if c.plaintextBridge() {
		t.Logf("the previous release has no cluster TLS: the new one runs with --insecure-cluster until every node has it, then the cluster restarts into TLS")
	}
	c.layout()

	// Start on the previous release.
	for i := 1; i <= 3; i++ {
		c.start(i, false)
	}
	c.waitVoters(1, 3)
	for i := 1; i <= 3; i++ {
		c.waitComplete(i)
		c.nodes[i].inSvc.Store(true)
	}

	// Raft state written by the old release: jobs, finished before the upgrade.
	pre := submitted{}
	for j := range 6 {
		id, in, err := c.submit(1+j%3, "pre", j)
		if err != nil {
			t.Fatalf("submit before the upgrade: %v", err)
		}
		pre[id] = in
	}
	c.checkJobs(1, pre)

	// Constant load: queries, submits, an election.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	ql := &queryLog{}
	for g := range 3 {
		wg.Add(1)
		go func() { defer wg.Done(); c.queryLoad(g, stop, ql) }()
	}
	sl := &submitLog{acked: submitted{}}
	wg.Add(1)
	go func() { defer wg.Done(); c.submitLoad(stop, sl) }()
	for i := 1; i <= 3; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); c.campaign(i, stop) }()
	}
	time.Sleep(2 * time.Second) // the load under the old release alone

	// Followers first, the Raft leader last (deploy/README.md's order; either works).
	leader := c.raftLeader(1)
	order := []int{}
	for i := 1; i <= 3; i++ {
		if i != leader {
			order = append(order, i)
		}
	}
	order = append(order, leader)
	for _, i := range order {
		took := c.replace(i, true)
		t.Logf("FIGURE n%d upgraded (old -> new) in %v (out of the load balancer to back in)", i, took.Round(100*time.Millisecond))
		time.Sleep(2 * time.Second) // load on the mixed cluster
	}
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()

	// Queries: none failed; a partial answer only while a node was out, and only lacking a
	// shard that node alone holds; every answer exact over the shards it has.
	c.checkQueries(ql)
	// Submits: every acknowledged job completed with the right outputs, read through each
	// upgraded node; the jobs from before the upgrade too (Raft state the new release read).
	sl.mu.Lock()
	acked, failed := sl.acked, sl.failed
	sl.mu.Unlock()
	if len(acked) < 5 {
		t.Fatalf("only %d submits acknowledged during the upgrade (%d failed): the load did not run", len(acked), failed)
	}
	red := c.checkJobs(leader, acked)
	for i := 1; i <= 3; i++ {
		c.checkJobs(i, pre)
	}
	t.Logf("FIGURE rolling upgrade: %d queries (%d partial while a node was out), %d jobs acknowledged and completed (%d submits refused, %d redeliveries), none lost",
		len(ql.answers), ql.partial(), len(acked), failed, red)
	// The election: at most one holder per token, tokens growing, no overlapping terms.
	grants := len(n.Hist.Filter(func(e Event) bool { return e.Ev == "grant" && e.Lease == rollingLease }))
	if bad := n.Hist.Check(rollingLease); len(bad) > 0 {
		t.Fatalf("election history (%d grants): %s", grants, strings.Join(bad, "; "))
	}
	if grants == 0 {
		t.Fatal("no campaign was granted during the upgrade: the election load did not run")
	}
	t.Logf("FIGURE election %q through the upgrade: %d grants, at most one holder per token", rollingLease, grants)

	// Downgrade one node to the previous release, with the state the new one wrote.
	c.downgrade(order[0])

	// Entering cluster TLS (deploy/README.md): back on the new release, then every node
	// restarts without --insecure-cluster, state kept.
	if c.plaintextBridge() {
		c.replace(order[0], true)
		start := time.Now()
		c.secure = true
		for i := 1; i <= 3; i++ {
			c.stop(i)
		}
		for i := 1; i <= 3; i++ {
			c.start(i, true)
		}
		for i := 1; i <= 3; i++ {
			c.waitReady(i)
			c.waitVoters(i, 3)
		}
		for i := 1; i <= 3; i++ {
			c.waitComplete(i)
			c.checkJobs(i, pre)
		}
		t.Logf("FIGURE whole-cluster restart into cluster TLS, state kept: complete answers and the old jobs after %v", time.Since(start).Round(100*time.Millisecond))
	}
}

// plaintextBridge reports whether the new release has cluster TLS (and --insecure-cluster)
// while the previous one has none: the new nodes then run in plaintext like the old ones until
// every node runs the new release.
func (c *rollingCluster) plaintextBridge() bool {
	return c.new.has("insecure-cluster") && !c.old.has("insecure-cluster")
}

// layout writes the guests, shards, token, gossip key and one pod spec per node.
func (c *rollingCluster) layout() {
	t := c.t
	docs, err := search.Corpus()
	if err != nil || len(docs) < 20 {
		t.Skipf("no search corpus on this machine (%d documents): %v", len(docs), err)
	}
	if c.members, err = search.WriteShards(filepath.Join(c.dir, "shards"), docs, rollingShards); err != nil {
		t.Fatal(err)
	}
	root, err := wasmbuild.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	wasm := map[string]string{
		"leaf":   wasmbuild.Go(t, filepath.Join(root, "plugins", "search-leaf")),
		"merge":  wasmbuild.Go(t, filepath.Join(root, "plugins", "search-merge")),
		"gunzip": podtest.Plugin(t, "pipeline-gunzip"),
		"wc":     podtest.Plugin(t, "pipeline-wc"),
	}
	c.token = filepath.Join(c.dir, "token")
	c.key = filepath.Join(c.dir, "gossip.key")
	for p, s := range map[string]string{c.token: rollingToken, c.key: "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTAxMjM="} {
		if err := os.WriteFile(p, []byte(s+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for i, own := range rollingShardsOf {
		var vols, mods, shards strings.Builder
		for s := range rollingShards {
			if !slices.Contains(own, s) {
				fmt.Fprintf(&shards, "      - {name: s%d, remote: true}\n", s)
				continue
			}
			fmt.Fprintf(&vols, "    - {name: shard-s%d, hostPath: {path: %s, type: Directory}}\n", s, filepath.Join(c.dir, "shards", search.ShardName(s)))
			fmt.Fprintf(&mods, `    - name: leaf-s%d
      role: leaf
      wasm: %s
      resources: {memory: 64Mi, timeout: 5s, concurrency: 2}
      volumeMounts: [{name: shard-s%d, mountPath: /data, readOnly: true}]
`, s, wasm["leaf"], s)
			fmt.Fprintf(&shards, "      - {name: s%d, leaf: leaf-s%d}\n", s, s)
		}
		// The scatter deadline is generous: on a loaded 2-core machine a shard past it would
		// make an answer partial with every node up, which the test counts as a failure.
		spec := fmt.Sprintf(`apiVersion: wasmpod.dev/v1
kind: Pod
metadata: {name: rolling}
spec:
  terminationGracePeriodSeconds: 10
  volumes:
%s  modules:
%s    - name: merge
      role: merge
      wasm: %s
      resources: {timeout: 5s, concurrency: 4}
    - name: gunzip
      role: stage
      wasm: %s
      resources: {memory: 64Mi, timeout: 30s, concurrency: 2}
    - name: wc
      role: stage
      wasm: %s
      resources: {memory: 64Mi, timeout: 30s, concurrency: 2}
  scatter:
    path: /search
    merge: merge
    deadline: 8s
    mergeReserve: 100ms
    replicas: 2
    shards:
%s  pipelines:
    - name: counts
      maxAttempts: 10
      backoff: 200ms
      stages:
        - module: gunzip
        - module: wc
`, vols.String(), mods.String(), wasm["merge"], wasm["gunzip"], wasm["wc"], shards.String())
		if err := os.WriteFile(filepath.Join(c.dir, fmt.Sprintf("node-%d.yaml", i)), []byte(spec), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// args is node i's command line for binary b: only flags b knows. With a gossip key, a binary
// with cluster TLS would use it by default; one that has --insecure-cluster while the other
// release has no TLS at all runs in plaintext like it (deploy/README.md: the first TLS release
// is entered by a rolling upgrade in insecure mode, then a whole-cluster restart with TLS).
func (c *rollingCluster) args(i int, b binInfo) []string {
	ip := c.net.IP(i)
	args := []string{"run", filepath.Join(c.dir, fmt.Sprintf("node-%d.yaml", i)),
		"--node-name", label(i), "--bind", ip + ":7946", "--admin", ip + ":9901", "--listen", ip + ":8080",
		"--state-dir", c.nodes[i].dir, "--token-file", c.token, "--gossip-key-file", c.key}
	for _, f := range []string{"node-name", "bind", "admin", "listen", "state-dir", "token-file", "gossip-key-file", "join"} {
		if !b.has(f) {
			c.t.Fatalf("%s has no run --%s", b, f)
		}
	}
	// Optional flags, passed to the binaries that know them.
	// A Raft snapshot every 64 entries (checked every 1-2 s), so that every node has one when
	// it is replaced: the next binary must restore it.
	for _, f := range [][2]string{{"queue-lease", "2s"}, {"queue-backoff", "200ms"},
		{"raft-snapshot-threshold", "64"}, {"raft-snapshot-interval", "1s"}} {
		if b.has(f[0]) {
			args = append(args, "--"+f[0], f[1])
		}
	}
	if c.plaintextBridge() && b.has("insecure-cluster") && !c.secure {
		args = append(args, "--insecure-cluster")
	}
	var join []string
	for j := 1; j <= 3; j++ {
		if j != i && c.nodes[j] != nil && c.nodes[j].proc != nil {
			join = append(join, c.net.IP(j)+":7946")
		}
	}
	if len(join) > 0 {
		args = append(args, "--join", strings.Join(join, ","))
	}
	return args
}

// start starts node i with the old or the new binary, keeping its state directory.
func (c *rollingCluster) start(i int, upgraded bool) {
	nd := c.nodes[i]
	if nd == nil {
		c.net.AddHost(label(i), i)
		nd = &rollingNode{i: i, dir: filepath.Join(c.dir, fmt.Sprintf("state-%d", i))}
		c.nodes[i] = nd
	}
	nd.bin, nd.upgrade = c.old, false
	if upgraded {
		nd.bin, nd.upgrade = c.new, true
	}
	args := c.args(i, nd.bin)
	nd.insecure = slices.Contains(args, "--insecure-cluster")
	nd.proc = c.net.Start(label(i), nd.bin.path, args...)
}

// stop takes node i out of the load balancer, then stops it with SIGTERM (its grace period
// drains what it serves) and waits for it to exit.
func (c *rollingCluster) stop(i int) time.Time {
	nd := c.nodes[i]
	nd.inSvc.Store(false)
	out := time.Now()
	time.Sleep(200 * time.Millisecond) // as a load balancer's readiness period: no new requests
	if err := nd.proc.Signal(syscall.SIGTERM); err != nil {
		c.t.Fatalf("SIGTERM n%d: %v", i, err)
	}
	if !nd.proc.Wait(45 * time.Second) { // grace 10 s + leave + admin close, on a loaded machine
		c.t.Fatalf("n%d did not stop within 45s of SIGTERM:\n%s", i, nd.proc.Stderr())
	}
	if code := nd.proc.cmd.ProcessState.ExitCode(); code != 0 {
		c.t.Fatalf("n%d (%s) exited with %d on SIGTERM:\n%s", i, nd.bin, code, nd.proc.Stderr())
	}
	return out
}

// replace stops node i and starts it again on the new (or old) binary with its state; it
// returns once the node is back in the load balancer. A binary that can be told to snapshot
// Raft must have left a snapshot, and the next one must restore it.
func (c *rollingCluster) replace(i int, upgraded bool) time.Duration {
	from := c.nodes[i].bin
	snaps := c.waitSnapshot(i)
	out := c.stop(i)
	c.start(i, upgraded)
	c.waitReady(i)
	c.checkRestored(i, from, snaps)
	c.waitVoters(i, 3)
	c.waitComplete(i)
	c.nodes[i].inSvc.Store(true)
	// As deploy/README.md says: the next node goes only once every node answers with every
	// shard again (the others learn by gossip that this one is back).
	for j := 1; j <= 3; j++ {
		c.waitComplete(j)
	}
	back := time.Now()
	c.winMu.Lock()
	// A second of slack: an answer in flight when the last node turned complete.
	c.windows = append(c.windows, downWindow{node: i, start: out, back: back, end: back.Add(time.Second)})
	c.winMu.Unlock()
	return back.Sub(out)
}

// raftSnapshots lists node i's Raft snapshots (hashicorp/raft's file store: one directory
// with a meta.json each).
func (c *rollingCluster) raftSnapshots(i int) []string {
	m, _ := filepath.Glob(filepath.Join(c.nodes[i].dir, "cluster", "raft", "snapshots", "*", "meta.json"))
	for k := range m {
		m[k] = filepath.Base(filepath.Dir(m[k]))
	}
	return m
}

// waitSnapshot waits until node i, if its binary takes --raft-snapshot-threshold, has written a
// Raft snapshot, and returns its snapshots (none when it cannot be told to snapshot).
func (c *rollingCluster) waitSnapshot(i int) []string {
	nd := c.nodes[i]
	if !nd.bin.has("raft-snapshot-threshold") {
		c.t.Logf("n%d: %s has no --raft-snapshot-threshold: it is not made to snapshot Raft (Raft's default, 4096 entries, is out of this test's reach)", i, nd.bin)
		return nil
	}
	var snaps []string
	waitFor(c.t, 60*time.Second, fmt.Sprintf("a Raft snapshot by n%d (%s)", i, nd.bin), func() error {
		if snaps = c.raftSnapshots(i); len(snaps) == 0 {
			return fmt.Errorf("none in %s", filepath.Join(nd.dir, "cluster", "raft", "snapshots"))
		}
		return nil
	})
	return snaps
}

// checkRestored checks that node i, now running, restored the Raft snapshots from's binary
// left (raft.NewRaft restores the newest snapshot it can read at start and fails when it can
// read none; an unreadable newer one is logged).
func (c *rollingCluster) checkRestored(i int, from binInfo, snaps []string) {
	if len(snaps) == 0 {
		return
	}
	nd := c.nodes[i]
	log, _ := os.ReadFile(nd.proc.stderr)
	for _, bad := range []string{"failed to open snapshot", "failed to restore snapshot", "failed to load any existing snapshots"} {
		if bytes.Contains(log, []byte(bad)) {
			c.t.Fatalf("n%d on %s could not read the Raft snapshot %s wrote (%q):\n%s", i, nd.bin, from, bad, log)
		}
	}
	c.t.Logf("FIGURE n%d on %s started from the Raft snapshots %s wrote (%s)", i, nd.bin, from, strings.Join(snaps, ", "))
}

func (c *rollingCluster) admin(i int) string { return "http://" + c.net.IP(i) + ":9901" }

func (c *rollingCluster) do(method, url string, body []byte, out any) (int, error) {
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+rollingToken)
	resp, err := c.net.Client(30 * time.Second).Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode/100 != 2 {
		return resp.StatusCode, fmt.Errorf("%s %s: %d %s", method, url, resp.StatusCode, bytes.TrimSpace(b))
	}
	switch o := out.(type) {
	case nil:
	case *[]byte:
		*o = b
	default:
		err = json.Unmarshal(b, out)
	}
	return resp.StatusCode, err
}

func (c *rollingCluster) waitReady(i int) {
	nd := c.nodes[i]
	waitFor(c.t, 90*time.Second, fmt.Sprintf("n%d (%s) ready", i, nd.bin), func() error {
		select {
		case <-nd.proc.done:
			c.t.Fatalf("n%d (%s) exited:\n%s", i, nd.bin, nd.proc.Stderr())
		default:
		}
		var body []byte
		if _, err := c.do("GET", c.admin(i)+"/readyz", nil, &body); err != nil {
			return err
		}
		// A binary with cluster TLS says in /readyz when it runs without (--insecure-cluster).
		if warned := bytes.Contains(bytes.ToLower(body), []byte("insecure")); nd.bin.has("insecure-cluster") && warned != nd.insecure {
			c.t.Fatalf("n%d (%s, --insecure-cluster %v): /readyz says %q", i, nd.bin, nd.insecure, body)
		}
		return nil
	})
}

// waitVoters waits until node i sees want live voters and a leader.
func (c *rollingCluster) waitVoters(i, want int) {
	waitFor(c.t, 90*time.Second, fmt.Sprintf("n%d sees %d live voters", i, want), func() error {
		var ms []member
		if _, err := c.do("GET", c.admin(i)+"/v1/members", nil, &ms); err != nil {
			return err
		}
		voters, leaders := 0, 0
		for _, m := range ms {
			if m.Voter && m.State == "alive" {
				voters++
			}
			if m.Leader {
				leaders++
			}
		}
		if voters != want || leaders != 1 {
			return fmt.Errorf("%d live voters, %d leaders: %+v", voters, leaders, ms)
		}
		return nil
	})
}

func (c *rollingCluster) raftLeader(i int) int {
	var ms []member
	if _, err := c.do("GET", c.admin(i)+"/v1/members", nil, &ms); err != nil {
		c.t.Fatal(err)
	}
	for _, m := range ms {
		var n int
		if _, err := fmt.Sscanf(m.Name, "n%d", &n); err == nil && m.Leader {
			return n
		}
	}
	c.t.Fatalf("no leader in %+v", ms)
	return 0
}

// searchAnswer is one answer of the scatter route.
type searchAnswer struct {
	node     int
	query    string
	at       time.Time
	status   int
	body     string
	partial  bool
	missing  []string
	err      error
	upgraded bool
}

func (c *rollingCluster) search(i int, q string) searchAnswer {
	a := searchAnswer{node: i, query: q, at: time.Now(), upgraded: c.nodes[i].upgrade}
	resp, err := c.net.Client(30*time.Second).Post("http://"+c.net.IP(i)+":8080/search", "text/plain", strings.NewReader(fmt.Sprintf("%d %s", rollingK, q)))
	if err != nil {
		a.err = err
		return a
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	a.status, a.body, a.err = resp.StatusCode, string(b), err
	a.partial = resp.Header.Get("Wasmpod-Partial") == "true"
	if m := resp.Header.Get("Wasmpod-Missing-Shards"); m != "" {
		a.missing = strings.Split(m, ",")
	}
	if a.err == nil && a.status != http.StatusOK {
		a.err = fmt.Errorf("status %d: %s", a.status, b)
	}
	if a.err == nil && a.partial != (len(a.missing) > 0) {
		a.err = fmt.Errorf("header Wasmpod-Partial %v but missing shards %v", a.partial, a.missing)
	}
	return a
}

// waitComplete waits until node i answers three queries in a row with every shard (the
// others' shards found by gossip).
func (c *rollingCluster) waitComplete(i int) {
	ok := 0
	waitFor(c.t, 90*time.Second, fmt.Sprintf("n%d answers with every shard", i), func() error {
		a := c.search(i, "license")
		if a.err == nil && a.partial {
			a.err = fmt.Errorf("partial, missing %v", a.missing)
		}
		if a.err != nil {
			ok = 0
			return a.err
		}
		if ok++; ok < 3 {
			return fmt.Errorf("%d complete answers in a row", ok)
		}
		return nil
	})
}

type queryLog struct {
	mu      sync.Mutex
	answers []searchAnswer
}

func (l *queryLog) partial() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, a := range l.answers {
		if a.partial {
			n++
		}
	}
	return n
}

// inService lists the nodes the load balancer sends work to.
func (c *rollingCluster) inService() []int {
	var in []int
	for i := 1; i <= 3; i++ {
		if c.nodes[i].inSvc.Load() {
			in = append(in, i)
		}
	}
	return in
}

func (c *rollingCluster) queryLoad(g int, stop <-chan struct{}, l *queryLog) {
	for k := g; ; k++ {
		select {
		case <-stop:
			return
		default:
		}
		in := c.inService()
		if len(in) == 0 {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		a := c.search(in[k%len(in)], rollingQueries[k%len(rollingQueries)])
		l.mu.Lock()
		l.answers = append(l.answers, a)
		l.mu.Unlock()
		time.Sleep(20 * time.Millisecond) // a steady load, not a saturating one: the machine is shared
	}
}

// outAt lists the nodes whose down windows contain t, and how long after the latest one's
// return t is (0 while it is out).
func (c *rollingCluster) outAt(t time.Time) (out []int, afterBack time.Duration) {
	c.winMu.Lock()
	defer c.winMu.Unlock()
	for _, w := range c.windows {
		if !t.Before(w.start) && !t.After(w.end) {
			out = append(out, w.node)
			afterBack = max(afterBack, t.Sub(w.back))
		}
	}
	return out, afterBack
}

func (c *rollingCluster) checkQueries(l *queryLog) {
	t := c.t
	l.mu.Lock()
	answers := append([]searchAnswer(nil), l.answers...)
	l.mu.Unlock()
	if len(answers) < 50 {
		t.Fatalf("only %d queries answered during the upgrade: the load did not run", len(answers))
	}
	byVersion := map[bool]int{}
	partial, late := 0, 0
	var latest time.Duration
	for _, a := range answers {
		if a.err != nil {
			t.Fatalf("query %q to n%d at %s failed: %v", a.query, a.node, a.at.Format("15:04:05.000"), a.err)
		}
		byVersion[a.upgraded]++
		if a.partial {
			out, after := c.outAt(a.at)
			partial++
			if after > 0 {
				late++
				latest = max(latest, after)
			}
			// A shard may go missing only if every node holding it is out.
			for _, m := range a.missing {
				var s int
				if _, err := fmt.Sscanf(m, "s%d", &s); err != nil {
					t.Fatalf("query %q to n%d: missing shard %q", a.query, a.node, m)
				}
				lost := false
				for _, o := range out {
					if slices.Contains(rollingShardsOf[o], s) {
						lost = true
					}
				}
				var holders []int
				for i, own := range rollingShardsOf {
					if slices.Contains(own, s) {
						holders = append(holders, i)
					}
				}
				if !lost || len(holders) > 1 {
					t.Fatalf("query %q to n%d at %s lacks %s (held by %v), but the nodes out then were %v: a failed query",
						a.query, a.node, a.at.Format("15:04:05.000"), m, holders, out)
				}
			}
		}
		if want := c.groundTruth(a.missing, a.query); a.body != want {
			t.Fatalf("query %q to n%d (missing %v):\ngot\n%s\nwant\n%s", a.query, a.node, a.missing, a.body, want)
		}
	}
	t.Logf("FIGURE %d answers, %d partial while a node was out; of those, %d after it was back and complete (in flight, at most %v after)",
		len(answers), partial, late, latest.Round(10*time.Millisecond))
	if byVersion[true] == 0 || byVersion[false] == 0 {
		t.Fatalf("answers by the old release %d, by the new %d: both should have served", byVersion[false], byVersion[true])
	}
}

// groundTruth is the top-k answer over every shard not missing, computed in plain Go (as
// examples/search's tests do): words are runs of ASCII letters and digits, lower-cased.
func (c *rollingCluster) groundTruth(missing []string, query string) string {
	key := fmt.Sprint(missing, query)
	c.truthMu.Lock()
	defer c.truthMu.Unlock()
	if s, ok := c.truth[key]; ok {
		return s
	}
	notWord := func(r rune) bool {
		return !(r < 128 && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'))
	}
	terms := map[string]bool{}
	for _, w := range strings.FieldsFunc(query, notWord) {
		terms[strings.ToLower(w)] = true
	}
	type hit struct {
		name  string
		count int
	}
	var hits []hit
	for s, docs := range c.members {
		if slices.Contains(missing, search.ShardName(s)) {
			continue
		}
		for _, d := range docs {
			data, err := os.ReadFile(d.Path)
			if err != nil {
				c.t.Fatal(err)
			}
			n := 0
			for _, w := range strings.FieldsFunc(string(data), notWord) {
				if terms[strings.ToLower(w)] {
					n++
				}
			}
			if n > 0 {
				hits = append(hits, hit{d.Name, n})
			}
		}
	}
	sort.Slice(hits, func(i, j int) bool {
		if hits[i].count != hits[j].count {
			return hits[i].count > hits[j].count
		}
		return hits[i].name < hits[j].name
	})
	var b strings.Builder
	for i := 0; i < len(hits) && i < rollingK; i++ {
		fmt.Fprintf(&b, "%d\t%s\n", hits[i].count, hits[i].name)
	}
	c.truth[key] = b.String()
	return c.truth[key]
}

// rollingInput is job j's input files (gzipped) and what "counts" makes of each: the output
// named like the input without .gz, holding "LINES WORDS\n" (as `zcat | wc -lw`).
func rollingInput(tag string, j int) (gz map[string][]byte, want map[string]string) {
	gz, want = map[string][]byte{}, map[string]string{}
	for f := range 3 {
		text := strings.Repeat(fmt.Sprintf("%s job %d file %d\n", tag, j, f), 1+(j+f)%5) + strings.Repeat("word ", j%7) + "\n"
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		zw.Write([]byte(text))
		zw.Close()
		name := fmt.Sprintf("%s-%d/file-%d", tag, j, f)
		gz[name+".gz"] = b.Bytes()
		want[name] = fmt.Sprintf("%d %d\n", strings.Count(text, "\n"), len(strings.Fields(text)))
	}
	return gz, want
}

// submit uploads job j's inputs through node i and submits it to "counts"; the id is returned
// once the submit is acknowledged.
func (c *rollingCluster) submit(i int, tag string, j int) (queue.JobID, map[string]string, error) {
	gz, want := rollingInput(tag, j)
	var files []queue.File
	for name, data := range gz {
		var put struct {
			SHA256 string `json:"sha256"`
			Size   int64  `json:"size"`
		}
		if _, err := c.do("PUT", c.admin(i)+"/v1/blobs", data, &put); err != nil {
			return 0, nil, err
		}
		files = append(files, queue.File{Name: name, SHA256: put.SHA256, Size: put.Size})
	}
	body, _ := json.Marshal(map[string]any{"inputs": files})
	var job queue.Job
	if _, err := c.do("POST", c.admin(i)+"/v1/queue/pipelines/counts/jobs", body, &job); err != nil {
		return 0, nil, err
	}
	return job.ID, want, nil
}

type submitLog struct {
	mu     sync.Mutex
	acked  submitted
	failed int
}

func (c *rollingCluster) submitLoad(stop <-chan struct{}, l *submitLog) {
	for j := 0; ; j++ {
		select {
		case <-stop:
			return
		case <-time.After(300 * time.Millisecond):
		}
		in := c.inService()
		if len(in) == 0 {
			continue
		}
		id, want, err := c.submit(in[j%len(in)], "load", j)
		l.mu.Lock()
		if err != nil {
			l.failed++ // not acknowledged: the client knows to retry; nothing was promised
		} else {
			l.acked[id] = want
		}
		l.mu.Unlock()
	}
}

// checkJobs waits until every job has finished, read through node i, and checks each output;
// it returns the redeliveries.
func (c *rollingCluster) checkJobs(i int, jobs submitted) (redelivered int) {
	t := c.t
	for id, want := range jobs {
		var j queue.Job
		waitFor(t, 3*time.Minute, fmt.Sprintf("job %d finished (read through n%d)", id, i), func() error {
			if _, err := c.do("GET", fmt.Sprintf("%s/v1/queue/jobs/%d", c.admin(i), id), nil, &j); err != nil {
				return err
			}
			if !j.IsFinished() {
				return fmt.Errorf("job %d %s %+v", id, j.State, j.Stages)
			}
			return nil
		})
		if j.State != queue.JobDone || len(j.Outputs) != len(want) {
			t.Fatalf("job %d lost work (read through n%d): state %s, %d outputs for %d inputs: %+v", id, i, j.State, len(j.Outputs), len(want), j.Stages)
		}
		for _, o := range j.Outputs {
			var got []byte
			if _, err := c.do("GET", c.admin(i)+"/v1/blobs/"+o.SHA256, nil, &got); err != nil {
				t.Fatalf("job %d output %s: %v", id, o.Name, err)
			}
			if w, ok := want[o.Name]; !ok || string(got) != w {
				t.Fatalf("job %d output %s = %q, want %q (outputs %v)", id, o.Name, got, w, j.Outputs)
			}
		}
		for _, s := range j.Stages {
			redelivered += s.Redelivered
		}
	}
	return redelivered
}

// campaign is one election candidate, session c<i>, using node i's election sidecar API: it
// campaigns for the lease, renews it for a term of about 2 s, then lets it lapse (no resign:
// the history checker's deadlines stay the holder's own) and rests before campaigning again, so
// that the lease changes hands all through the upgrade. Every grant and renew is recorded with
// the holder's own deadline for the history checker. A grant is recorded at the time its
// answer arrived (the grant happened before), so the checker's "no grant before the last
// holder's deadline" cannot fire on a grant that was in time.
func (c *rollingCluster) campaign(i int, stop <-chan struct{}) {
	session := fmt.Sprintf("c%d", i)
	var held uint64
	var expiry, since, rest time.Time
	record := func(ev string, l wp.Lease) {
		c.net.Hist.Add(Event{T: time.Now().UnixNano(), Node: session, Ev: ev, Lease: rollingLease, Token: l.Token, Expiry: l.Expiry.UnixNano()})
	}
	url := c.admin(i) + "/v1/election/" + rollingLease
	for {
		select {
		case <-stop:
			return
		case <-time.After(300 * time.Millisecond):
		}
		var l wp.Lease
		if held == 0 {
			if time.Now().Before(rest) {
				continue
			}
			body, _ := json.Marshal(wp.CampaignRequest{Session: session, TTLMillis: 2000})
			if _, err := c.do("POST", url+"/campaign", body, &l); err == nil && l.Held && l.Session == session {
				record("grant", l)
				held, expiry, since = l.Token, l.Expiry, time.Now()
			}
			continue
		}
		if time.Since(since) > 2*time.Second { // the term is over: let the lease lapse
			held, rest = 0, expiry.Add(time.Second)
			continue
		}
		body, _ := json.Marshal(wp.RenewRequest{Session: session, Token: held, TTLMillis: 2000})
		code, err := c.do("POST", url+"/renew", body, &l)
		switch {
		case err == nil && l.Held && l.Token == held:
			record("renew", l)
			expiry = l.Expiry
		case code == http.StatusConflict || time.Now().After(expiry):
			held = 0 // lost, or no longer sure: stop acting as the holder
		}
	}
}

// downgrade puts node i back on the previous release with the state the new one wrote: it must
// either work (rejoin, serve every shard, read the jobs) or refuse with an error naming the
// state format; anything else fails.
func (c *rollingCluster) downgrade(i int) {
	t := c.t
	from := c.nodes[i].bin
	snaps := c.waitSnapshot(i)
	c.stop(i)
	c.start(i, false)
	nd := c.nodes[i]
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-nd.proc.done:
			code := nd.proc.cmd.ProcessState.ExitCode()
			msg := nd.proc.Stderr()
			if code == 0 || !strings.Contains(strings.ToLower(msg), "state") {
				t.Fatalf("downgrade of n%d to %s: exited %d without a clear refusal:\n%s", i, c.old, code, msg)
			}
			t.Logf("FIGURE downgrade new -> old refused (exit %d): %s", code, lastLine(msg))
			return
		default:
		}
		if _, err := c.do("GET", c.admin(i)+"/readyz", nil, nil); err == nil {
			c.checkRestored(i, from, snaps)
			c.waitVoters(i, 3)
			c.waitComplete(i)
			for _, q := range rollingQueries {
				a := c.search(i, q)
				if a.err != nil || a.partial || a.body != c.groundTruth(nil, q) {
					t.Fatalf("downgraded n%d: query %q: %+v", i, q, a)
				}
			}
			id, want, err := c.submit(i, "down", 0)
			if err != nil {
				t.Fatalf("downgraded n%d: submit: %v", i, err)
			}
			c.checkJobs(i, submitted{id: want})
			t.Logf("FIGURE downgrade new -> old works: n%d on %s rejoined with the new release's state, answers every shard, runs jobs", i, c.old)
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("downgrade of n%d to %s: neither ready nor refused within 90s:\n%s", i, c.old, nd.proc.Stderr())
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
