package cluster

import (
	"bufio"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/wasmpod/wasmpod/cluster/internal/blobs"
	"github.com/wasmpod/wasmpod/cluster/internal/mtls"
	"github.com/wasmpod/wasmpod/cluster/internal/queuestate"
	"github.com/wasmpod/wasmpod/cluster/internal/replog"
	"github.com/wasmpod/wasmpod/cluster/queue"
	"github.com/wasmpod/wasmpod/internal/spans"
	"github.com/wasmpod/wasmpod/internal/sparedirs"
)

// Connection kinds on the Raft port (besides Raft and the lease RPC).
const (
	connQueue byte = 'Q' // a work-queue operation forwarded to the leader
	connBlob  byte = 'B' // blob transfer
)

// workQueue is the node's part of the replicated work queue: its replica of the queue state
// (replicated through the election's Raft log), its blob store, the leader-side handling of
// operations, and the worker pools it runs.
type workQueue struct {
	node  *Node
	cfg   QueueConfig
	m     *queuestate.Machine
	blobs *blobs.Store
	tmp   string // removed at close when the state is not kept

	stop chan struct{}
	// stopCtx ends when stop is closed.
	stopCtx    context.Context
	stopCancel context.CancelFunc
	wg         sync.WaitGroup

	// log is set once Raft has started.
	log atomic.Pointer[replog.Log]

	mu    sync.Mutex
	pools []*Workers

	leaseMu sync.Mutex
	leasing map[string]*leaseGate // per stage queue, on the leader

	quota        *blobQuota    // of pushes from each peer
	reservations *reservations // replicated: which pushes each peer may make

	// blobPool keeps blob connections to other nodes: set before log is stored, so a caller
	// that loaded the log sees it.
	blobPool *replog.Pool

	// flushNow asks the flusher to flush the pending outputs now (see onContent).
	flushNow chan struct{}

	// selfForwarded counts the commands this node's log.Do handed to its own leadForward:
	// those do found it the leader for, then not (see do).
	selfForwarded atomic.Uint64
}

// openWorkQueue prepares the replica and the blob store under stateDir (a temporary directory
// when stateDir is ""). The replica's file is rebuilt from the Raft log at every start.
func openWorkQueue(n *Node, stateDir string, cfg QueueConfig) (*workQueue, error) {
	w := &workQueue{node: n, cfg: cfg, stop: make(chan struct{}), leasing: map[string]*leaseGate{}}
	w.stopCtx, w.stopCancel = context.WithCancel(context.Background())
	dir := stateDir
	if dir == "" {
		d, err := os.MkdirTemp("", "wasmpod-queue-")
		if err != nil {
			return nil, fmt.Errorf("work queue: %w", err)
		}
		dir, w.tmp = d, d
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("work queue: %w", err)
	}
	qc := queuestate.DefaultConfig()
	qc.LeaseDuration, qc.MaxAttempts, qc.BackoffBase = cfg.LeaseDuration, cfg.MaxAttempts, max(cfg.Backoff, time.Millisecond)
	m, err := queuestate.OpenMachine(filepath.Join(dir, "queue.db"), qc)
	if err != nil {
		w.cleanup()
		return nil, err
	}
	m.SetGroupCommit(machineGroupMax, machineGroupDelay)
	w.m = m
	st, err := blobs.Open(filepath.Join(dir, "blobs"), cfg.MaxBlobBytes)
	if err != nil {
		_ = m.Close()
		w.cleanup()
		return nil, fmt.Errorf("work queue: %w", err)
	}
	w.blobs = st
	w.flushNow = make(chan struct{}, 1)
	m.SetOnContent(w.onContent)
	w.reservations = newReservations(w.log.Load, cfg.MaxBlobBytes)
	w.quota = &blobQuota{maxBytes: cfg.PeerBlobBytes, maxFiles: cfg.PeerBlobFiles, grace: max(cfg.BlobGrace, time.Minute),
		peers: map[string][]pendingBlob{}, refs: func() (refs map[string]struct{}, err error) {
			err = w.read(func(q *queuestate.Queue) error { refs, err = q.BlobRefs(); return err })
			return refs, err
		}}
	return w, nil
}

func (w *workQueue) cleanup() {
	if w.tmp != "" {
		_ = os.RemoveAll(w.tmp)
	}
}

// streams are the connection kinds the work queue serves on the Raft port (its forwarded
// commands arrive through the replicated log's).
func (w *workQueue) streams() map[byte]func(net.Conn) {
	return map[byte]func(net.Conn){
		connBlob: func(c net.Conn) {
			peer := mtls.PeerName(c)
			blobs.ServeAdmit(c, w.blobs, 30*time.Second, func(sha string, size int64) error {
				return w.admitPush(peer, sha, size)
			})
		},
	}
}

// shutdown stops the worker pools (bounded by ctx), then the replica. Idempotent.
func (w *workQueue) stopWorkers(ctx context.Context) {
	w.mu.Lock()
	pools := append([]*Workers(nil), w.pools...)
	w.mu.Unlock()
	for _, p := range pools {
		_ = p.Stop(ctx)
	}
}

// halt stops the worker pools and every waiting operation. Idempotent.
func (w *workQueue) halt() {
	w.mu.Lock()
	select {
	case <-w.stop:
	default:
		close(w.stop)
		w.stopCancel()
	}
	w.mu.Unlock()
	w.wg.Wait()
}

// close releases the replica and the temporary state; call after Raft has stopped. The
// outputs still pending are flushed: not for their durability (the log holds them), but so
// that a restart need not write them again.
func (w *workQueue) close() {
	w.halt()
	if !flushOnClose {
		// As a crash leaves it: nothing flushed (Open removes what is in the store's tmp).
	} else if err := w.blobs.Flush(); err != nil {
		w.node.logger.Printf("work queue: flushing outputs at shutdown: %v", err)
	}
	_ = w.blobs.Close()
	_ = w.m.Close()
	w.cleanup()
}

// isLeader tolerates a log that has not started yet.
func (w *workQueue) isLeader() bool {
	s := w.log.Load()
	return s != nil && s.IsLeader()
}

// ---- operations through the leader ----

// fwdRequest is the queue kind's command on the replicated log (also the request of the 'Q'
// stream of releases before replog, which the log still serves).
type fwdRequest struct {
	Cmd  queuestate.Command `json:"cmd"`
	Wait time.Duration      `json:"wait,omitempty"` // lease: how long to wait for a ready task
}

// legacyResponse is the answer of the old 'Q' stream.
type legacyResponse struct {
	NoLeader bool            `json:"no_leader,omitempty"`
	Resp     json.RawMessage `json:"resp,omitempty"`
}

// Limits of a forwarded command: it carries at most a job's inputs (queue.MaxJobBytes) or a
// pipeline; an answer may carry a task's payload.
const (
	maxForwardRequest  = 16 << 20
	maxForwardResponse = 64 << 20
	// blobPoolTTL: blob connections are idle-closed by the serving side after 30 s.
	blobPoolTTL = 20 * time.Second
	// maxLeaseWait bounds how long a lease waits on the leader for a ready task.
	maxLeaseWait = time.Minute
	// machineGroupMax and machineGroupDelay are the queue machine's group commit
	// (queuestate.Machine.SetGroupCommit): a bbolt commit per 64 commands that change the
	// state (a few hundred KiB of dirty pages at most), or 10 ms after the last batch when no
	// reader came first, so that the followers' copies of small outputs (handed over at the
	// commit) come soon after their completions.
	machineGroupMax   = 64
	machineGroupDelay = 10 * time.Millisecond
)

