package scatter

import (
	"context"
	"errors"
	"fmt"
	goruntime "runtime"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/wasmpod/wasmpod/cluster"
	"github.com/wasmpod/wasmpod/internal/spans"
	"github.com/wasmpod/wasmpod/runtime"
)

// Result describes how a request was answered.
type Result struct {
	// ID is the request's id, as sent to remote peers.
	ID RequestID
	// Partial is true when at least one shard is missing from the merge.
	Partial bool
	// Missing names the shards passed to the merge as missing (failed on every replica, or past
	// the gather deadline), in shard order. Nil when the answer is complete.
	Missing []string
	// Hedges counts the hedged requests sent.
	Hedges int
}

// Gather fans a request out to every shard and merges the parts. It is safe for concurrent use.
type Gather struct {
	cfg     Config
	shards  []shard
	merge   Merger
	workers int

	nodes map[string]int // node name -> index in dead; read-only after New
	dead  []atomic.Bool

	ids      *idSource
	pool     sync.Pool
	inFlight atomic.Int64

	mu     sync.RWMutex // guards closed against wg.Add
	closed bool
	wg     sync.WaitGroup // Do calls and every goroutine they start
}

type shard struct {
	name     string
	replicas []replica
	lat      latencies
}

type replica struct {
	node  int // index in Gather.dead; -1: this node
	leaf  Leaf
	local bool // a ModuleLeaf: run on the workers
}

// Merger combines the parts of a request into its answer: a running merge module
// (*runtime.Module), or the host's handle on one that follows upgrades and restarts.
type Merger interface {
	// Merge calls the merge handler (runtime.RoleMerge) on parts, in shard order, and appends its
	// output to dst. It must honour ctx's deadline.
	Merge(ctx context.Context, parts []runtime.Part, dst []byte) ([]byte, error)
}

// New builds a Gather over shards (in the order the merge receives their parts) and a merge
// module. Replicas are tried in the order given.
func New(shards []Shard, merge Merger, cfg Config) (*Gather, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if len(shards) == 0 {
		return nil, fmt.Errorf("%w: no shards", ErrInvalid)
	}
	if m, ok := merge.(*runtime.Module); merge == nil || ok && (m == nil || !m.HasRole(runtime.RoleMerge)) {
		return nil, fmt.Errorf("%w: the merge module is nil or does not export the merge role", ErrInvalid)
	}
	ids, err := newIDSource()
	if err != nil {
		return nil, err
	}
	g := &Gather{cfg: cfg, merge: merge, shards: make([]shard, len(shards)), nodes: map[string]int{}, ids: ids}
	seen := map[string]bool{}
	for i, s := range shards {
		if s.Name == "" || seen[s.Name] {
			return nil, fmt.Errorf("%w: shard %d: empty or duplicate name %q", ErrInvalid, i, s.Name)
		}
		seen[s.Name] = true
		if len(s.Replicas) == 0 {
			return nil, fmt.Errorf("%w: shard %q has no replicas", ErrInvalid, s.Name)
		}
		sh := &g.shards[i]
		sh.name = s.Name
		for j, r := range s.Replicas {
			if r.Leaf == nil {
				return nil, fmt.Errorf("%w: shard %q replica %d: nil leaf", ErrInvalid, s.Name, j)
			}
			node := -1
			if r.Node != "" {
				n, ok := g.nodes[r.Node]
				if !ok {
					n = len(g.nodes)
					g.nodes[r.Node] = n
				}
				node = n
			}
			l, ok := r.Leaf.(LocalLeaf)
			local := ok && l.RunsLocally()
			sh.replicas = append(sh.replicas, replica{node: node, leaf: r.Leaf, local: local})
		}
	}
	g.dead = make([]atomic.Bool, len(g.nodes))
	g.workers = cfg.Workers
	if g.workers == 0 {
		g.workers = goruntime.GOMAXPROCS(0)
	}
	g.pool.New = func() any { return g.newState() }
	return g, nil
}

// SetNodeAlive marks a node alive or dead. Replicas on a dead node are skipped from the next
// request on (attempts already sent run to their end). It reports whether the node holds any
// replica of this Gather. Wire it to membership: see FollowMembership.
func (g *Gather) SetNodeAlive(node string, alive bool) bool {
	i, ok := g.nodes[node]
	if ok {
		g.dead[i].Store(!alive)
	}
	return ok
}

