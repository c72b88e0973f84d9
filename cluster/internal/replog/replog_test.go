package replog

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// counter is a test-only kind, registered here and nowhere else: it proves that a replicated
// feature is one Kind, with no change to election or the queue.
type counter struct {
	mu    sync.Mutex
	total int64
	// blocked: commands "block" wait in Lead until their ctx ends, and report it here.
	blocked chan error
}

func (c *counter) Apply(_ uint64, body []byte) any {
	n, err := strconv.ParseInt(string(body), 10, 64)
	if err != nil {
		return int64(-1)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.total += n
	return c.total
}

func (c *counter) Snapshot() (func(io.Writer) error, func(), error) {
	c.mu.Lock()
	t := c.total
	c.mu.Unlock()
	return func(w io.Writer) error { _, err := fmt.Fprint(w, t); return err }, nil, nil
}

func (c *counter) Restore(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.total = 0
	if len(b) > 0 {
		c.total, err = strconv.ParseInt(string(b), 10, 64)
	}
	return err
}

func (c *counter) get() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.total
}

func (c *counter) kind(l **Log) Kind {
	return Kind{Tag: 'T', Name: "counter", Machine: c, MaxCommand: 32, Lead: func(ctx context.Context, from Caller, cmd []byte) ([]byte, error) {
		if string(cmd) == "block" {
			<-ctx.Done()
			c.blocked <- ctx.Err()
			return nil, ctx.Err()
		}
		out, err := (*l).Propose('T', cmd, time.Second)
		if err != nil {
			return nil, err
		}
		return []byte(fmt.Sprintf("%d from %s local=%v", out, from.Node, from.Local)), nil
	}}
}

type testNode struct {
	log *Log
	c   *counter
}

func startThree(t *testing.T) []*testNode {
	t.Helper()
	nodes := make([]*testNode, 3)
	for i := range nodes {
		nodes[i] = &testNode{c: &counter{blocked: make(chan error, 1)}}
	}
	logs := startLogs(t, func(i int) []Kind { return []Kind{nodes[i].c.kind(&nodes[i].log)} })
	for i, l := range logs {
		nodes[i].log = l
	}
	return nodes
}

// fastTiming is the loopback tests' Raft timing.
var fastTiming = Timing{HeartbeatTimeout: 200 * time.Millisecond, ElectionTimeout: 200 * time.Millisecond,
	LeaderLeaseTimeout: 100 * time.Millisecond, CommitTimeout: 10 * time.Millisecond, ReconcileInterval: 50 * time.Millisecond}

// peerList is a membership view that a test changes while the logs read it.
type peerList struct {
	mu    sync.Mutex
	peers []Peer
}

func (p *peerList) get() []Peer {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Peer(nil), p.peers...)
}

func (p *peerList) set(fn func(peers []Peer) []Peer) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.peers = fn(p.peers)
}

// startLogsOf starts three logs "n0" (bootstrapping), "n1", "n2" on loopback with fastTiming,
// reading their membership from peers, node i with kinds(i) (nil: none).
func startLogsOf(t *testing.T, peers *peerList, kinds func(i int) []Kind) []*Log {
	t.Helper()
	logs := make([]*Log, 3)
	for i := range logs {
		c := Config{NodeID: fmt.Sprintf("n%d", i), BindAddr: "127.0.0.1:0", Bootstrap: i == 0, Timing: fastTiming, Peers: peers.get}
		if kinds != nil {
			c.Kinds = kinds(i)
		}
		l, err := Start(c)
		if err != nil {
			t.Fatal(err)
		}
		logs[i] = l
		t.Cleanup(func() { _ = l.Shutdown(context.Background()) })
	}
	return logs
}