// kind is the work queue's kind of the replicated log.
func (w *workQueue) kind() replog.Kind {
	return replog.Kind{Tag: replog.TagQueue, Name: "work queue", Machine: queueMachine{w.m, w.blobs}, Lead: w.leadForward,
		MaxCommand: maxForwardRequest, MaxAnswer: maxForwardResponse,
		Legacy: &replog.Legacy{Stream: connQueue, Answer: legacyQueueAnswer, Read: legacyQueueRead, Last: waitingLease}}
}

// queueMachine is the queue's state machine as the log sees it. Its snapshots flush the
// outputs the log holds (pending blobs, see onContent) before they are written: once a
// snapshot is stored the log may drop the entries that carried them.
type queueMachine struct {
	m     *queuestate.Machine
	blobs *blobs.Store
}

// Apply applies one committed queue command. Its answer is a queuestate.Response, not its
// encoding: the log hands it to the proposer in this process (workQueue.apply).
func (q queueMachine) Apply(_ uint64, body []byte) any {
	return q.m.ApplyResponses([][]byte{body})[0]
}

// ApplyBatch applies a run of committed queue commands in one transaction of the machine.
func (q queueMachine) ApplyBatch(_ []uint64, bodies [][]byte) []any {
	res := q.m.ApplyResponses(bodies)
	out := make([]any, len(res))
	for i, r := range res {
		out[i] = r
	}
	return out
}
func (q queueMachine) Snapshot() (func(io.Writer) error, func(), error) {
	persist, release, err := q.m.Snapshot()
	if err != nil {
		return nil, nil, err
	}
	// Every entry up to the snapshot's index has been applied, so every output it carried is
	// pending or stored now; persist runs before Raft may compact the log.
	return func(out io.Writer) error {
		if err := q.blobs.Flush(); err != nil {
			return fmt.Errorf("work queue: snapshot: the outputs the log holds are not durable yet: %w", err)
		}
		return persist(out)
	}, release, nil
}

// Restore replaces the queue's state; a snapshot without a queue (from before it existed)
// leaves it as it is.
func (q queueMachine) Restore(r io.Reader) error {
	br := bufio.NewReader(r)
	if _, err := br.Peek(1); err == io.EOF {
		return nil
	}
	return q.m.Restore(br)
}

func legacyQueueAnswer(resp []byte, err error) any {
	switch {
	case errors.Is(err, replog.ErrNoLeader):
		return legacyResponse{NoLeader: true}
	case err != nil:
		b, _ := json.Marshal(queuestate.Response{Code: "other", Error: err.Error()})
		return legacyResponse{Resp: b}
	}
	return legacyResponse{Resp: resp}
}

func legacyQueueRead(raw []byte) ([]byte, bool, error) {
	var r legacyResponse
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, true, err
	}
	return r.Resp, r.NoLeader, nil
}

// waitingLease reports whether a command is a lease that waits on the leader (hanging up
// cancels it).
func waitingLease(b []byte) bool {
	var r fwdRequest
	return json.Unmarshal(b, &r) == nil && r.Cmd.Op == queuestate.OpLease && r.Wait > 0
}

// do runs cmd on the leader (here or forwarded), retrying while there is no leader for up to
// the election's ForwardWait plus wait (bounded by ctx).
func (w *workQueue) do(ctx context.Context, cmd queuestate.Command, wait time.Duration) (queuestate.Response, error) {
	select {
	case <-w.stop:
		return queuestate.Response{}, ErrClosed
	default:
	}
	log := w.log.Load()
	if log == nil {
		return queuestate.Response{}, fmt.Errorf("work queue %s: %w", cmd.Op, ErrNoQuorum)
	}
	ctx, cancel := context.WithTimeout(ctx, w.node.cfg.Election.ForwardWait+wait)
	defer cancel()
	// Halted with the node: every waiting operation ends.
	defer context.AfterFunc(w.stopCtx, cancel)()
	// On the leader the command runs here as it is. Through log.Do it would be encoded, handed
	// to leadForward on this same node (which decodes it) and its answer encoded and decoded
	// again: on one node, four JSON passes over every lease and completion for nothing. Should
	// leadership move meanwhile, log.Do below forwards it to the new leader, as it would have.
	if log.IsLeader() {
		if resp, noLeader := w.lead(ctx, cmd, leadWait(cmd, wait)); !noLeader {
			return resp, resp.Err()
		}
	}
	b, err := json.Marshal(fwdRequest{Cmd: cmd, Wait: wait})
	if err != nil {
		return queuestate.Response{}, fmt.Errorf("%w: %v", queue.ErrInvalid, err)
	}
	out, err := log.Do(ctx, replog.TagQueue, b)
	if err != nil {
		select {
		case <-w.stop:
			return queuestate.Response{}, ErrClosed
		default:
		}
		if errors.Is(err, replog.ErrClosed) {
			return queuestate.Response{}, ErrClosed
		}
		if errors.Is(err, replog.ErrNoLeader) {
			return queuestate.Response{}, fmt.Errorf("work queue %s: %w", cmd.Op, ErrNoQuorum)
		}
		return queuestate.Response{}, fmt.Errorf("work queue %s: %w", cmd.Op, err)
	}
	var r queuestate.Response
	if err := json.Unmarshal(out, &r); err != nil {
		return queuestate.Response{}, fmt.Errorf("work queue %s: undecodable answer: %v", cmd.Op, err)
	}
	return r, r.Err()
}

// errForbidden is the answer to a forwarded command that acts for another node.
var errForbidden = errors.New("forbidden: a node may act only for its own workers, and only the leader prunes")

// authorizeForward checks a forwarded command against the node that forwarded it (the name
// its certificate carries; "" in an insecure cluster, where nothing can be checked). A node
// leases, heartbeats, completes and fails tasks only for its own workers (worker names start
// with the node name and a slash); retention pruning is the leader's own and never forwarded.
// Defining pipelines, submitting and retrying are open to every member.
func authorizeForward(peer string, secure bool, cmd queuestate.Command) error {
	if !secure {
		return nil
	}
	if peer == "" {
		return errForbidden
	}
	own := func(worker string) bool { return strings.HasPrefix(worker, peer+"/") }
	switch cmd.Op {
	case queuestate.OpPrune:
		return errForbidden
	case queuestate.OpLease:
		if !own(cmd.Worker) {
			return errForbidden
		}
	case queuestate.OpHeartbeat, queuestate.OpComplete, queuestate.OpFail:
		if cmd.Lease == nil || !own(cmd.Lease.Worker) {
			return errForbidden
		}
	case queuestate.OpCompleteLease:
		if cmd.Lease == nil || !own(cmd.Lease.Worker) || !own(cmd.Worker) {
			return errForbidden
		}
	}
	return nil
}

