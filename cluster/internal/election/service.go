// Package election is the lease state machine of the cluster's replicated log: named leases
// with a holder, a fencing token (the log index of the grant) and a TTL measured by the
// leader. It is one kind of package replog: replog carries its entries, snapshots and
// forwarded operations.
package election

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/wasmpod/wasmpod/cluster/internal/replog"
)

// Errors, mapped to the public sentinels by package cluster.
var (
	ErrNoLeader   = replog.ErrNoLeader
	ErrHeld       = errors.New("lease held by another holder")
	ErrStaleToken = errors.New("stale token: lease no longer held with this token")
	ErrClosed     = errors.New("election service closed")
	ErrBadRequest = errors.New("bad request")
	// ErrForbidden: a forwarded request acts for another node than the one that sent it.
	ErrForbidden = errors.New("forbidden: a node may act only for its own sessions")
)

// Config of the lease machine.
type Config struct {
	// MaxClockDrift is the relative clock-rate error allowed between nodes.
	MaxClockDrift float64
	// ReapInterval is how often the leader looks for expired leases.
	ReapInterval time.Duration
	// MinTTL and MaxTTL bound the TTL of a campaign or renewal the leader accepts, forwarded or
	// not (zero: no bound).
	MinTTL, MaxTTL time.Duration
}

// maxRPCBytes bounds one forwarded lease request: a name, a node, a session and numbers.
const maxRPCBytes = 64 << 10

// Lease is the answer to every operation.
type Lease struct {
	Record
	// Remaining is the leader's view of the time left (0 when free or expired).
	Remaining time.Duration `json:"remaining"`
	Leader    string        `json:"leader"` // raft leader that answered
}

