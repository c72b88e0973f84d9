package queuestate

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/wasmpod/wasmpod/cluster/queue"
)

// Op names a replicated queue operation.
type Op string

// The operations a Machine applies.
const (
	OpDefine    Op = "define"
	OpSubmit    Op = "submit"
	OpLease     Op = "lease"
	OpHeartbeat Op = "heartbeat"
	OpComplete  Op = "complete"
	OpFail      Op = "fail"
	OpRetry     Op = "retry"
	OpPrune     Op = "prune"
	// OpCompleteLease completes Lease with Output and then, in the same apply, leases the
	// next ready task of queue Name for Worker: a worker that finishes a task and wants
	// another costs one log entry instead of two. The response's Code and Error are the
	// completion's (as for OpComplete); Next is the new lease, nil when the queue had no task
	// ready now (the op never waits) or the lease part failed (NextCode, NextError say why;
	// empty is not a failure). A completion that fails (lease lost, invalid) changes nothing
	// and the lease part is applied all the same, on the state as it was: every replica
	// applies both parts in that order at the command's time, so all reach the same state.
	// Releases before it reject the op as unknown: propose it only once every voter
	// advertises it (the cluster package gates it).
	OpCompleteLease Op = "complete_lease"
)

// Command is one replicated queue operation. At is the proposer's clock (the Raft leader's):
// every replica applies the command at that time, so replicas stay identical.
type Command struct {
	Op       Op              `json:"op"`
	At       time.Time       `json:"at"`
	Pipeline *queue.Pipeline `json:"pipeline,omitempty"` // define
	Request  string          `json:"request,omitempty"`  // submit: idempotency key
	Name     string          `json:"name,omitempty"`     // submit: pipeline; lease: queue
	Inputs   []queue.File    `json:"inputs,omitempty"`   // submit
	Worker   string          `json:"worker,omitempty"`   // lease
	Lease    *Lease          `json:"lease,omitempty"`    // heartbeat, complete, fail
	Output   *queue.File     `json:"output,omitempty"`   // complete
	// Content is the output's bytes, for a small output (complete, complete_lease): the log
	// entry is what makes them durable, instead of a file fsynced before the completion is
	// proposed. They must hash to Output.SHA256; a completion whose content does not is
	// refused (invalid) on every replica alike. Replicas give them to OnContent. Releases
	// before it ignore the field: propose it only once every voter advertises it (the
	// cluster package gates it).
	Content []byte `json:"content,omitempty"`
	// CheckWorker makes a command that names a lease (heartbeat, complete, fail,
	// complete_lease) apply only if the lease's worker is the one it was granted to: a member
	// cannot act on another node's lease by naming its own worker with that lease's id
	// (Queue.takeLeased). Releases before it apply such commands without the check, so the
	// replicas would diverge on a forged one: the leader sets it only once every voter
	// advertises it (the cluster package gates it), and refuses a forged forwarded command
	// itself before that.
	CheckWorker bool         `json:"check_worker,omitempty"`
	Error       string       `json:"error,omitempty"` // fail
	Task        queue.TaskID `json:"task,omitempty"`  // retry
	Before      time.Time    `json:"before,omitzero"` // prune: jobs finished before this go
	Trace       string       `json:"trace,omitempty"` // submit: the submitter's W3C traceparent, if traced

	// The proposer's settings, carried so that replicas configured differently still apply
	// the same thing: the lease length (lease, heartbeat) and, for a submit, the attempt
	// limit and backoff base of jobs whose pipeline sets none.
	LeaseFor    time.Duration `json:"lease_for,omitempty"`
	MaxAttempts int           `json:"max_attempts,omitempty"`
	Backoff     time.Duration `json:"backoff,omitempty"`
}