// FollowMembership applies membership events to SetNodeAlive (a member is alive when its state
// is cluster.MemberAlive) until ctx ends or events is closed. It blocks: the caller runs it on a
// goroutine it owns, e.g. with the channel of cluster.Node.Subscribe. Call SyncMembers first
// with Node.Members for the state before the subscription.
func (g *Gather) FollowMembership(ctx context.Context, events <-chan cluster.MemberEvent) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				return
			}
			g.SetNodeAlive(ev.Member.Name, ev.Member.State == cluster.MemberAlive)
		}
	}
}

// SyncMembers applies a membership snapshot to SetNodeAlive. Nodes of this Gather absent from
// members are left as they are.
func (g *Gather) SyncMembers(members []cluster.Member) {
	for _, m := range members {
		g.SetNodeAlive(m.Name, m.State == cluster.MemberAlive)
	}
}

// Close waits for the requests in flight (and the remote attempts they started, each bounded
// by its request's deadline) and refuses new ones with ErrClosed. It does not close the modules
// or peers, which the caller owns. Idempotent.
func (g *Gather) Close() error {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	g.wg.Wait()
	return nil
}

// Shard status values; a shard won by replica r has status statusWon+r.
const (
	statusPending int32 = iota
	statusFailed
	statusAbandoned
	statusWon
)

// reqState is one request's reusable state. It is shared by Do, the local workers and the
// remote attempts; the last of them to release it puts it back in the pool.
type reqState struct {
	g   *Gather
	ctx context.Context
	id  RequestID
	in  []byte // a copy of the request: attempts may outlive Do

	refs      atomic.Int32
	remaining atomic.Int32 // shards not yet won or failed
	done      chan struct{}
	abandoned atomic.Bool // Do stopped waiting: workers take no more shards

	status   []atomic.Int32
	next     []atomic.Int32 // next replica index to try, per shard
	inflight []atomic.Int32 // attempts in flight, per shard
	bufs     [][][]byte     // per shard, per replica: the attempt's output buffer
	primary  []int32        // replica of the first attempt, per shard

	local     []int32 // shards whose first attempt runs on the workers
	nextLocal atomic.Int32
	async     []int32 // shards whose first attempt runs on a goroutine
	hedgeAt   []time.Time
	hedged    []bool

	parts []runtime.Part
	timer *time.Timer

	tr *reqTrace // nil unless the request's span records (trace.go)
}

func (g *Gather) newState() *reqState {
	n := len(g.shards)
	st := &reqState{
		g:        g,
		done:     make(chan struct{}, 1),
		status:   make([]atomic.Int32, n),
		next:     make([]atomic.Int32, n),
		inflight: make([]atomic.Int32, n),
		bufs:     make([][][]byte, n),
		primary:  make([]int32, n),
		local:    make([]int32, 0, n),
		async:    make([]int32, 0, n),
		hedgeAt:  make([]time.Time, n),
		hedged:   make([]bool, n),
		parts:    make([]runtime.Part, n),
		timer:    time.NewTimer(time.Hour),
	}
	st.timer.Stop()
	for i := range g.shards {
		st.bufs[i] = make([][]byte, len(g.shards[i].replicas))
	}
	return st
}

// reset readies a released state for the next request.
func (st *reqState) reset() {
	st.ctx = nil
	st.tr = nil
	for i := range st.status {
		st.status[i].Store(statusPending)
		st.next[i].Store(0)
		st.inflight[i].Store(0)
		st.hedged[i] = false
		st.parts[i] = runtime.Part{}
	}
	st.local = st.local[:0]
	st.async = st.async[:0]
	st.nextLocal.Store(0)
	st.abandoned.Store(false)
	select {
	case <-st.done:
	default:
	}
}

func (st *reqState) release() {
	if st.refs.Add(-1) == 0 {
		st.reset()
		st.g.pool.Put(st)
	}
}

// finish counts a shard as decided (won or failed) and wakes Do when none is left.
func (st *reqState) finish() {
	if st.remaining.Add(-1) == 0 {
		select {
		case st.done <- struct{}{}:
		default:
		}
	}
}