// startLogs starts three logs (startLogsOf) that all see each other, and returns them once
// every one sees a leader and three voters.
func startLogs(t *testing.T, kinds func(i int) []Kind) []*Log {
	t.Helper()
	peers := &peerList{}
	logs := startLogsOf(t, peers, kinds)
	for _, l := range logs {
		peers.set(func(p []Peer) []Peer { return append(p, Peer{ID: l.NodeID(), RaftAddr: l.Addr(), Alive: true}) })
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		ok := 0
		for _, l := range logs {
			if st := l.Status(); st.Leader != "" && len(st.Voters) == 3 {
				ok++
			}
		}
		if ok == 3 {
			return logs
		}
		if time.Now().After(deadline) {
			t.Fatal("no leader with three voters")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func follower(nodes []*testNode) *testNode {
	for _, n := range nodes {
		if !n.log.IsLeader() {
			return n
		}
	}
	return nil
}

func leader(nodes []*testNode) *testNode {
	for _, n := range nodes {
		if n.log.IsLeader() {
			return n
		}
	}
	return nil
}

func TestDoForwardsAndReplicates(t *testing.T) {
	nodes := startThree(t)
	f := follower(nodes)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, n := range []string{"5", "7"} {
		if _, err := f.log.Do(ctx, 'T', []byte(n)); err != nil {
			t.Fatal(err)
		}
	}
	out, err := f.log.Do(ctx, 'T', []byte("1"))
	if err != nil {
		t.Fatal(err)
	}
	// The leader's Lead saw the forwarding node as the caller (an insecure test cluster has no
	// certificates, so the name is empty) and not as a local call.
	if want := "13 from  local=false"; string(out) != want {
		t.Fatalf("answer %q, want %q", out, want)
	}
	out, err = leader(nodes).log.Do(ctx, 'T', []byte("0"))
	if err != nil || !bytes.HasSuffix(out, []byte("local=true")) {
		t.Fatalf("local Do: %q %v", out, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, n := range nodes {
		for n.c.get() != 13 {
			if time.Now().After(deadline) {
				t.Fatalf("%s has %d", n.log.NodeID(), n.c.get())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	if _, err := f.log.Do(ctx, 'X', nil); !errors.Is(err, ErrUnknownKind) {
		t.Fatalf("unknown kind: %v", err)
	}
	if _, err := f.log.Do(ctx, 'T', bytes.Repeat([]byte("1"), 33)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("command over the kind's bound: %v", err)
	}
}

// A forwarding client that announces more than the kind's bound is answered with an error and
// the connection closed, before the body is read; one that hangs up while its command runs
// cancels the command on the leader.
func TestForwardingBoundsAndCancel(t *testing.T) {
	nodes := startThree(t)
	ld, f := leader(nodes), follower(nodes)
	c, err := f.log.Dial(ld.log.Addr(), connDo, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	hdr := []byte{'T', 0, 0, 0x27, 0x10, 0x7f, 0xff, 0xff, 0xff} // 2 GiB announced
	if _, err := c.Write(hdr); err != nil {
		t.Fatal(err)
	}
	var rh [5]byte
	if _, err := io.ReadFull(c, rh[:]); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, binary.BigEndian.Uint32(rh[1:]))
	_, _ = io.ReadFull(c, body)
	if rh[0] != statusError || !bytes.Contains(body, []byte(ErrTooLarge.Error())) {
		t.Fatalf("oversized command answered %d %q", rh[0], body)
	}
	if _, err := c.Read(rh[:1]); err == nil {
		t.Fatal("connection still open after an oversized command")
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := f.log.Do(ctx, 'T', []byte("block")); done <- err }()
	time.Sleep(300 * time.Millisecond)
	cancel()
	select {
	case err := <-ld.c.blocked:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("leader-side command ended with %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the leader kept running a command whose forwarding node hung up")
	}
	if err := <-done; !errors.Is(err, ErrNoLeader) || !errors.Is(err, context.Canceled) {
		t.Fatalf("Do after cancel: %v", err)
	}
}

// memKind is a kind whose state is bytes, for the snapshot tests.
type memKind struct{ state []byte }

func (m *memKind) Apply(uint64, []byte) any { return nil }
func (m *memKind) Snapshot() (func(io.Writer) error, func(), error) {
	s := append([]byte(nil), m.state...)
	return func(w io.Writer) error { _, err := w.Write(s); return err }, nil, nil
}
func (m *memKind) Restore(r io.Reader) error {
	b, err := io.ReadAll(r)
	m.state = b
	return err
}

type sink struct{ *bytes.Buffer }

func (sink) ID() string    { return "test" }
func (sink) Cancel() error { return nil }
func (sink) Close() error  { return nil }

func kinds(ms map[byte]*memKind) map[byte]*Kind {
	out := map[byte]*Kind{}
	for t, m := range ms {
		out[t] = &Kind{Tag: t, Name: string(t), Machine: m}
	}
	return out
}

// The combined snapshot covers every kind (a large one in many chunks), restores into fresh
// machines, and the formats of earlier releases (WPS2 and the bare lease JSON) still restore.
func TestSnapshotFormats(t *testing.T) {
	big := bytes.Repeat([]byte("q"), 3*maxChunk+17)
	src := map[byte]*memKind{TagLeases: {state: []byte(`[{"name":"a"}]`)}, TagQueue: {state: big}, 'T': {state: []byte("42")}}
	for _, legacy := range []bool{false, true} {
		f := &fsm{kinds: kinds(src), legacyVoters: func() bool { return legacy }}
		snap, err := f.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if err := snap.Persist(sink{&buf}); err != nil {
			t.Fatal(err)
		}
		snap.Release()
		if want := map[bool]string{false: "WPS3", true: "WPS2"}[legacy]; string(buf.Bytes()[:4]) != want {
			t.Fatalf("legacy=%v: format %q", legacy, buf.Bytes()[:4])
		}
		dst := map[byte]*memKind{TagLeases: {}, TagQueue: {}, 'T': {state: []byte("stale")}}
		g := &fsm{kinds: kinds(dst)}
		if err := g.Restore(io.NopCloser(&buf)); err != nil {
			t.Fatal(err)
		}
		if string(dst[TagLeases].state) != `[{"name":"a"}]` || !bytes.Equal(dst[TagQueue].state, big) {
			t.Fatalf("legacy=%v: leases %q, queue of %d bytes", legacy, dst[TagLeases].state, len(dst[TagQueue].state))
		}
		// WPS2 does not carry kinds newer than it: they restore from nothing.
		if want := map[bool]string{false: "42", true: ""}[legacy]; string(dst['T'].state) != want {
			t.Fatalf("legacy=%v: test kind %q, want %q", legacy, dst['T'].state, want)
		}
	}
	// The oldest format: the bare lease table.
	dst := map[byte]*memKind{TagLeases: {}, TagQueue: {state: []byte("kept?")}}
	g := &fsm{kinds: kinds(dst)}
	old, _ := json.Marshal([]map[string]any{{"name": "old", "token": 9}})
	if err := g.Restore(io.NopCloser(bytes.NewReader(old))); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(dst[TagLeases].state, old) || len(dst[TagQueue].state) != 0 {
		t.Fatalf("bare JSON: leases %q queue %q", dst[TagLeases].state, dst[TagQueue].state)
	}
}

// Entries of a kind this release does not know (a newer release's) are ignored, not fatal.
func TestUnknownEntryIgnored(t *testing.T) {
	f := &fsm{kinds: kinds(map[byte]*memKind{'T': {}})}
	if got := f.Apply(&raft.Log{Type: raft.LogCommand, Index: 1, Data: []byte("Zwhatever")}); got != nil {
		t.Fatalf("unknown kind applied: %v", got)
	}
}

// TestReconcileNoVote: the leader never adds an alive peer marked NoVote as a voter, and adds
// it once the mark is gone. Peers are listed in order and reconcile adds them one at a time,
// so once n2 (listed after n1) is a voter, a pass has gone over n1 and left it out.
func TestReconcileNoVote(t *testing.T) {
	peers := &peerList{}
	logs := startLogsOf(t, peers, nil)
	waitVoters := func(want ...string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			st := logs[0].Status()
			if fmt.Sprint(st.Voters) == fmt.Sprint(want) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("voters %v, want %v", st.Voters, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitVoters("n0")
	peers.set(func([]Peer) []Peer {
		return []Peer{
			{ID: "n1", RaftAddr: logs[1].Addr(), Alive: true, NoVote: true},
			{ID: "n2", RaftAddr: logs[2].Addr(), Alive: true},
		}
	})
	waitVoters("n0", "n2")
	peers.set(func(p []Peer) []Peer { p[0].NoVote = false; return p })
	waitVoters("n0", "n1", "n2")
}

// gated is a counter whose Apply waits until gate is closed.
type gated struct {
	*counter
	gate chan struct{}
}

func (g gated) Apply(index uint64, body []byte) any {
	<-g.gate
	return g.counter.Apply(index, body)
}

// TestReconcileAfterCatchingUp: a restarted leader decides NoVote from its machines only once
// they have applied the entries of earlier terms. Here n1 is NoVote once the counter has
// applied the entry written before the restart; the replay is held back a while, and n1 must
// not become a voter meanwhile.
func TestReconcileAfterCatchingUp(t *testing.T) {
	dir := t.TempDir()
	timing := fastTiming
	var first *Log
	c := &counter{blocked: make(chan error, 1)}
	first, err := Start(Config{NodeID: "n0", BindAddr: "127.0.0.1:0", Bootstrap: true, DataDir: dir, Timing: timing,
		Kinds: []Kind{c.kind(&first)}})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for !first.IsLeader() {
		if time.Now().After(deadline) {
			t.Fatal("no leader")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := first.Propose('T', []byte("1"), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := first.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}

	var others []*Log
	for i := 1; i <= 2; i++ {
		l, err := Start(Config{NodeID: fmt.Sprintf("n%d", i), BindAddr: "127.0.0.1:0", Timing: timing})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = l.Shutdown(context.Background()) })
		others = append(others, l)
	}
	g := gated{counter: &counter{blocked: make(chan error, 1)}, gate: make(chan struct{})}
	var l0 *Log
	l0, err = Start(Config{NodeID: "n0", BindAddr: "127.0.0.1:0", DataDir: dir, Timing: timing,
		Kinds: []Kind{{Tag: 'T', Name: "counter", Machine: g, MaxCommand: 32, Lead: func(context.Context, Caller, []byte) ([]byte, error) {
			return nil, errors.New("not proposed here")
		}}},
		Peers: func() []Peer {
			return []Peer{
				{ID: "n1", RaftAddr: others[0].Addr(), Alive: true, NoVote: g.get() > 0},
				{ID: "n2", RaftAddr: others[1].Addr(), Alive: true},
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l0.Shutdown(context.Background()) })
	open := sync.OnceFunc(func() { close(g.gate) })
	t.Cleanup(open) // before l0's shutdown, which waits for the applier
	time.AfterFunc(time.Second, open)
	deadline = time.Now().Add(20 * time.Second)
	for {
		st := l0.Status()
		if fmt.Sprint(st.Voters) == "[n0 n2]" {
			break
		}
		if len(st.Voters) > 2 || time.Now().After(deadline) {
			t.Fatalf("voters %v (counter %d), want n0 and n2", st.Voters, g.get())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Raft's pipelined replication is off: with it, a leader that steps down while a pipeline to a
// follower is busy can block raft's replication goroutine for good, and Shutdown then never
// returns (seen in examples/leader: a thawed former leader hung in Shutdown). The test moves
// leadership back and forth under a stream of commands, then checks that every log shuts down.
func TestNoPipelineAndShutdownAfterStepDowns(t *testing.T) {
	nodes := startThree(t)
	for _, n := range nodes {
		if _, err := n.log.trans.AppendEntriesPipeline("x", "127.0.0.1:1"); !errors.Is(err, raft.ErrPipelineReplicationNotSupported) {
			t.Fatalf("%s: pipelined replication is on (%v)", n.log.NodeID(), err)
		}
	}
	load, stopLoad := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, n := range nodes {
		for w := 0; w < 8; w++ {
			wg.Add(1)
			go func(l *Log) {
				defer wg.Done()
				for load.Err() == nil {
					ctx, cancel := context.WithTimeout(load, 500*time.Millisecond)
					_, _ = l.Do(ctx, 'T', []byte("1"))
					cancel()
				}
			}(n.log)
		}
	}
	for i := 0; i < 30; i++ {
		if ld := leader(nodes); ld != nil {
			_ = ld.log.raft.LeadershipTransfer().Error()
		}
		time.Sleep(50 * time.Millisecond)
	}
	stopLoad()
	wg.Wait()
	done := make(chan string, len(nodes))
	for _, n := range nodes {
		go func(l *Log) { _ = l.Shutdown(context.Background()); done <- l.NodeID() }(n.log)
	}
	timeout := time.After(20 * time.Second)
	for range nodes {
		select {
		case <-done:
		case <-timeout:
			t.Fatal("a log's Shutdown did not return within 20 s of its last step-down")
		}
	}
}

// stuck is a counter whose Apply reports on entered that it was called, then waits until gate
// is closed.
type stuck struct {
	*counter
	entered chan struct{}
	gate    chan struct{}
}

func (g stuck) Apply(index uint64, body []byte) any {
	select {
	case g.entered <- struct{}{}:
	default:
	}
	<-g.gate
	return g.counter.Apply(index, body)
}

// Shutdown returns when its ctx ends even if Raft cannot stop (here a state machine's Apply
// blocks, as one on a dead disk would), with an error wrapping the ctx's; the shutdown then
// finishes in the background once Raft can stop, Done says when, and later calls return its
// result.
// startStuck starts a one-node log leading with a stuck counter; open lets its Apply go on.
func startStuck(t *testing.T) (l *Log, g stuck, open func()) {
	t.Helper()
	g = stuck{counter: &counter{blocked: make(chan error, 1)}, entered: make(chan struct{}, 1), gate: make(chan struct{})}
	kind := g.counter.kind(&l)
	kind.Machine = g
	l, err := Start(Config{NodeID: "n0", BindAddr: "127.0.0.1:0", Bootstrap: true, DataDir: t.TempDir(), Timing: fastTiming,
		Kinds: []Kind{kind}})
	if err != nil {
		t.Fatal(err)
	}
	open = sync.OnceFunc(func() { close(g.gate) })
	t.Cleanup(func() { open(); _ = l.Shutdown(context.Background()) })
	deadline := time.Now().Add(20 * time.Second)
	for !l.IsLeader() {
		if time.Now().After(deadline) {
			t.Fatal("no leader")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return l, g, open
}

func TestShutdownBoundedByContext(t *testing.T) {
	l, g, open := startStuck(t)
	go func() { _, _ = l.Propose('T', []byte("1"), 10*time.Second) }()
	select {
	case <-g.entered:
	case <-time.After(20 * time.Second):
		t.Fatal("the entry was not applied")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := l.Shutdown(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown with Apply stuck: %v, want an error wrapping context.DeadlineExceeded", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("Shutdown took %v past a 300 ms deadline", took)
	}
	select {
	case <-l.Done():
		t.Fatal("Done closed while Raft's Apply is stuck")
	default:
	}
	open()
	select {
	case <-l.Done():
	case <-time.After(20 * time.Second):
		t.Fatal("the shutdown did not finish in the background once Apply returned")
	}
	if err := l.Shutdown(context.Background()); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
}

// TestProposeAnsweredAtShutdown: every Propose returns once the log has shut down, also one
// whose entry had committed and was waiting for the state machine when Raft stopped (Raft
// never answers such an entry's future: hashicorp/raft#498). The state machine holds the first
// entry while the others commit behind it, then the log shuts down and the machine is let go;
// whether Raft applies the waiting entries before it stops is its own random choice, so the
// scene is played several times (on the old code a round loses them about one time in two).
func TestProposeAnsweredAtShutdown(t *testing.T) {
	const rounds, behind = 6, 4
	for round := range rounds {
		l, g, open := startStuck(t)
		deadline := time.Now().Add(20 * time.Second)
		answered := make(chan error, 1+behind)
		propose := func() {
			_, err := l.Propose('T', []byte("1"), 10*time.Second)
			answered <- err
		}
		go propose()
		select {
		case <-g.entered:
		case <-time.After(20 * time.Second):
			t.Fatal("the first entry was not applied")
		}
		last := l.raft.LastIndex() // the first entry's, or later
		for range behind {
			go propose()
		}
		for l.raft.CommitIndex() < last+behind {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: the entries behind the first did not commit (commit index %d, want %d)", round, l.raft.CommitIndex(), last+behind)
			}
			time.Sleep(5 * time.Millisecond)
		}
		shut := make(chan error, 1)
		go func() { shut <- l.Shutdown(context.Background()) }()
		time.Sleep(50 * time.Millisecond) // Raft's shutdown has begun, and waits for the machine
		open()
		for i := range 1 + behind {
			select {
			case <-answered:
			case <-time.After(20 * time.Second):
				t.Fatalf("round %d: %d of %d proposals still unanswered 20 s after the shutdown", round, 1+behind-i, 1+behind)
			}
		}
		select {
		case <-shut:
		case <-time.After(20 * time.Second):
			t.Fatalf("round %d: Shutdown did not return", round)
		}
	}
}

// TestLeaveThenShutdown: a leader that leaves is removed from the voters and its Raft stops by
// itself (ShutdownOnRemove); Leave returns within its ctx whether or not Raft answered the
// removal (it may not: hashicorp/raft#498), the log sees that Raft stopped, its Shutdown
// returns, and the two others elect a new leader.
func TestLeaveThenShutdown(t *testing.T) {
	nodes := startThree(t)
	var ld *testNode
	deadline := time.Now().Add(20 * time.Second)
	for ld == nil || len(ld.log.Status().Voters) < 3 {
		if time.Now().After(deadline) {
			t.Fatal("no leader with three voters")
		}
		time.Sleep(10 * time.Millisecond)
		ld = leader(nodes)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	t0 := time.Now()
	err := ld.log.Leave(ctx)
	t.Logf("Leave: %v after %v", err, time.Since(t0).Round(time.Millisecond))
	if ctx.Err() != nil {
		t.Fatalf("Leave held to its ctx's end: %v", err)
	}
	select {
	case <-ld.log.raftStopping:
	case <-time.After(10 * time.Second):
		t.Fatal("the log did not see Raft stop after the leader removed itself")
	}
	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer scancel()
	if err := ld.log.Shutdown(sctx); err != nil {
		t.Fatalf("Shutdown after Leave: %v", err)
	}
	for {
		if n := leader(nodes); n != nil && n != ld {
			break
		}
		if time.Now().After(deadline.Add(20 * time.Second)) {
			t.Fatal("no new leader among the two others")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