// Response is what applying a Command returns.
type Response struct {
	Code  string       `json:"code,omitempty"` // sentinel name, "" on success
	Error string       `json:"error,omitempty"`
	Lease *Lease       `json:"lease,omitempty"`
	Job   queue.JobID  `json:"job,omitempty"`
	Prune *PruneResult `json:"prune,omitempty"`
	// OpCompleteLease: the lease taken after the completion, and the lease part's error
	// (sentinel name and message; "" when leased or when the queue had no task ready).
	Next      *Lease `json:"next,omitempty"`
	NextCode  string `json:"next_code,omitempty"`
	NextError string `json:"next_error,omitempty"`
}

var codes = map[string]error{
	"empty": queue.ErrEmpty, "lease_lost": queue.ErrLeaseLost, "not_found": queue.ErrNotFound, "not_dead": queue.ErrNotDead,
	"invalid": queue.ErrInvalid, "corrupt": queue.ErrCorrupt, "closed": queue.ErrClosed,
}

// RemoteError is an error returned by a queue operation applied elsewhere (on the Raft
// leader): it prints the original message and unwraps to the original sentinel.
type RemoteError struct {
	Sentinel error
	Message  string
}

func (e *RemoteError) Error() string { return e.Message }

// Unwrap returns the sentinel.
func (e *RemoteError) Unwrap() error { return e.Sentinel }

// Err turns a response back into an error (nil on success).
func (r *Response) Err() error {
	if r.Code == "" && r.Error == "" {
		return nil
	}
	if s, ok := codes[r.Code]; ok {
		return &RemoteError{Sentinel: s, Message: r.Error}
	}
	return errors.New(r.Error)
}

// NextErr is the error of an OpCompleteLease's lease part (nil when it leased a task or found
// none ready).
func (r *Response) NextErr() error {
	return (&Response{Code: r.NextCode, Error: r.NextError}).Err()
}

func responseOf(err error) Response {
	if err == nil {
		return Response{}
	}
	r := Response{Error: err.Error(), Code: "other"}
	for code, s := range codes {
		if errors.Is(err, s) {
			r.Code = code
			break
		}
	}
	return r
}

// Machine is the replicated form of a Queue: a state machine whose every change is a Command
// from a replicated log (Raft), applied in log order. Its file is a cache of the log: it is
// rebuilt from the last snapshot and the log on every start, so it is written without fsync
// (the log is what is durable). Reads are passive: they never change state, so that replicas
// cannot drift.
//
// Apply, Snapshot and Restore are called by the log's single applier goroutine; reads may run
// concurrently with them.
type Machine struct {
	path string
	cfg  Config

	mu sync.RWMutex // write: applying, committing, Snapshot, Restore, Close; read: Read
	q  *Queue

	// onContent receives the content of every completion applied with one (SetOnContent).
	onContent func(sha string, content []byte)

	at      atomic.Int64  // the applying command's time, read by the queue's clock
	applied atomic.Uint64 // commands applied since the machine was opened
	// combined mirrors the kCombined meta key: the state has applied an OpCompleteLease.
	combined atomic.Bool
	// contents holds, while ApplyBatch runs its shared transaction (or while the group
	// commit's transaction is open), the completions' content for onContent, handed over once
	// the transaction has committed.
	contents []content

	// Group commit (SetGroupCommit; off when groupMax is 0): open is the write transaction
	// kept open across ApplyBatch calls, with the commands applied in it; the flush timer
	// commits it groupDelay after it was left open. All under mu (write).
	groupMax   int
	groupDelay time.Duration
	open       *openTx
	flushTimer *time.Timer
	flushArmed bool

	chMu   sync.Mutex
	change chan struct{}
	// jobDone is closed when a command stamps a job finished (or a Restore may have), and
	// replaced; finishedSeen is q.finished as of the last command (under mu, write).
	jobDone      chan struct{}
	finishedSeen uint64
}

// OpenMachine creates an empty machine at path, removing what a previous run left there.
//
// Of cfg only LeaseDuration, MaxAttempts and BackoffBase are used, as defaults for commands
// that carry none (the leader stamps its own on every command); BackoffCap and MaxPayloadBytes
// are the package defaults on every replica, so that replicas cannot disagree.
func OpenMachine(path string, cfg Config) (*Machine, error) {
	m := &Machine{path: path, change: make(chan struct{}), jobDone: make(chan struct{})}
	d := DefaultConfig()
	cfg.BackoffCap, cfg.MaxPayloadBytes = d.BackoffCap, d.MaxPayloadBytes
	cfg.Now = m.clock
	m.cfg = cfg
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("queue: machine: %w", err)
	}
	q, err := open(path, cfg, true)
	if err != nil {
		return nil, err
	}
	q.passive = true
	m.q = q
	return m, nil
}