// claim picks the next live replica of shard i and counts an attempt in flight for it; -1 when
// none is left (and then the shard fails if no attempt is in flight).
func (st *reqState) claim(i int) int {
	st.inflight[i].Add(1)
	reps := st.g.shards[i].replicas
	if !st.abandoned.Load() {
		for {
			r := int(st.next[i].Add(1)) - 1
			if r >= len(reps) {
				break
			}
			if n := reps[r].node; n < 0 || !st.g.dead[n].Load() {
				return r
			}
		}
	}
	st.drop(i)
	return -1
}

// drop ends an attempt of shard i that did not win; the last one fails the shard.
func (st *reqState) drop(i int) {
	if st.inflight[i].Add(-1) == 0 && st.status[i].CompareAndSwap(statusPending, statusFailed) {
		st.finish()
	}
}

// run makes the attempt of shard i on replica r and reports whether another attempt is needed
// (the replica to try next, or -1).
func (st *reqState) run(i, r int) int {
	sh := &st.g.shards[i]
	rep := &sh.replicas[r]
	var start time.Time
	if !rep.local {
		start = time.Now()
	}
	ctx := st.ctx
	var span trace.Span
	if st.tr != nil {
		ctx, span = st.attemptStart(ctx, i, r)
	}
	out, err := rep.leaf.Call(ctx, st.id, st.in, st.bufs[i][r][:0])
	st.bufs[i][r] = out
	if span != nil {
		defer st.attemptEnd(span, i, r, err)
	}
	if err == nil {
		if !rep.local {
			sh.lat.record(time.Since(start), &st.g.cfg)
		}
		if st.status[i].CompareAndSwap(statusPending, statusWon+int32(r)) {
			st.finish()
		}
		st.inflight[i].Add(-1)
		return -1
	}
	// Failed: fail over to the next live replica (counted before this attempt is dropped, so
	// the shard does not fail in between), unless the shard is already decided.
	next := -1
	if st.status[i].Load() == statusPending {
		next = st.claim(i)
	}
	st.drop(i)
	return next
}

// attempt runs shard i on replica r and its failovers, on a goroutine of its own.
func (st *reqState) attempt(i, r int) {
	defer st.g.wg.Done()
	defer st.release()
	for r >= 0 {
		r = st.run(i, r)
	}
}

// launch starts an asynchronous attempt; the caller has counted it in inflight.
func (st *reqState) launch(i, r int) {
	st.refs.Add(1)
	st.g.wg.Add(1)
	go st.attempt(i, r)
}

// work runs local first attempts, taking shard indexes from a shared counter, until none is
// left or Do stopped waiting. A failed local attempt fails over asynchronously.
func (st *reqState) work() {
	defer st.g.wg.Done()
	defer st.release()
	for !st.abandoned.Load() {
		k := int(st.nextLocal.Add(1)) - 1
		if k >= len(st.local) {
			return
		}
		i := int(st.local[k])
		if r := st.run(i, int(st.primary[i])); r >= 0 {
			st.launch(i, r)
		}
	}
}