// leadForward is the queue kind's Lead: it checks a command against the node that sent it
// and runs it here, the leader.
func (w *workQueue) leadForward(ctx context.Context, from replog.Caller, b []byte) ([]byte, error) {
	var req fwdRequest
	if err := json.Unmarshal(b, &req); err != nil {
		return json.Marshal(queuestate.Response{Code: "invalid", Error: "work queue: undecodable command: " + err.Error()})
	}
	if from.Local {
		w.selfForwarded.Add(1)
	} else {
		if err := authorizeForward(from.Node, from.Secure, req.Cmd); err != nil {
			return json.Marshal(queuestate.Response{Code: "invalid", Error: err.Error()})
		}
		if err := w.leaseHeldBy(req.Cmd); err != nil {
			return json.Marshal(queuestate.Response{Code: "lease_lost", Error: err.Error()})
		}
	}
	resp, noLeader := w.lead(ctx, req.Cmd, leadWait(req.Cmd, req.Wait))
	if noLeader {
		return nil, replog.ErrNoLeader
	}
	return json.Marshal(resp)
}

// leaseHeldBy refuses a forwarded command that names a lease granted to another worker than
// the one it names: authorizeForward checked only that the named worker is the sender's own,
// and lease ids come from one counter every replica holds, so a member could name another
// node's lease and task with its own worker. The machine checks the same when every voter
// applies the check (queuestate.Command.CheckWorker); until then this keeps such a command
// out of the log. Exact, not a race with the lease changing hands: a new lease has a new id,
// which the machine compares too.
func (w *workQueue) leaseHeldBy(cmd queuestate.Command) error {
	if cmd.Lease == nil {
		return nil
	}
	var t queuestate.Task
	err := w.read(func(q *queuestate.Queue) error {
		var e error
		t, e = q.Get(cmd.Lease.TaskID)
		return e
	})
	if err != nil {
		return nil // no such task: the machine answers for it as before
	}
	if t.LeaseID == cmd.Lease.ID && t.Worker != cmd.Lease.Worker {
		return fmt.Errorf("%w: lease %d is not held by worker %q", queue.ErrLeaseLost, cmd.Lease.ID, cmd.Lease.Worker)
	}
	return nil
}

// leadWait is how long the leader lets cmd wait, asked for wait: only a lease waits (for a
// ready task), at most maxLeaseWait.
func leadWait(cmd queuestate.Command, wait time.Duration) time.Duration {
	if cmd.Op != queuestate.OpLease {
		return 0
	}
	return min(max(wait, 0), maxLeaseWait)
}

// leaseGate counts the lease commands of one stage queue in flight on the leader.
type leaseGate struct {
	mu       sync.Mutex
	inflight int
}

// lead runs one operation on the leader: it stamps the leader's clock and settings and
// commits the command. A lease waits up to wait for a ready task without writing to the log
// while there is none. noLeader reports that this node is (no longer) the leader.
func (w *workQueue) lead(ctx context.Context, cmd queuestate.Command, wait time.Duration) (resp queuestate.Response, noLeader bool) {
	const applyTimeout = 5 * time.Second
	cmd.LeaseFor, cmd.MaxAttempts, cmd.Backoff = w.cfg.LeaseDuration, w.cfg.MaxAttempts, w.cfg.Backoff
	if cmd.Lease != nil {
		log := w.log.Load()
		cmd.CheckWorker = log != nil && w.node.votersApply(log, opsWorkerChecked)
	}
	if cmd.Op == queuestate.OpCompleteLease && !w.combinedOK() {
		return w.leadApart(ctx, cmd)
	}
	if cmd.Op != queuestate.OpLease {
		cmd.At = time.Now()
		return w.apply(cmd, applyTimeout)
	}
	if err := w.log.Load().CaughtUp(applyTimeout); err != nil {
		return queuestate.Response{}, true
	}
	// Lease decisions per queue are taken one at a time, and a lease is proposed only for a
	// task no lease in flight will take: waiters woken by the same ready task do not each write
	// a lease command that finds nothing, while leases of as many tasks as are ready go to the
	// log together (one log write for all of them) rather than one commit after another.
	w.leaseMu.Lock()
	g := w.leasing[cmd.Name]
	if g == nil {
		g = &leaseGate{}
		w.leasing[cmd.Name] = g
	}
	w.leaseMu.Unlock()
	empty := queuestate.Response{Code: "empty", Error: queue.ErrEmpty.Error()}
	end := time.Now().Add(wait)
	for {
		if ctx.Err() != nil { // the worker is gone: take nothing for it
			return empty, false
		}
		changed := w.m.Changed()
		g.mu.Lock()
		now := time.Now()
		var (
			at    time.Time
			ok    bool
			ready int
		)
		err := w.m.Read(func(q *queuestate.Queue) error {
			var e error
			if at, ok, e = q.NextReady(cmd.Name, now); e != nil || g.inflight == 0 {
				return e
			}
			ready, e = q.ReadyNow(cmd.Name, now, g.inflight+1)
			return e
		})
		// Alone, a lease goes ahead when the queue has work now (a ready task, or an expired
		// lease the command will hand out again); beside others, only for a ready task more
		// than the leases in flight can take.
		if err == nil && ok && !at.After(now) && (g.inflight == 0 || ready > g.inflight) {
			g.inflight++
			g.mu.Unlock()
			cmd.At = now
			resp, noLeader = w.apply(cmd, applyTimeout)
			g.mu.Lock()
			g.inflight--
			g.mu.Unlock()
			if noLeader || !errors.Is(resp.Err(), queue.ErrEmpty) {
				return resp, noLeader
			}
			continue // expired leases went back to backing off: look again
		}
		if err == nil && ok && !at.After(now) {
			// Work now, but taken by the leases in flight: wait for the next change (their
			// commits, or a new task), or look again shortly (a lease that failed changes
			// nothing).
			at = now.Add(50 * time.Millisecond)
		}
		g.mu.Unlock()
		if err != nil {
			return queuestate.Response{Code: "other", Error: err.Error()}, false
		}
		left := time.Until(end)
		if left <= 0 {
			return empty, false
		}
		if ok {
			left = min(left, time.Until(at))
		}
		t := time.NewTimer(max(left, time.Millisecond))
		select {
		case <-changed:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return empty, false
		case <-w.stop:
			t.Stop()
			return queuestate.Response{}, true
		}
		t.Stop()
		if !w.isLeader() {
			return queuestate.Response{}, true
		}
	}
}

// combinedOK reports whether OpCompleteLease may go to the log: every voter applies it. A
// replica of an earlier release would refuse it as unknown while the others apply it, and the
// replicas would diverge; so until every voter advertises it, a worker sends the completion
// and the lease apart, and a leader that is sent one anyway (its view of the voters differs
// from the worker's for a moment) commits the two apart (leadApart).
func (w *workQueue) combinedOK() bool {
	log := w.log.Load()
	return log != nil && w.node.votersApply(log, opsCompleteLease)
}

// inlineOK reports whether a task's output of size bytes goes in its completion's log entry
// (queuestate.Command.Content) instead of being fsynced as a file first: it is at most
// InlineOutputMax (and not empty) and every voter applies such completions.
func (w *workQueue) inlineOK(size int64) bool {
	if size <= 0 || size > w.cfg.InlineOutputMax {
		return false // an empty output has no bytes for the log entry to carry
	}
	log := w.log.Load()
	return log != nil && w.node.votersApply(log, opsContent)
}