// SetOnContent sets the function that receives the output content a completion carries
// (Command.Content), once the transaction that applied the completion has committed, on the
// goroutine that commits it (the applier; with group commit also a reader, Close or the flush
// timer) with the machine locked: it must be quick and must not call back into the machine.
// It is called for every such completion applied, again when the log is replayed after a
// restart, and not for a completion that failed (lease lost, content not matching). Call
// before the log starts applying.
func (m *Machine) SetOnContent(fn func(sha string, content []byte)) { m.onContent = fn }

func (m *Machine) clock() time.Time { return time.Unix(0, m.at.Load()).UTC() }

// Close closes the file, having committed the group commit's open transaction. Idempotent.
func (m *Machine) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.commitOpen()
	err := m.q.Close()
	m.notify(true) // job waiters read again, and meet the closed queue
	return err
}

// SetGroupCommit makes the machine keep its write transaction open across ApplyBatch calls,
// up to max commands that changed something, and commit it when it holds that many, when a
// reader (Read), a snapshot or Close needs the state, or delay after it was left open,
// whichever comes first; 0 turns it off (a commit per ApplyBatch, the default). Call before
// the log starts applying.
//
// Why: bbolt's commit is most of what applying a queue command costs (it writes every page
// the transaction changed, each with its own system call), and consecutive commands change
// the same pages (the ready and leased indexes, the stage's counters, the job's record);
// Raft hands over its committed entries in small batches, so a transaction per batch still
// commits about once per task. The file is a cache of the log, written without fsync and
// rebuilt from the log after a crash, so an answer given before its transaction commits
// promises nothing the log does not keep; and readers commit first, so they see every
// command applied before they read.
func (m *Machine) SetGroupCommit(max int, delay time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.commitOpen()
	m.groupMax, m.groupDelay = max, delay
}

// openTx is the group commit's open write transaction.
type openTx struct {
	tx *bolt.Tx
	// cmds are the commands applied in tx that changed something, in order: all succeeded.
	cmds []Command
	// combined is m.combined when tx began (restored if tx is rolled back).
	combined bool
}

// commitOpen commits the group commit's open transaction, if any, and hands its completions'
// content to onContent. The commands in it were answered already: if the commit fails, they
// are applied again one by one (the same commands on the same state give the same answers).
// The caller holds mu for writing.
func (m *Machine) commitOpen() {
	o := m.open
	if o == nil {
		return
	}
	m.open = nil
	if m.flushArmed {
		m.flushTimer.Stop()
		m.flushArmed = false
	}
	var err error
	switch {
	case len(o.cmds) == 0: // refused commands only: nothing to commit
		err = o.tx.Rollback()
	case beforeSharedCommit != nil:
		if err = beforeSharedCommit(); err != nil {
			_ = o.tx.Rollback()
		} else {
			err = o.tx.Commit()
		}
	default:
		err = o.tx.Commit()
	}
	contents := m.contents
	m.contents = m.contents[:0]
	defer clear(contents)
	if err != nil && len(o.cmds) > 0 {
		m.combined.Store(o.combined)
		for i := range o.cmds {
			m.apply(&o.cmds[i]) // each change commits alone, its content handed over at once
		}
		return
	}
	for _, c := range contents {
		m.onContent(c.sha, c.data)
	}
}

// rollbackOpen rolls back the group commit's open transaction and returns the commands that
// were applied in it (answered already, so to be applied again).
func (m *Machine) rollbackOpen() []Command {
	o := m.open
	m.open = nil
	_ = o.tx.Rollback()
	m.combined.Store(o.combined)
	clear(m.contents)
	m.contents = m.contents[:0]
	return o.cmds
}