// Service runs lease operations through the replicated log. Safe for concurrent use.
type Service struct {
	cfg Config
	fsm *FSM
	log *replog.Log

	stop      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// New returns the lease service; register its Kind with the log, then Attach the log.
func New(cfg Config) *Service {
	if cfg.ReapInterval <= 0 {
		cfg.ReapInterval = time.Second
	}
	return &Service{cfg: cfg, fsm: NewFSM(), stop: make(chan struct{})}
}

// Kind is the lease kind of the replicated log. Its tag is '{' because its entries, older than
// tags, are JSON objects; its forwarded requests keep the JSON of the 'F' stream of releases
// before replog, which it still serves.
func (s *Service) Kind() replog.Kind {
	return replog.Kind{Tag: replog.TagLeases, Name: "election", Machine: s.fsm, Lead: s.lead,
		MaxCommand: maxRPCBytes, MaxAnswer: maxRPCBytes,
		Legacy: &replog.Legacy{Stream: 'F', Answer: legacyAnswer, Read: legacyRead}}
}

// Attach starts the leader's reaper of expired leases on log.
func (s *Service) Attach(log *replog.Log) {
	s.log = log
	s.wg.Add(1)
	go s.reapLoop()
}

// FSM exposes the local replica (for watches and local reads).
func (s *Service) FSM() *FSM { return s.fsm }

// Request is one lease operation, local or forwarded.
type Request struct {
	Kind    string        `json:"kind"` // get, campaign, renew, resign
	Name    string        `json:"name"`
	Node    string        `json:"node"`
	Session string        `json:"session"`
	TTL     time.Duration `json:"ttl"`
	Token   uint64        `json:"token"`
}

// response is the answer's encoding (that of the 'F' stream before replog).
type response struct {
	Lease Lease  `json:"lease"`
	Err   string `json:"err,omitempty"`
}

var errByText = map[string]error{}

func init() {
	for _, e := range []error{ErrNoLeader, ErrHeld, ErrStaleToken, ErrClosed, ErrBadRequest, ErrForbidden} {
		errByText[e.Error()] = e
	}
}

// Do runs a request on the leader, forwarding if needed, and retrying while there is no
// leader for up to the log's ForwardWait (bounded by ctx).
func (s *Service) Do(ctx context.Context, req Request) (Lease, error) {
	select {
	case <-s.stop:
		return Lease{}, ErrClosed
	default:
	}
	ctx, cancel := context.WithTimeout(ctx, s.log.ForwardWait())
	defer cancel()
	cmd, _ := json.Marshal(req)
	out, err := s.log.Do(ctx, replog.TagLeases, cmd)
	if err != nil {
		if errors.Is(err, replog.ErrClosed) {
			return Lease{}, ErrClosed
		}
		return Lease{}, ErrNoLeader
	}
	var resp response
	if err := json.Unmarshal(out, &resp); err != nil {
		return Lease{}, ErrNoLeader
	}
	if resp.Lease.Leader == "" {
		resp.Lease.Leader = s.log.LeaderID()
	}
	if resp.Err != "" {
		if e, ok := errByText[resp.Err]; ok {
			return resp.Lease, e
		}
		return resp.Lease, errors.New(resp.Err)
	}
	return resp.Lease, nil
}

// lead runs one request on the leader for the node that sent it.
func (s *Service) lead(ctx context.Context, from replog.Caller, cmd []byte) ([]byte, error) {
	var req Request
	var resp response
	var err error
	if json.Unmarshal(cmd, &req) != nil {
		err = ErrBadRequest
	} else if from.Secure && !from.Local && (from.Node == "" || (req.Kind != "get" && req.Node != from.Node)) {
		// The forwarding node's identity comes from its certificate: it may act only for its
		// own sessions (Node is the holder's node name). Without TLS (an insecure cluster)
		// there is no identity to check.
		err = ErrForbidden
	} else {
		timeout := s.log.ForwardWait()
		if dl, ok := ctx.Deadline(); ok {
			timeout = min(timeout, time.Until(dl))
		}
		resp.Lease, err = s.handle(req, timeout)
	}
	if errors.Is(err, ErrNoLeader) {
		return nil, replog.ErrNoLeader
	}
	if err != nil {
		resp.Err = err.Error()
	}
	return json.Marshal(resp)
}

// legacyAnswer and legacyRead translate the answer for the 'F' stream, whose answer is the
// same JSON with the error's text in it.
func legacyAnswer(b []byte, err error) any {
	if err != nil {
		return response{Err: ErrNoLeader.Error()}
	}
	return json.RawMessage(b)
}

func legacyRead(raw []byte) ([]byte, bool, error) {
	var resp response
	if err := json.Unmarshal(raw, &resp); err != nil {
		return nil, true, err
	}
	if resp.Err == ErrNoLeader.Error() {
		return nil, true, nil
	}
	return raw, false, nil
}

// handle runs on the leader.
func (s *Service) handle(req Request, timeout time.Duration) (Lease, error) {
	if req.Name == "" {
		return Lease{}, ErrBadRequest
	}
	if timeout < 100*time.Millisecond {
		timeout = 100 * time.Millisecond
	}
	// A leader must have applied everything committed before it reads
	// the table (renewals in flight could otherwise look expired).
	if err := s.log.CaughtUp(timeout); err != nil {
		return Lease{}, ErrNoLeader
	}
	rec, _, _ := s.fsm.Get(req.Name)
	switch req.Kind {
	case "get":
		if err := s.log.VerifyLeader(); err != nil {
			return Lease{}, ErrNoLeader
		}
		return s.view(rec), nil
	case "campaign":
		if req.Node == "" || !s.ttlOK(req.TTL) {
			return Lease{}, ErrBadRequest
		}
		if rec.Held() && rec.Node == req.Node && rec.Session == req.Session {
			return s.apply(Command{Op: OpRenew, Name: req.Name, Token: rec.Token, TTL: req.TTL}, timeout, ErrHeld)
		}
		if rec.Held() && s.remaining(rec) > 0 {
			return s.view(rec), ErrHeld
		}
		return s.apply(Command{Op: OpAcquire, Name: req.Name, Node: req.Node, Session: req.Session, TTL: req.TTL, PrevIndex: rec.Index}, timeout, ErrHeld)
	case "renew":
		if req.TTL != 0 && !s.ttlOK(req.TTL) {
			return Lease{}, ErrBadRequest
		}
		if !rec.Held() || rec.Token != req.Token || rec.Node != req.Node || rec.Session != req.Session {
			return s.view(rec), ErrStaleToken
		}
		return s.apply(Command{Op: OpRenew, Name: req.Name, Token: req.Token, TTL: req.TTL}, timeout, ErrStaleToken)
	case "resign":
		if !rec.Held() || rec.Token != req.Token || rec.Node != req.Node || rec.Session != req.Session {
			return s.view(rec), ErrStaleToken
		}
		return s.apply(Command{Op: OpRelease, Name: req.Name, Token: req.Token}, timeout, ErrStaleToken)
	}
	return Lease{}, ErrBadRequest
}

// ttlOK reports whether a requested TTL is within the configured bounds: the leader checks
// what it is asked, whoever forwarded it (the admin API's bounds, on the log's side).
func (s *Service) ttlOK(d time.Duration) bool {
	if d <= 0 {
		return false
	}
	if s.cfg.MinTTL > 0 && d < s.cfg.MinTTL {
		return false
	}
	return s.cfg.MaxTTL <= 0 || d <= s.cfg.MaxTTL
}

func (s *Service) apply(c Command, timeout time.Duration, lost error) (Lease, error) {
	b, _ := json.Marshal(c)
	out, err := s.log.Propose(replog.TagLeases, b[1:], timeout)
	if err != nil {
		return Lease{}, ErrNoLeader
	}
	res, _ := out.(Result)
	l := s.view(res.Record)
	if !res.OK {
		return l, lost
	}
	return l, nil
}

// remaining is the leader's view of the time left on a held lease: TTL
// stretched by the allowed clock drift, from this replica's apply time.
func (s *Service) remaining(r Record) time.Duration {
	if !r.Held() || r.appliedAt.IsZero() {
		return 0
	}
	ttl := time.Duration(float64(r.TTL) * (1 + s.cfg.MaxClockDrift))
	left := time.Until(r.appliedAt.Add(ttl))
	if left < 0 {
		return 0
	}
	return left
}

func (s *Service) view(r Record) Lease {
	return Lease{Record: r, Remaining: s.remaining(r), Leader: s.log.LeaderID()}
}

// reapLoop releases expired leases while leader.
func (s *Service) reapLoop() {
	defer s.wg.Done()
	reap := time.NewTicker(s.cfg.ReapInterval)
	defer reap.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-s.log.Stopped():
			return
		case <-reap.C:
			if s.log.IsLeader() {
				s.reap()
			}
		}
	}
}

func (s *Service) reap() {
	if err := s.log.CaughtUp(s.cfg.ReapInterval * 5); err != nil {
		return
	}
	for _, r := range s.fsm.List() {
		if r.Held() && s.remaining(r) == 0 {
			b, _ := json.Marshal(Command{Op: OpRelease, Name: r.Name, Token: r.Token, PrevIndex: r.Index, Expire: true})
			_, _ = s.log.Propose(replog.TagLeases, b[1:], s.cfg.ReapInterval*5)
		}
	}
}

// Shutdown stops the reaper; operations after it fail with ErrClosed. Idempotent.
func (s *Service) Shutdown() {
	s.closeOnce.Do(func() {
		close(s.stop)
		s.wg.Wait()
	})
}