// leadApart runs an OpCompleteLease as the two commands of earlier releases: the completion,
// then a lease that does not wait (see OpCompleteLease for the answer).
func (w *workQueue) leadApart(ctx context.Context, cmd queuestate.Command) (queuestate.Response, bool) {
	complete := cmd
	complete.Op, complete.Name, complete.Worker = queuestate.OpComplete, "", ""
	resp, noLeader := w.lead(ctx, complete, 0)
	if noLeader {
		return resp, true
	}
	lease := queuestate.Command{Op: queuestate.OpLease, Name: cmd.Name, Worker: cmd.Worker}
	next, noLeader := w.lead(ctx, lease, 0)
	if noLeader {
		// The completion is committed: answer it, with no lease (the worker asks again).
		return resp, false
	}
	if err := next.Err(); err == nil {
		resp.Next = next.Lease
	} else if !errors.Is(err, queue.ErrEmpty) {
		resp.NextCode, resp.NextError = next.Code, next.Error
	}
	return resp, false
}

func (w *workQueue) apply(cmd queuestate.Command, timeout time.Duration) (queuestate.Response, bool) {
	b, err := json.Marshal(cmd)
	if err != nil {
		return queuestate.Response{Code: "invalid", Error: err.Error()}, false
	}
	if len(b) > maxForwardRequest { // as a forwarded command would have been refused
		return queuestate.Response{Code: "invalid", Error: fmt.Sprintf("work queue: %s command of %d bytes (limit %d)", cmd.Op, len(b), maxForwardRequest)}, false
	}
	res, err := w.log.Load().Propose(replog.TagQueue, b, timeout)
	if err != nil {
		return queuestate.Response{}, true
	}
	r, ok := res.(queuestate.Response)
	if !ok {
		return queuestate.Response{Code: "other", Error: fmt.Sprintf("work queue: the machine answered %T, not a response", res)}, false
	}
	return r, false
}

// ---- pipelines and jobs ----

func (w *workQueue) definePipeline(ctx context.Context, p queue.Pipeline) error {
	if err := p.Validate(); err != nil {
		return err
	}
	_, err := w.do(ctx, queuestate.Command{Op: queuestate.OpDefine, Pipeline: &p}, 0)
	return err
}

func (w *workQueue) read(fn func(q *queuestate.Queue) error) error { return w.m.Read(fn) }

func (w *workQueue) pipelines() (out []queue.Pipeline, err error) {
	err = w.read(func(q *queuestate.Queue) error { out, err = q.Pipelines(); return err })
	return out, err
}

func newRequestID() string {
	var b [16]byte
	_, _ = crand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (w *workQueue) submit(ctx context.Context, pipeline string, inputs []queue.File, requestID string) (queue.JobID, error) {
	if err := queue.ValidateSubmit(requestID, inputs); err != nil {
		return 0, err
	}
	if requestID == "" {
		requestID = newRequestID()
	}
	// The same request id on every retry: a submit whose answer was lost is not doubled.
	cmd := queuestate.Command{Op: queuestate.OpSubmit, Request: requestID, Name: pipeline, Inputs: inputs}
	if spans.On() {
		cmd.Trace = spans.Traceparent(ctx) // the job's trace: every task attempt joins it
	}
	resp, err := w.do(ctx, cmd, 0)
	if err != nil {
		return 0, err
	}
	return resp.Job, nil
}

func (w *workQueue) job(id queue.JobID) (j queue.Job, err error) {
	err = w.read(func(q *queuestate.Queue) error { j, err = q.Job(id); return err })
	return j, err
}

func (w *workQueue) waitJob(ctx context.Context, id queue.JobID) (queue.Job, error) {
	for {
		finished := w.m.JobFinished() // before the read: a job finished after it closes it
		j, err := w.job(id)
		if err != nil || j.IsFinished() {
			return j, err
		}
		select {
		case <-finished:
		case <-ctx.Done():
			return j, ctx.Err()
		}
	}
}

func (w *workQueue) jobs(p string, limit int) (out []queue.Job, err error) {
	err = w.read(func(q *queuestate.Queue) error { out, err = q.Jobs(p, limit); return err })
	return out, err
}

func (w *workQueue) stats() (out []queue.StageStats, err error) {
	err = w.read(func(q *queuestate.Queue) error { out, err = q.StageStats(); return err })
	return out, err
}

func (w *workQueue) dead(p string) (out []queue.TaskInfo, err error) {
	err = w.read(func(q *queuestate.Queue) error { out, err = q.DeadTasks(p); return err })
	return out, err
}

func (w *workQueue) task(id queue.TaskID) (out queue.TaskInfo, err error) {
	err = w.read(func(q *queuestate.Queue) error { out, err = q.TaskInfo(id); return err })
	return out, err
}

func (w *workQueue) retry(ctx context.Context, id queue.TaskID) error {
	_, err := w.do(ctx, queuestate.Command{Op: queuestate.OpRetry, Task: id}, 0)
	return err
}

// ---- blobs ----

// blobPeers lists the Raft/RPC addresses of the other live members, in random order.
func (w *workQueue) blobPeers() []string {
	var out []string
	for _, p := range w.node.peers() {
		if p.ID != w.node.cfg.NodeName && p.Alive && p.RaftAddr != "" {
			out = append(out, p.RaftAddr)
		}
	}
	rand.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// onePeer runs op on a blob connection to each other live member in turn until one succeeds.
// It reports false when there is no other member; otherwise the error joins every failure.
func (w *workQueue) onePeer(ctx context.Context, op func(c net.Conn) error) (bool, error) {
	peers := w.blobPeers()
	if w.log.Load() == nil {
		return false, ErrNoQuorum
	}
	var errs []error
	for _, addr := range peers {
		err := w.onBlobConn(addr, op)
		if err == nil {
			return true, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return len(peers) > 0, errors.Join(errs...)
}

// onBlobConn runs op on a pooled blob connection to addr (again on a new one if a reused one
// fails: the peer may have closed it while idle); the connection goes back to the pool when
// op succeeds.
func (w *workQueue) onBlobConn(addr string, op func(c net.Conn) error) error {
	for attempt := 0; ; attempt++ {
		c, reused, err := w.blobPool.Get(addr, 2*time.Second)
		if err != nil {
			return err
		}
		if err = op(c); err == nil {
			w.blobPool.Put(addr, c)
			return nil
		}
		c.Close()
		if !reused || attempt > 0 {
			return err
		}
	}
}

// replicate copies a local blob to one other live member (the first that accepts it); with
// no other member there is nothing to do.
func (w *workQueue) replicate(ctx context.Context, sha string) error {
	if len(w.blobPeers()) == 0 {
		return nil
	}
	size, err := w.blobs.Size(sha)
	if err != nil {
		return fmt.Errorf("work queue: blob %s: %w", sha, err)
	}
	if err := w.reserve(ctx, sha, size); err != nil {
		return fmt.Errorf("work queue: %w", err)
	}
	some, err := w.onePeer(ctx, func(c net.Conn) error { return blobs.Push(ctx, c, w.blobs, sha) })
	if some && err != nil {
		return fmt.Errorf("work queue: blob %s: no other member took a copy: %w", sha, err)
	}
	return nil
}

// blobErr gives blob errors the queue's sentinels, which callers outside the cluster can test.
func blobErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, blobs.ErrNotFound):
		return fmt.Errorf("%w: %w", queue.ErrNotFound, err)
	case errors.Is(err, blobs.ErrInvalid), errors.Is(err, blobs.ErrTooLarge):
		return fmt.Errorf("%w: %w", queue.ErrInvalid, err)
	}
	return err
}

func (w *workQueue) putBlob(ctx context.Context, r io.Reader) (string, int64, error) {
	sha, size, err := w.blobs.Put(r)
	if err != nil {
		return "", 0, blobErr(err)
	}
	if err := w.replicate(ctx, sha); err != nil {
		return "", 0, err
	}
	return sha, size, nil
}

// ensureBlob makes sure the blob is in the local store, fetching it from a member that has it.
func (w *workQueue) ensureBlob(ctx context.Context, sha string) (string, error) {
	if err := blobs.ValidSHA(sha); err != nil {
		return "", err
	}
	if p, err := w.blobs.Path(sha); err == nil {
		return p, nil
	}
	some, err := w.onePeer(ctx, func(c net.Conn) error {
		_, err := blobs.Fetch(ctx, c, w.blobs, sha)
		return err
	})
	switch {
	case !some:
		return "", fmt.Errorf("%w: blob %s (no other member to ask)", blobs.ErrNotFound, sha)
	case err != nil:
		return "", fmt.Errorf("blob %s: %w", sha, err)
	}
	return w.blobs.Path(sha)
}

func (w *workQueue) openBlob(ctx context.Context, sha string) (io.ReadCloser, int64, error) {
	if _, err := w.ensureBlob(ctx, sha); err != nil {
		return nil, 0, blobErr(err)
	}
	f, size, err := w.blobs.Open(sha)
	if err != nil {
		return nil, 0, blobErr(err)
	}
	return f, size, nil
}

// ---- outputs carried by the log ----

// Pending outputs are flushed to the blob store's addresses every flushEvery, or as soon as
// flushBlobs of them, or flushBytes held in memory, are pending; and before every snapshot.
// Between flushes they cost no fsync: the log entries that carried them are on disk.
const (
	flushBlobs = 1024    // a burst of small outputs stays a few MiB
	flushBytes = 8 << 20 // memory held for outputs not yet written to files
)

// flushEvery: 2 device flushes 4 times a second, whatever the task rate. flushOnClose: close
// flushes. Variables so that a test can leave outputs pending, and stop a node as a crash
// would leave it.
var (
	flushEvery   = 250 * time.Millisecond
	flushOnClose = true
)

// onContent keeps an output a completion carried (queuestate.Command.Content) as a pending
// blob, on every replica that applies the completion: the log holds it on disk, and the blob
// store writes it to its address at the next flush. It runs on the log's applier goroutine.
func (w *workQueue) onContent(sha string, content []byte) {
	if err := w.blobs.AddPending(sha, content); err != nil {
		// Not expected: the machine checked the content. The replica then lacks the file and
		// fetches it from a member that has it, as any file it does not have.
		w.node.logger.Printf("work queue: output %s carried by the log: %v", sha, err)
		return
	}
	if n, mem := w.blobs.Pending(); n >= flushBlobs || mem >= flushBytes {
		select {
		case w.flushNow <- struct{}{}:
		default:
		}
	}
}

// startFlusher starts the loop that flushes pending outputs (see flushEvery); halt stops it.
func (w *workQueue) startFlusher() {
	w.loop(flushEvery, w.flushNow, func() {
		if n, _ := w.blobs.Pending(); n > 0 {
			if err := w.blobs.Flush(); err != nil {
				w.node.logger.Printf("work queue: flushing outputs: %v", err)
			}
		}
	})
}

// loop runs f every interval, and whenever kick (if not nil) receives, on a goroutine halt
// stops; nothing when the queue is halted already.
func (w *workQueue) loop(every time.Duration, kick <-chan struct{}, f func()) {
	w.mu.Lock()
	defer w.mu.Unlock()
	select {
	case <-w.stop:
		return
	default:
	}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-w.stop:
				return
			case <-t.C:
			case <-kick:
			}
			f()
		}
	}()
}