// flush is the flush timer's: it commits the open transaction.
func (m *Machine) flush() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.flushArmed = false
	m.commitOpen()
}

// Applied counts the commands Apply was given since the machine was opened (whether or not
// they changed anything).
func (m *Machine) Applied() uint64 { return m.applied.Load() }

// CombinedApplied reports whether the state has ever applied an OpCompleteLease (in this log,
// or in the log a restored snapshot was taken from). It never goes back to false: a replica
// of a release that does not know the operation would diverge replaying such a log.
func (m *Machine) CombinedApplied() bool { return m.combined.Load() }

// Changed returns a channel closed at the next applied change.
func (m *Machine) Changed() <-chan struct{} {
	m.chMu.Lock()
	defer m.chMu.Unlock()
	return m.change
}

// JobFinished returns a channel closed once a later command has stamped a job finished: a
// waiter takes the channel, reads the job, and waits on the channel if the job still runs. It
// may be closed when no job finished (a change applied again after a rollback, a Restore).
func (m *Machine) JobFinished() <-chan struct{} {
	m.chMu.Lock()
	defer m.chMu.Unlock()
	return m.jobDone
}

// notify wakes the waiters of Changed, and those of JobFinished when a job was stamped
// finished since the last call (or always, with restored); call with mu held for writing.
func (m *Machine) notify(restored bool) {
	n := m.q.finished.Load()
	done := restored || n != m.finishedSeen
	m.finishedSeen = n
	m.chMu.Lock()
	close(m.change)
	m.change = make(chan struct{})
	if done {
		close(m.jobDone)
		m.jobDone = make(chan struct{})
	}
	m.chMu.Unlock()
}

// Read runs fn on the local replica. fn must not keep q.
func (m *Machine) Read(fn func(q *Queue) error) error {
	m.mu.RLock()
	if m.open != nil {
		// Commands applied in the group commit's open transaction: commit it first, so that
		// the read sees every command applied before it (those applied after the commit it
		// may miss, as if it had run before them).
		m.mu.RUnlock()
		m.mu.Lock()
		m.commitOpen()
		m.mu.Unlock()
		m.mu.RLock()
	}
	defer m.mu.RUnlock()
	return fn(m.q)
}

type content struct {
	sha  string
	data []byte
}

// Apply applies one encoded Command and returns the encoded Response. A command that does not
// decode is answered with an invalid-argument response and changes nothing. It is ApplyBatch of
// one: a command whose parts all succeed (an OpCompleteLease's completion and lease, say)
// commits once.
func (m *Machine) Apply(data []byte) []byte { return m.ApplyBatch([][]byte{data})[0] }

func decodeCommand(data []byte) (Command, error) {
	var c Command
	if err := json.Unmarshal(data, &c); err != nil {
		return Command{}, fmt.Errorf("%w: command does not decode: %v", queue.ErrInvalid, err)
	}
	return c, nil
}

func encodeResponse(r Response) []byte {
	b, _ := json.Marshal(r)
	return b
}

// ApplyBatch applies consecutive encoded Commands in order, sharing write transactions: a
// commit costs more than most commands (bbolt writes every page the transaction changed), and
// the log hands over its committed entries in batches. A command whose change fails (a lost
// lease, say) may have written part of itself, and bbolt has no savepoints: the shared
// transaction is then rolled back, the commands before the failing one are applied again in
// one transaction (the same commands on the same state, so the same outcome), the failing one
// alone with a transaction per change, and the rest of the batch goes on the same way. So the
// state and answers are those of each command applied alone with a transaction per change.
func (m *Machine) ApplyBatch(data [][]byte) [][]byte {
	rs := m.ApplyResponses(data)
	out := make([][]byte, len(rs))
	for i := range rs {
		out[i] = encodeResponse(rs[i])
	}
	return out
}