// Do fans req out to every shard, gathers the parts until all are in or the gather deadline
// (the request deadline minus Config.MergeReserve) passes, merges them and appends the merge
// output to dst. Shards that failed on every live replica or missed the gather deadline are
// missing parts, listed in res.Missing. err is set only when no answer could be produced (the
// merge failed, the Gather is closed or overloaded); a partial answer is not an error.
func (g *Gather) Do(ctx context.Context, req, dst []byte) (out []byte, res Result, err error) {
	g.mu.RLock()
	if g.closed {
		g.mu.RUnlock()
		return dst, res, ErrClosed
	}
	g.wg.Add(1)
	g.mu.RUnlock()
	defer g.wg.Done()
	if g.inFlight.Add(1) > int64(g.cfg.MaxInFlight) {
		g.inFlight.Add(-1)
		return dst, res, ErrOverloaded
	}
	defer g.inFlight.Add(-1)
	if err := ctx.Err(); err != nil {
		return dst, res, fmt.Errorf("%w: %w", ErrDeadline, err)
	}
	var tr *reqTrace
	if spans.On() {
		ctx, tr = g.traceStart(ctx)
		if tr != nil {
			defer func() { tr.end(&res, err) }()
		}
	}

	// One deadline for the whole request.
	now := time.Now()
	deadline := now.Add(g.cfg.Deadline)
	var cancel context.CancelFunc
	if d, ok := ctx.Deadline(); ok && !d.After(deadline) {
		deadline = d
	} else {
		ctx, cancel = context.WithDeadline(ctx, deadline)
	}
	gatherBy := deadline.Add(-g.cfg.MergeReserve)

	st := g.pool.Get().(*reqState)
	st.refs.Store(1)
	st.ctx = ctx
	st.tr = tr
	st.id = g.ids.next()
	st.in = append(st.in[:0], req...)
	res.ID = st.id
	st.remaining.Store(int32(len(g.shards)))

	// Pick each shard's first live replica.
	for i := range g.shards {
		r := st.claim(i)
		if r < 0 {
			continue // no live replica: failed by claim
		}
		st.primary[i] = int32(r)
		if g.shards[i].replicas[r].local {
			st.local = append(st.local, int32(i))
		} else {
			st.async = append(st.async, int32(i))
		}
	}
	for _, i := range st.async {
		st.launch(int(i), int(st.primary[i]))
	}
	if len(st.local) > 0 {
		w := min(g.workers, len(st.local))
		st.refs.Add(int32(w))
		g.wg.Add(w)
		for range w {
			go st.work()
		}
	}

	// Wait for every shard, hedging slow remote ones, until the gather deadline.
	if !g.cfg.NoHedge {
		for _, i := range st.async {
			st.hedgeAt[i] = now.Add(g.shards[i].lat.delay(&g.cfg))
		}
	}
	for st.remaining.Load() > 0 {
		wake := gatherBy
		if !g.cfg.NoHedge {
			for _, i := range st.async {
				if !st.hedged[i] && st.hedgeAt[i].Before(wake) && st.status[i].Load() == statusPending {
					wake = st.hedgeAt[i]
				}
			}
		}
		d := time.Until(wake)
		if d <= 0 {
			if !wake.Before(gatherBy) {
				break // gather deadline
			}
			res.Hedges += st.hedge(wake)
			continue
		}
		st.timer.Reset(d)
		select {
		case <-st.done:
		case <-st.timer.C:
		case <-ctx.Done():
			gatherBy = time.Now() // cancelled by the caller: merge what is there
		}
		st.timer.Stop()
	}
	st.abandoned.Store(true)

	// Gather the parts: a pending shard is abandoned now, whatever answers later.
	for i := range g.shards {
		s := st.status[i].Load()
		if s == statusPending && st.status[i].CompareAndSwap(statusPending, statusAbandoned) {
			s = statusAbandoned
		} else {
			s = st.status[i].Load()
		}
		if s >= statusWon {
			st.parts[i] = runtime.Part{Data: st.bufs[i][s-statusWon]}
			continue
		}
		st.parts[i] = runtime.Part{Missing: true}
		res.Missing = append(res.Missing, g.shards[i].name)
		if tr != nil && s == statusAbandoned {
			tr.missed(g, i)
		}
	}
	res.Partial = len(res.Missing) > 0

	mctx, mspan := ctx, trace.Span(nil)
	if tr != nil {
		mctx, mspan = tr.mergeStart(ctx, len(res.Missing))
	}
	out, err = g.merge.Merge(mctx, st.parts, dst)
	spans.End(mspan, err)
	if err != nil {
		err = fmt.Errorf("scatter: merge: %w", err)
		if errors.Is(err, runtime.ErrDeadline) {
			err = fmt.Errorf("%w: %w", ErrDeadline, err)
		}
	}
	if cancel != nil {
		cancel() // ends the attempts still running
	}
	st.release()
	return out, res, err
}

// hedge sends a second request for every pending remote shard whose hedge time is not after
// now, to its next live replica. It returns how many it sent.
func (st *reqState) hedge(now time.Time) int {
	n := 0
	for _, i := range st.async {
		if st.hedged[i] || st.hedgeAt[i].After(now) || st.status[i].Load() != statusPending {
			continue
		}
		st.hedged[i] = true
		if r := st.claim(int(i)); r >= 0 {
			if st.tr != nil {
				st.tr.hedge[i].Store(int32(r) + 1)
			}
			st.launch(int(i), r)
			n++
		}
	}
	return n
}