// ---- retention ----

// startJanitor starts the loop that prunes finished jobs past the retention (on the leader:
// the prune is a replicated command) and removes this node's files no job refers to any more.
func (w *workQueue) startJanitor() {
	every := time.Hour
	if r := w.cfg.Retention; r > 0 {
		every = min(every, max(r/4, 50*time.Millisecond))
	}
	every = min(every, max(w.cfg.BlobGrace/4, 50*time.Millisecond))
	w.loop(every, nil, w.sweep)
}

// sweep runs one retention pass.
func (w *workQueue) sweep() {
	if w.cfg.Retention > 0 && w.isLeader() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_, _ = w.do(ctx, queuestate.Command{Op: queuestate.OpPrune, Before: time.Now().Add(-w.cfg.Retention)}, 0)
		cancel()
	}
	// A replica that has not caught up with the leader (just restarted, or cut off) would take
	// files of jobs it does not know yet for garbage.
	if s := w.log.Load(); s != nil && s.ReplicaCurrent() {
		_, _ = w.collectBlobs(time.Now().Add(-w.cfg.BlobGrace))
	}
}

// collectBlobs removes local files stored before cutoff that no job or task of this node's
// replica refers to, and returns how many it removed.
func (w *workQueue) collectBlobs(cutoff time.Time) (int, error) {
	var refs map[string]struct{}
	err := w.read(func(q *queuestate.Queue) error {
		var err error
		refs, err = q.BlobRefs()
		return err
	})
	if err != nil {
		return 0, err
	}
	removed := 0
	err = w.blobs.Walk(func(sha string, stored time.Time) error {
		if _, ok := refs[sha]; ok || !stored.Before(cutoff) {
			return nil
		}
		if ok, err := w.blobs.RemoveIfOlder(sha, cutoff); err == nil && ok {
			removed++
		}
		return nil
	})
	return removed, err
}

// ---- workers ----

// Workers is a pool of workers serving one pipeline stage on this node.
type Workers struct {
	w    *workQueue
	cfg  WorkerConfig
	stop chan struct{}
	done chan struct{}
	once sync.Once

	// cancel of the deliveries in flight, cut when Stop's ctx ends
	runCtx    context.Context
	runCancel context.CancelFunc

	// The leases asked for ahead of the workers' runs (see loop): ahead holds those had, and
	// asked counts those asked for and not taken yet, at most depth per worker.
	ahead   chan *held
	aheadMu sync.Mutex
	asked   int
	depth   int
	drained chan struct{} // closed once the pool has stopped and every lease asked for was taken

	mu        sync.Mutex
	running   int
	completed uint64
	failed    uint64
	leaseLost uint64
}