// ApplyResponses is ApplyBatch answering with the Responses themselves rather than their
// encoding: for the log's applier on the node that proposed the commands, whose answers reach
// the proposer in the same process (an encoding per answer and a decoding on the other side
// saved). Every answer is the caller's own: nothing in it refers to the machine's storage.
func (m *Machine) ApplyResponses(data [][]byte) []Response {
	defer m.applied.Add(uint64(len(data)))
	cmds := make([]Command, len(data))
	errs := make([]error, len(data))
	for i, d := range data {
		cmds[i], errs[i] = decodeCommand(d)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Response, len(data))
	one := func(i int) { out[i] = m.applyAlone(&cmds[i], errs[i]) }
	if m.groupMax > 0 {
		m.applyGrouped(cmds, errs, out, one)
		return out
	}
	for i := 0; i < len(cmds); {
		k, ok := m.applyShared(cmds[i:], errs[i:], out[i:])
		if ok { // all of the rest committed
			break
		}
		if k == len(cmds)-i { // no command failed, the commit did: one by one, as Apply would
			for j := i; j < len(cmds); j++ {
				one(j)
			}
			break
		}
		if k > 0 {
			if _, ok := m.applyShared(cmds[i:i+k], errs[i:i+k], out[i:i+k]); !ok {
				for j := i; j < i+k; j++ {
					one(j)
				}
			}
		}
		one(i + k)
		i += k + 1
	}
	return out
}

// beforeSharedCommit, when set (by tests), runs as applyShared or commitOpen is about to
// commit; an error fails the commit.
var beforeSharedCommit func() error

// applyAlone answers c applied alone, a transaction per change, or decodeErr, the error
// decoding it gave (then c is not applied).
func (m *Machine) applyAlone(c *Command, decodeErr error) Response {
	if decodeErr != nil {
		return responseOf(decodeErr)
	}
	return m.apply(c)
}

// applyGrouped is ApplyResponses with group commit: the commands go into the open transaction
// (begun if none is open). A command whose change fails rolls it back with everything in it:
// the commands it held (answered already) and those of cmds before the failing one are applied
// again in one transaction (see ApplyBatch), the failing one alone, and the rest goes on in a
// new open transaction. one applies cmds[i] alone and sets its answer.
func (m *Machine) applyGrouped(cmds []Command, errs []error, out []Response, one func(i int)) {
	for i := 0; i < len(cmds); {
		before := 0 // the commands the open transaction held before this call
		if m.open != nil {
			before = len(m.open.cmds)
		}
		k, ok := m.applyOpen(cmds[i:], errs[i:], out[i:])
		if ok {
			break
		}
		held := m.rollbackOpen()[:before] // the rest are cmds[i:i+k]'s, applied again below
		redo := make([]Command, 0, len(held)+k)
		redo = append(append(redo, held...), cmds[i:i+k]...)
		rerrs := make([]error, len(redo))
		copy(rerrs[len(held):], errs[i:i+k])
		ans := make([]Response, len(redo))
		if _, ok := m.applyShared(redo, rerrs, ans); !ok {
			for j := range redo {
				ans[j] = m.applyAlone(&redo[j], rerrs[j])
			}
		}
		copy(out[i:i+k], ans[len(held):])
		one(i + k)
		i += k + 1
	}
	switch {
	case m.open == nil:
	case len(m.open.cmds) >= m.groupMax:
		m.commitOpen()
	case !m.flushArmed:
		m.flushArmed = true
		if m.flushTimer == nil {
			m.flushTimer = time.AfterFunc(m.groupDelay, m.flush)
		} else {
			m.flushTimer.Reset(m.groupDelay)
		}
	}
}