func (w *workQueue) startWorkers(cfg WorkerConfig) (*Workers, error) {
	if cfg.Pipeline == "" || cfg.Stage < 0 || cfg.Concurrency < 1 || cfg.Timeout <= 0 || cfg.Runner == nil {
		return nil, fmt.Errorf("%w: worker config needs a pipeline, a stage >= 0, concurrency >= 1, a timeout and a runner", ErrInvalid)
	}
	p := &Workers{w: w, cfg: cfg, stop: make(chan struct{}), done: make(chan struct{}),
		ahead: make(chan *held, cfg.Concurrency*(1+leaseAheadShort)), depth: 1 + leaseAhead, drained: make(chan struct{})}
	w.mu.Lock()
	defer w.mu.Unlock()
	select {
	case <-w.stop:
		return nil, ErrClosed
	default:
	}
	p.runCtx, p.runCancel = context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range cfg.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.loop(fmt.Sprintf("%s/%s/%d/%d", w.node.cfg.NodeName, cfg.Pipeline, cfg.Stage, i))
		}()
	}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		select {
		case <-w.stop:
			p.runCancel() // the node is going: its leases will run out and be redelivered
		case <-p.stop:
		}
		p.once.Do(func() { close(p.stop) })
		wg.Wait()
		p.runCancel()
		close(p.done)
	}()
	w.pools = append(w.pools, p)
	return p, nil
}

// Stop stops taking tasks and waits, bounded by ctx, for the deliveries in flight to finish;
// when ctx ends first they are cancelled (their tasks are redelivered after their leases).
// Idempotent.
func (p *Workers) Stop(ctx context.Context) error {
	p.once.Do(func() { close(p.stop) })
	select {
	case <-p.done:
	case <-ctx.Done():
		p.runCancel()
		<-p.done
	}
	p.w.mu.Lock()
	for i, q := range p.w.pools {
		if q == p {
			p.w.pools = append(p.w.pools[:i], p.w.pools[i+1:]...)
			break
		}
	}
	p.w.mu.Unlock()
	return nil
}

func (p *Workers) stats() WorkerStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return WorkerStats{Pipeline: p.cfg.Pipeline, Stage: p.cfg.Stage, Running: p.running,
		Completed: p.completed, Failed: p.failed, LeaseLost: p.leaseLost}
}

func (w *workQueue) workerStats() []WorkerStats {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]WorkerStats, 0, len(w.pools))
	for _, p := range w.pools {
		out = append(out, p.stats())
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Pipeline != out[j].Pipeline {
			return out[i].Pipeline < out[j].Pipeline
		}
		return out[i].Stage < out[j].Stage
	})
	return out
}

func (p *Workers) stopped() bool {
	select {
	case <-p.stop:
		return true
	default:
		return false
	}
}

// Leases a pool keeps asked for ahead of the tasks its workers run, per worker: one, and a
// second once its tasks run shorter than shortTask. A task leased ahead waits for one of the
// pool's workers, whatever other members are idle, so the second is only for tasks short
// enough that a lease's round trip
// through the log (a commit, an fsync, the goroutines of Raft and the machine, which wait for a
// core while two stages run on two) is a part of each task worth hiding.
const (
	leaseAhead      = 1
	leaseAheadShort = 2
	shortTask       = time.Second
)

// loop leases and runs tasks until the pool stops. While a task runs, the pool already holds
// or awaits the leases of its workers' next ones (leaseAhead, leaseAheadShort per worker) and
// their inputs are fetched, and a finished task's result is committed in the background (see
// deliver): the log writes and fsyncs a task needs are not on the worker's path from one run to
// the next. The leases asked for ahead are the pool's, not one worker's: a worker that is free
// runs the next one whichever worker asked for it, so that no task leased ahead waits behind
// another worker's run while this one idles (at the end of a job, or when a run is slow). When
// the pool stops, the tasks leased ahead are still run.
func (p *Workers) loop(worker string) {
	name := queuestate.StageQueue(p.cfg.Pipeline, p.cfg.Stage)
	dirs := &workDirs{parent: filepath.Join(p.w.blobs.Dir(), "tmp"), free: make(chan string, keptWorkDirs)}
	var prev chan struct{} // closed when the previous task's commit has ended
	for p.askAhead(name, worker) {
		cur, ok, keep := p.takeAhead(p.w.combinedOK())
		if !ok {
			break
		}
		if cur == nil {
			continue
		}
		var next *nextLease
		if keep {
			next = &nextLease{name, worker}
		}
		start := time.Now()
		prev = p.deliver(cur, prev, dirs, next)
		depth := 1 + leaseAhead
		if time.Since(start) < shortTask {
			depth = 1 + leaseAheadShort
		}
		p.aheadMu.Lock()
		p.depth = depth
		p.aheadMu.Unlock()
	}
	if prev != nil {
		<-prev // and so every commit before it, which put back their directories
	}
	dirs.close()
}

// askAhead tops up the pool's leases asked for ahead (depth per worker) while the pool runs.
// It reports false once the pool has stopped and every lease asked for has been taken.
func (p *Workers) askAhead(name, worker string) bool {
	p.aheadMu.Lock()
	defer p.aheadMu.Unlock()
	for !p.stopped() && p.asked < p.depth*p.cfg.Concurrency {
		p.asked++
		go func() { p.ahead <- p.leaseAhead(name, worker) }() // never blocks: ahead holds them all
	}
	if p.asked == 0 {
		p.drain()
		return false
	}
	return true
}

// takeAhead takes the next lease asked for ahead, waiting for one: nil when the pool stopped
// before it was had; false once the pool has stopped and every lease asked for has been taken.
// With keep (every voter applies complete_lease), a lease taken while the pool runs leaves its
// place among those asked for to the task's commit, which asks for the next lease with the
// task's completion (see deliver); kept reports it. The place passes straight from the lease to
// the commit, so that no other worker's askAhead fills it with a lease command of its own
// while the task runs.
func (p *Workers) takeAhead(keep bool) (_ *held, ok, kept bool) {
	select {
	case h := <-p.ahead:
		p.aheadMu.Lock()
		defer p.aheadMu.Unlock()
		if keep && h != nil && !p.stopped() {
			return h, true, true
		}
		p.asked--
		if p.asked == 0 && p.stopped() {
			p.drain()
		}
		return h, true, false
	case <-p.drained:
		return nil, false, false
	}
}

// drain tells the workers that no lease asked for is left to take; call with aheadMu held.
func (p *Workers) drain() {
	select {
	case <-p.drained:
	default:
		close(p.drained)
	}
}

// leaseAhead leases a task for a worker, waiting on the leader (LeaseWait at a time) and
// pausing after failures until it has one or the pool stops, and fetches its inputs. It
// returns nil when the pool stopped first.
func (p *Workers) leaseAhead(name, worker string) *held {
	backoff := 50 * time.Millisecond
	for !p.stopped() {
		if h := p.lease(name, worker, &backoff); h != nil {
			p.fetchInputs(h)
			return h
		}
	}
	return nil
}