// applyOpen applies cmds in the open transaction, beginning one if none is open, and sets
// their answers in out. If a command's change fails it stops there, leaving the transaction
// to be rolled back, and returns the command's index and false.
func (m *Machine) applyOpen(cmds []Command, errs []error, out []Response) (failed int, ok bool) {
	q := m.q
	if m.open == nil {
		tx, err := q.beginWrite()
		if err != nil { // a closed file: each command gets the error its own change would
			for i := range cmds {
				out[i] = m.applyAlone(&cmds[i], errs[i])
			}
			return len(cmds), true
		}
		m.open = &openTx{tx: tx, combined: m.combined.Load()}
	}
	q.shared = m.open.tx
	defer func() { q.shared = nil }()
	for i := range cmds {
		if errs[i] != nil {
			out[i] = responseOf(errs[i])
			continue
		}
		q.sharedUpdated, q.sharedFailed = false, false
		out[i] = m.apply(&cmds[i])
		if q.sharedFailed {
			return i, false
		}
		if q.sharedUpdated {
			m.open.cmds = append(m.open.cmds, cmds[i])
		}
	}
	return len(cmds), true
}

// applyShared applies cmds in one write transaction and reports ok if it committed, having set
// their answers in out and handed their content to onContent. Otherwise it has rolled back,
// changing nothing (the answers in out are void), and failed is the index of the command whose
// change failed, or len(cmds) if none did and the commit failed.
func (m *Machine) applyShared(cmds []Command, errs []error, out []Response) (failed int, ok bool) {
	q := m.q
	combined := m.combined.Load()
	failed = len(cmds)
	err := q.update(func(tx *bolt.Tx) error {
		q.shared, q.sharedUpdated, q.sharedFailed, m.contents = tx, false, false, m.contents[:0]
		defer func() { q.shared = nil }()
		for i := range cmds {
			if errs[i] != nil {
				out[i] = responseOf(errs[i])
				continue
			}
			out[i] = m.apply(&cmds[i])
			if q.sharedFailed {
				failed = i
				return errSplit
			}
		}
		if !q.sharedUpdated {
			return errNoChange // refused commands only: nothing to commit
		}
		if beforeSharedCommit != nil {
			return beforeSharedCommit()
		}
		return nil
	})
	if errors.Is(err, errNoChange) {
		err = nil
	}
	contents := m.contents
	m.contents = m.contents[:0]
	defer clear(contents)
	if err != nil {
		m.combined.Store(combined)
		return failed, false
	}
	for _, c := range contents {
		m.onContent(c.sha, c.data)
	}
	return len(cmds), true
}

// deliver hands a completion's content to onContent, or keeps it until ApplyBatch's shared
// transaction has committed.
func (m *Machine) deliver(sha string, data []byte) {
	if m.q.shared != nil {
		m.contents = append(m.contents, content{sha, data})
		return
	}
	m.onContent(sha, data)
}