// lease asks the leader for a task of the queue, waiting up to LeaseWait for one, and holds
// it (heartbeats start at once). It returns nil when there is none, the pool stops, or the
// request fails; backoff (nil: return at once) is the pause after a failure, doubled each time.
func (p *Workers) lease(name, worker string, backoff *time.Duration) *held {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		select {
		case <-p.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	resp, err := p.w.do(ctx, queuestate.Command{Op: queuestate.OpLease, Name: name, Worker: worker}, p.w.cfg.LeaseWait)
	cancel()
	switch {
	case err == nil && resp.Lease != nil:
		if backoff != nil {
			*backoff = 50 * time.Millisecond
		}
		return p.hold(*resp.Lease)
	case errors.Is(err, queue.ErrEmpty):
		if backoff != nil {
			*backoff = 50 * time.Millisecond
		}
	case backoff != nil: // no leader, shut down: pause a little
		t := time.NewTimer(*backoff)
		select {
		case <-p.stop:
		case <-t.C:
		}
		t.Stop()
		*backoff = min(2**backoff, 2*time.Second)
	}
	return nil
}

// fetchInputs brings a task leased ahead its input files from the members that have them,
// while the task before it runs. A failure is left for the run to meet (and report) again.
func (p *Workers) fetchInputs(h *held) {
	st := new(queuestate.StageTask)
	if json.Unmarshal(h.l.Payload, st) != nil {
		return
	}
	h.task = st
	for _, f := range st.Inputs {
		if _, err := p.w.ensureBlob(h.ctx, f.SHA256); err != nil {
			return
		}
	}
}

// held is a task a worker holds the lease of, from the lease until its result is proposed:
// heartbeats keep the lease meanwhile, and a lost lease cancels ctx (and so the run).
type held struct {
	l      queuestate.Lease
	ctx    context.Context
	cancel context.CancelFunc
	hbDone chan struct{}
	lost   bool // written by the heartbeat goroutine before it closes hbDone
	// task is the lease's payload decoded (by fetchInputs; nil: not decoded yet).
	task *queuestate.StageTask
}

// hold starts the heartbeats of a new lease: every third of the lease, on this node's clock
// (the leader's expiry time is on its own).
func (p *Workers) hold(l queuestate.Lease) *held {
	ctx, cancel := context.WithCancel(p.runCtx)
	h := &held{l: l, ctx: ctx, cancel: cancel, hbDone: make(chan struct{})}
	leaseFor := p.w.cfg.LeaseDuration
	go func() {
		defer close(h.hbDone)
		t := time.NewTicker(max(leaseFor/3, 10*time.Millisecond))
		defer t.Stop()
		cur := l
		cur.Payload = nil // the lease as the log needs it: without the task's payload again
		// renewed is when the last renewal that succeeded was sent (the lease's start at
		// first): the leader cannot have extended the lease past renewed + leaseFor.
		renewed := time.Now()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			sent := time.Now()
			hctx, hcancel := context.WithTimeout(ctx, leaseFor/3)
			resp, err := p.w.do(hctx, queuestate.Command{Op: queuestate.OpHeartbeat, Lease: &cur}, 0)
			hcancel()
			// Lost: the leader says so, or no heartbeat got through for a whole lease (this
			// node is cut off from the leader, whose lease has run out and whose task another
			// worker may already run). Either way the result could not be committed: stop.
			if errors.Is(err, queue.ErrLeaseLost) || err != nil && time.Since(renewed) >= leaseFor {
				h.lost = true
				cancel()
				return
			}
			if err == nil {
				renewed = sent
				if resp.Lease != nil {
					cur = *resp.Lease
				}
			}
		}
	}()
	return h
}

// release stops the heartbeats and reports whether the lease was lost.
func (h *held) release() bool {
	h.cancel()
	<-h.hbDone
	return h.lost
}

// deliver runs one delivery of a held task in a work directory from dirs, then, in the
// background (the worker goes on with its next task meanwhile), stages the output in the blob
// store, gives the directory back to dirs and commits the result once prev, the worker's
// previous commit, has ended: a worker has at most one commit in flight. It returns a channel
// closed when this delivery's commit has ended. So the worker's path from one run to the next
// holds neither the output's staging nor a directory's creation or removal, file system
// operations that wait behind the journal commits of the fsyncs the queue makes meanwhile.
//
// next, when not nil, is a place among the pool's leases asked for ahead that the task's
// commit fills (see takeAhead): a run that succeeded completes the task and leases the next
// in one log entry (queuestate.OpCompleteLease), instead of the completion and a lease each
// being a commit of their own.
func (p *Workers) deliver(h *held, prev chan struct{}, dirs *workDirs, next *nextLease) chan struct{} {
	p.mu.Lock()
	p.running++
	p.mu.Unlock()
	ctx, cancel := context.WithTimeout(h.ctx, p.cfg.Timeout)
	var rel string
	work, runErr := dirs.get()
	if runErr != nil {
		runErr = fmt.Errorf("work dir: %w", runErr)
	} else {
		rel, runErr = p.run(ctx, h, work, dirs)
	}
	cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() {
			p.mu.Lock()
			p.running--
			p.mu.Unlock()
		}()
		var (
			out    queue.File
			staged blobs.Staged
		)
		if runErr == nil {
			// Moved, not copied: the work directory is on the store's file system (below
			// its temporary directory), and the run that wrote the file has ended. Only a
			// regular file reached without a symbolic link: see inDir.
			path, err := inDir(work, rel)
			if err == nil {
				staged, err = p.w.blobs.StageMove(path)
			}
			if err != nil {
				runErr = fmt.Errorf("stage output %q: %w", rel, err)
			}
			out = queue.File{Name: rel, SHA256: staged.SHA256, Size: staged.Size}
		}
		if work != "" {
			dirs.put(work)
		}
		if prev != nil {
			<-prev
		}
		p.commit(h, out, staged, runErr, next)
	}()
	return done
}

// inDir returns the path of a run's output, rel (a slash path relative to the run's work
// directory work), once it is sure that the path names a file below work: rel must be a clean
// relative path that does not leave work, every component of it below work a real directory
// (not a symbolic link) and the file itself a regular file, each checked with Lstat. Otherwise
// it fails with an error wrapping queue.ErrInvalid (or the Lstat's): a stage that made its
// output, or a directory on its way, a link to a file outside its directory (the node's own, or
// another task's) must not have the node publish whatever that link reaches. A link is refused,
// not followed, even when it points inside work. The run has ended, so nothing in work changes
// while it is checked (blobs.Store.StageMove checks again that the file it moves is the one it
// checked).
func inDir(work, rel string) (string, error) {
	if err := queue.ValidFileName(rel); err != nil {
		return "", err
	}
	local := filepath.FromSlash(rel)
	if !filepath.IsLocal(local) {
		return "", fmt.Errorf("%w: %q leaves the work directory", queue.ErrInvalid, rel)
	}
	parts := strings.Split(rel, "/")
	p := work
	for i, name := range parts {
		p = filepath.Join(p, name)
		at := strings.Join(parts[:i+1], "/")
		fi, err := os.Lstat(p)
		switch {
		case err != nil:
			return "", fmt.Errorf("%q: %w", at, err)
		case fi.Mode()&fs.ModeSymlink != 0:
			return "", fmt.Errorf("%w: %q is a symbolic link (refused: it may lead out of the work directory)", queue.ErrInvalid, at)
		case i < len(parts)-1 && !fi.IsDir():
			return "", fmt.Errorf("%w: %q is not a directory", queue.ErrInvalid, at)
		case i == len(parts)-1 && !fi.Mode().IsRegular():
			return "", fmt.Errorf("%w: %q is not a regular file (%v)", queue.ErrInvalid, at, fi.Mode().Type())
		}
	}
	return p, nil
}

// nextLease names the lease a commit asks for with its completion: the queue and the worker.
type nextLease struct{ name, worker string }

// fill hands the pool the lease of a commit's place among those asked for ahead: l, the one its completion came back with,
// or, when it came back with none (no task ready, the commit failed or was not sent), one
// asked for as askAhead does, waiting on the leader.
func (p *Workers) fill(next *nextLease, l *queuestate.Lease) {
	if l == nil {
		go func() { p.ahead <- p.leaseAhead(next.name, next.worker) }() // never blocks: ahead holds them all
		return
	}
	h := p.hold(*l)
	go func() {
		p.fetchInputs(h)
		p.ahead <- h
	}()
}