// apply applies one command; the caller holds m.mu for writing.
func (m *Machine) apply(c *Command) Response {
	switch c.Op {
	case OpDefine, OpSubmit, OpLease, OpHeartbeat, OpComplete, OpFail, OpRetry, OpPrune, OpCompleteLease:
	default:
		return responseOf(fmt.Errorf("%w: unknown operation %q", queue.ErrInvalid, c.Op))
	}
	if c.At.IsZero() || c.LeaseFor < 0 {
		return responseOf(fmt.Errorf("%w: %s command without a time, or with a negative lease", queue.ErrInvalid, c.Op))
	}
	if c.Op == OpCompleteLease && !m.combined.Load() {
		// Written once, on every replica alike, so that snapshots carry it.
		if m.q.update(func(tx *bolt.Tx) error { return tx.Bucket(bMeta).Put(kCombined, indexValue) }) == nil {
			m.combined.Store(true)
		}
	}
	m.at.Store(c.At.UnixNano())
	m.q.cfg.LeaseDuration = m.cfg.LeaseDuration
	if c.LeaseFor > 0 {
		m.q.cfg.LeaseDuration = c.LeaseFor
	}
	var (
		resp Response
		err  error
	)
	q := m.q
	switch c.Op {
	case OpDefine:
		if c.Pipeline == nil {
			err = fmt.Errorf("%w: define without pipeline", queue.ErrInvalid)
		} else {
			err = q.DefinePipeline(*c.Pipeline)
		}
	case OpSubmit:
		err = q.update(func(tx *bolt.Tx) error {
			var e error
			resp.Job, e = q.submitWith(tx, c.At, c.Request, c.Name, c.Inputs, c.MaxAttempts, c.Backoff, c.Trace)
			return e
		})
	case OpLease:
		var l Lease
		if l, err = q.Lease(context.Background(), c.Name, c.Worker); err == nil {
			resp.Lease = &l
		}
	case OpHeartbeat, OpComplete, OpFail, OpCompleteLease:
		if c.Lease == nil {
			err = fmt.Errorf("%w: %s without lease", queue.ErrInvalid, c.Op)
			break
		}
		switch c.Op {
		case OpHeartbeat:
			var l Lease
			if l, err = q.heartbeat(*c.Lease, c.CheckWorker); err == nil {
				l.Payload = nil // the worker has it; the next heartbeat must not log it again
				resp.Lease = &l
			}
		case OpComplete, OpCompleteLease:
			var out []byte
			if c.Output != nil {
				out, _ = json.Marshal(c.Output)
			}
			if err = checkContent(c); err == nil {
				err = q.complete(*c.Lease, out, c.CheckWorker)
			}
			if err == nil && c.Content != nil && m.onContent != nil {
				m.deliver(c.Output.SHA256, c.Content)
			}
			if c.Op == OpCompleteLease {
				l, lerr := q.Lease(context.Background(), c.Name, c.Worker)
				switch {
				case lerr == nil:
					resp.Next = &l
				case !errors.Is(lerr, queue.ErrEmpty):
					nr := responseOf(lerr)
					resp.NextCode, resp.NextError = nr.Code, nr.Error
				}
			}
		case OpFail:
			err = q.fail(*c.Lease, c.Error, c.CheckWorker)
		}
	case OpRetry:
		err = q.Retry(c.Task)
	case OpPrune:
		var pr PruneResult
		if pr, err = q.Prune(c.Before); err == nil {
			resp.Prune = &pr
		}
	default:
		err = fmt.Errorf("%w: unknown operation %q", queue.ErrInvalid, c.Op)
	}
	m.notify(false) // even an empty lease may have expired leases (and started a merge elsewhere)
	r := responseOf(err)
	r.Lease, r.Job, r.Prune = resp.Lease, resp.Job, resp.Prune
	if err != nil {
		r.Lease, r.Job, r.Prune = nil, 0, nil
	}
	// The lease part of OpCompleteLease stands whatever the completion's outcome.
	r.Next, r.NextCode, r.NextError = resp.Next, resp.NextCode, resp.NextError
	return r
}

// errSplit and errNoChange roll back applyShared's transaction: a command's change failed, or
// no command changed anything.
var (
	errSplit    = errors.New("queue: a command of the shared transaction failed")
	errNoChange = errors.New("queue: no change to commit")
)

// checkContent checks a completion's content against its output (see Command.Content).
func checkContent(c *Command) error {
	if c.Content == nil {
		return nil
	}
	if c.Output == nil {
		return fmt.Errorf("%w: %s carries content but no output", queue.ErrInvalid, c.Op)
	}
	if int64(len(c.Content)) != c.Output.Size {
		return fmt.Errorf("%w: output %q: content of %d bytes, size says %d", queue.ErrInvalid, c.Output.Name, len(c.Content), c.Output.Size)
	}
	if sum := sha256.Sum256(c.Content); hex.EncodeToString(sum[:]) != c.Output.SHA256 {
		return fmt.Errorf("%w: output %q: content does not hash to its sha256", queue.ErrInvalid, c.Output.Name)
	}
	return nil
}

// snapMagic starts a machine snapshot: magic, the file's length (uint64), the file, and the
// sha256 of the file. Restore checks all of it before it touches the current state.
var snapMagic = []byte("WPQ1")

// kClock is the meta key holding the last applied command's time (so that a restored replica
// reads at the time its state was taken).
var kClock = []byte("clock")

// kCombined is the meta key set (to indexValue) by the first OpCompleteLease the state
// applies; see CombinedApplied.
var kCombined = []byte("combined")

// Snapshot captures the state for the log's snapshot: the file is copied aside at once (so
// that Apply never waits for a slow sink), persist streams the copy, release removes it.
func (m *Machine) Snapshot() (persist func(io.Writer) error, release func(), err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.commitOpen()
	at := m.at.Load()
	if err := m.q.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bMeta).Put(kClock, binary.BigEndian.AppendUint64(nil, uint64(at)))
	}); err != nil {
		return nil, nil, fmt.Errorf("queue: snapshot: %w", err)
	}
	f, err := os.CreateTemp(filepath.Dir(m.path), "snapshot-*")
	if err != nil {
		return nil, nil, fmt.Errorf("queue: snapshot: %w", err)
	}
	name := f.Name()
	var once sync.Once
	release = func() { once.Do(func() { _ = os.Remove(name) }) }
	h := sha256.New()
	var size int64
	err = m.q.db.View(func(tx *bolt.Tx) error {
		size = tx.Size()
		_, err := tx.WriteTo(io.MultiWriter(f, h))
		return err
	})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		release()
		return nil, nil, fmt.Errorf("queue: snapshot: %w", err)
	}
	sum := h.Sum(nil)
	persist = func(w io.Writer) error {
		f, err := os.Open(name)
		if err != nil {
			return err
		}
		defer f.Close()
		hdr := append(append([]byte(nil), snapMagic...), binary.BigEndian.AppendUint64(nil, uint64(size))...)
		if _, err := w.Write(hdr); err != nil {
			return err
		}
		if n, err := io.Copy(w, f); err != nil || n != size {
			return fmt.Errorf("queue: snapshot copy: %d of %d bytes: %v", n, size, err)
		}
		_, err = w.Write(sum)
		return err
	}
	return persist, release, nil
}

// minSnapshot is the smallest valid file: bbolt's two meta pages, a freelist and a root page.
const minSnapshot = 4 * 1024

// Restore replaces the state with a snapshot written by Snapshot. A snapshot that is cut
// short, too small or whose checksum differs is refused and the current state kept.
func (m *Machine) Restore(r io.Reader) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.commitOpen()
	var hdr [12]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return fmt.Errorf("%w: queue snapshot header: %v", queue.ErrCorrupt, err)
	}
	size := int64(binary.BigEndian.Uint64(hdr[4:]))
	if string(hdr[:4]) != string(snapMagic) || size < minSnapshot || size > 1<<40 {
		return fmt.Errorf("%w: queue snapshot: bad header (magic %q, %d bytes)", queue.ErrCorrupt, hdr[:4], size)
	}
	tmp := m.path + ".restore"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("queue: restore: %w", err)
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(r, size))
	var sum [sha256.Size]byte
	if err == nil && n == size {
		_, err = io.ReadFull(r, sum[:])
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil || n != size || !bytes.Equal(sum[:], h.Sum(nil)) {
		os.Remove(tmp)
		return fmt.Errorf("%w: queue snapshot: %d of %d bytes, checksum match %v: %v", queue.ErrCorrupt, n, size, bytes.Equal(sum[:], h.Sum(nil)), err)
	}
	// Check the snapshot opens before dropping the current state.
	probe, err := open(tmp, m.cfg, true)
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("queue: restore: snapshot does not open: %w", err)
	}
	var (
		at       int64
		combined bool
	)
	_ = probe.db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bMeta)
		if v := meta.Get(kClock); len(v) == 8 {
			at = int64(binary.BigEndian.Uint64(v))
		}
		combined = meta.Get(kCombined) != nil
		return nil
	})
	_ = probe.Close()
	if err := m.q.Close(); err != nil {
		return err
	}
	// From here the old state is gone: job waiters read again, whatever comes of the rest
	// (a failure leaves the queue closed, and they meet that).
	defer m.notify(true)
	if err := os.Rename(tmp, m.path); err != nil {
		return fmt.Errorf("queue: restore: %w", err)
	}
	q, err := open(m.path, m.cfg, true)
	if err != nil {
		return fmt.Errorf("queue: restore: %w", err)
	}
	q.passive = true
	m.q = q
	m.at.Store(at)
	m.combined.Store(combined)
	return nil
}