// keptWorkDirs is how many emptied work directories a worker keeps for its next runs: one is
// in use while the one before is being emptied. spareWorkDirs is how many emptied directories
// from below them it keeps for the next runs' output names (internal/sparedirs says why).
const (
	keptWorkDirs  = 2
	spareWorkDirs = 8
)

// workDirs are one worker's work directories below parent (the blob store's temporary
// directory, which Open empties after a crash). A run is given a private directory, empty but
// for the directories of its output's name; once its output is staged, the directory is
// emptied and kept for a later run (at most keptWorkDirs of them; others are removed), and the
// private directories below it are kept in a spare directory of parent, to become the next
// runs' output directories.
type workDirs struct {
	parent string
	free   chan string
	spare  *sparedirs.Dirs // made by the first get (the worker's goroutine); used by put after
}

// get returns a private directory, empty: a kept one, or a new one.
func (d *workDirs) get() (string, error) {
	if d.spare == nil {
		dir, err := os.MkdirTemp(d.parent, "spare-")
		if err != nil {
			return "", err
		}
		d.spare = sparedirs.New(dir, spareWorkDirs)
	}
	select {
	case dir := <-d.free:
		return dir, nil
	default:
		return os.MkdirTemp(d.parent, "run-")
	}
}

// put empties dir and keeps it for a later run; a directory that cannot be emptied, or one
// more than are kept, is removed.
func (d *workDirs) put(dir string) {
	if d.spare.Empty(dir) == nil {
		select {
		case d.free <- dir:
			return
		default:
		}
	}
	_ = os.RemoveAll(dir)
}

// close removes the kept directories and the spares; call once no run or put is in progress.
func (d *workDirs) close() {
	for {
		select {
		case dir := <-d.free:
			_ = os.RemoveAll(dir)
		default:
			if d.spare != nil {
				_ = os.RemoveAll(d.spare.Dir())
			}
			return
		}
	}
}

// commit ends a delivery: the output is made durable, here and (in a cluster) on one other
// member, before the completion that refers to it is proposed, so that an acknowledged
// result survives a crash. Its blob fsyncs are shared with the commits and uploads running at
// the same time (blobs.Store.Commit), and the completions of several workers with each other
// and with leases in one log write (Raft batches concurrent proposals). It runs even if the
// pool is stopping: the result is ready. next, when not nil, is a place among the pool's leases
// asked for ahead, for this commit to ask for with the completion; it is filled whatever
// happens (a failed run, a lost lease: by a lease asked for apart).
func (p *Workers) commit(h *held, out queue.File, staged blobs.Staged, runErr error, next *nextLease) {
	var got *queuestate.Lease
	if next != nil {
		defer func() { p.fill(next, got) }()
	}
	ctx, cancel := context.WithTimeout(context.Background(), max(time.Until(h.l.ExpiresAt)+p.w.cfg.LeaseDuration, 30*time.Second))
	defer cancel()
	// A small output goes in the completion's log entry, which makes it durable (on a quorum's
	// disks) with the completion: no fsync of its own, no copy to a peer. A larger one is
	// fsynced here and copied to one other member before the completion is proposed.
	inline := runErr == nil && p.w.inlineOK(staged.Size)
	if runErr == nil && !inline {
		if err := p.w.blobs.Commit(staged); err != nil {
			runErr = fmt.Errorf("stage output %q: %w", out.Name, err)
		} else if err := p.w.replicate(ctx, out.SHA256); err != nil {
			runErr = err
		}
	}
	if h.release() {
		p.w.blobs.Discard(staged)
		p.count(&p.leaseLost)
		return
	}
	var content []byte
	if inline {
		// Pending from here on (the node's own replica finds it so when it applies the
		// completion); should the completion not commit, it is flushed all the same and
		// collected as a file no job refers to.
		var err error
		if content, inline, err = p.w.blobs.Pend(staged, p.w.cfg.InlineOutputMax); err != nil {
			runErr = fmt.Errorf("stage output %q: %w", out.Name, err)
		} else if !inline {
			runErr = fmt.Errorf("stage output %q: not held for the log", out.Name) // not expected: inlineOK checked the size
		}
	}
	ref := h.l
	ref.Payload = nil
	var cmd queuestate.Command
	if runErr == nil {
		cmd = queuestate.Command{Op: queuestate.OpComplete, Lease: &ref, Output: &out, Content: content}
		if next != nil && !p.stopped() {
			cmd.Op, cmd.Name, cmd.Worker = queuestate.OpCompleteLease, next.name, next.worker
		}
	} else {
		p.w.blobs.Discard(staged)
		if p.runCtx.Err() != nil { // the node is stopping: let the lease run out instead
			return
		}
		cmd = queuestate.Command{Op: queuestate.OpFail, Lease: &ref, Error: runErr.Error()}
	}
	// A commit that finds no leader is tried again (an election can outlast one attempt)
	// until the lease would have run out anyway.
	var err error
	for {
		var resp queuestate.Response
		resp, err = p.w.do(ctx, cmd, 0)
		got = resp.Next
		if !errors.Is(err, ErrNoQuorum) || ctx.Err() != nil {
			break
		}
	}
	switch {
	case errors.Is(err, queue.ErrLeaseLost):
		p.count(&p.leaseLost)
	case err != nil:
	case runErr == nil:
		p.count(&p.completed)
	default:
		p.count(&p.failed)
	}
}

func (p *Workers) count(c *uint64) {
	p.mu.Lock()
	*c++
	p.mu.Unlock()
}

// run fetches the inputs and runs the stage in work, an empty directory, and returns the
// output's path relative to work (deliver stages it in the blob store, commit makes it
// durable).
func (p *Workers) run(ctx context.Context, h *held, work string, dirs *workDirs) (_ string, err error) {
	l := h.l
	st := h.task
	if st == nil {
		st = new(queuestate.StageTask)
		if err := json.Unmarshal(l.Payload, st); err != nil {
			return "", fmt.Errorf("task %d: payload is not a stage task: %v", l.TaskID, err)
		}
	}
	if spans.On() {
		var span trace.Span
		ctx, span = p.taskSpan(ctx, l, st)
		defer func() { spans.End(span, err) }()
	}
	inputs := make([]StageInput, 0, len(st.Inputs))
	for _, f := range st.Inputs {
		path, err := p.w.ensureBlob(ctx, f.SHA256)
		if err != nil {
			return "", fmt.Errorf("input %q: %w", f.Name, err)
		}
		inputs = append(inputs, StageInput{Name: f.Name, Path: path})
	}
	outputName := st.Name
	if len(st.Inputs) == 1 && !st.Merge {
		outputName = st.Inputs[0].Name
	}
	if err := dirs.spare.MakeAll(work, path.Dir(outputName)); err != nil {
		return "", fmt.Errorf("work dir: %w", err)
	}
	rel, err := p.cfg.Runner.RunStage(ctx, inputs, outputName, work)
	if err != nil {
		return "", err
	}
	if err := queue.ValidFileName(rel); err != nil {
		return "", fmt.Errorf("stage output: %w", err)
	}
	return rel, nil
}
