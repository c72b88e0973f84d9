package admin

import (
	"errors"
	"io/fs"
	"mime"
	"path"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/wasmpod/wasmpod/cluster"
	"github.com/wasmpod/wasmpod/cluster/queue"
	"github.com/wasmpod/wasmpod/cluster/scatter"
	"github.com/wasmpod/wasmpod/host/internal/console"
	"github.com/wasmpod/wasmpod/host/internal/supervisor"
	"github.com/wasmpod/wasmpod/host/internal/version"
)

// The web console: GET /ui/ serves the embedded page, GET /v1/console/state the one JSON
// snapshot it polls. The page's actions go to the existing routes (module actions, task
// retry, logs), with the bearer token the operator typed in.

// ConsolePath is where the console is served.
const ConsolePath = "/ui/"

// What one snapshot carries at most: it is read every second, so a job of 100k inputs or a
// pipeline with thousands of dead letters must not make it large. The CLI lists everything.
const (
	consoleJobs       = 20 // newest jobs
	consoleDead       = 50 // dead letters
	consoleTaskInputs = 5  // input names per dead letter
)

// electionLister is what the console reads of a cluster node's elections (*cluster.Node).
type electionLister interface {
	Elections() []cluster.Lease
}

// scatterObserver is what the console and /metrics read of a scatter root, when it keeps them
// (the host's scatter service does).
type scatterObserver interface {
	Answers() *console.AnswerLog
	ShardLatencies() []scatter.ShardLatency
	ShardLeaves() map[string]string
}

// ConsoleElection is an election as the console shows it. Token is set only for a reader
// with the admin token; TokenAge is how long this node has seen the current token (since the
// grant, or since this host started if it was granted before).
type ConsoleElection struct {
	Name       string  `json:"name"`
	Held       bool    `json:"held"`
	Expired    bool    `json:"expired"`
	Holder     string  `json:"holder,omitempty"`
	Session    string  `json:"session,omitempty"`
	Token      *uint64 `json:"token,omitempty"`
	TokenAge   float64 `json:"tokenAgeSeconds"`
	ExpiresIn  float64 `json:"expiresInSeconds"`
	TTLMillis  int64   `json:"ttlMillis"`
	RaftLeader string  `json:"raftLeader,omitempty"`
}

// ConsoleModule is a module's status (redacted for a reader without the admin token) with
// its recent traffic.
type ConsoleModule struct {
	ModuleView
	Busy   int             `json:"busy"`
	Series []console.Point `json:"series"`
}

// ConsoleQueue is the work queue as the console shows it: the newest jobs and the first dead
// letters (DeadTotal counts them all).
type ConsoleQueue struct {
	Stages    []queue.StageStats    `json:"stages"`
	Workers   []cluster.WorkerStats `json:"workers"`
	Jobs      []ConsoleJob          `json:"jobs"`
	Dead      []ConsoleTask         `json:"dead"`
	DeadTotal int                   `json:"deadTotal"`
}

// ConsoleJob is a job without its input and output lists.
type ConsoleJob struct {
	ID       queue.JobID           `json:"id"`
	Pipeline string                `json:"pipeline"`
	State    queue.JobState        `json:"state"`
	Created  time.Time             `json:"created"`
	Finished time.Time             `json:"finished,omitzero"`
	Inputs   int                   `json:"inputs"`
	Stages   []queue.StageProgress `json:"stages"`
}

// ConsoleTask is a dead letter with its error history and its first input names (for a
// reader without the admin token: its attempts without their messages and no file names).
type ConsoleTask struct {
	queue.TaskInfo
	InputCount int  `json:"inputCount"`
	Redacted   bool `json:"redacted,omitempty"`
}

// ConsoleScatter is the scatter root's recent answers and per-shard latency.
type ConsoleScatter struct {
	Path   string               `json:"path"`
	Counts console.AnswerCounts `json:"counts"`
	Recent []console.Answer     `json:"recent"`
	Shards []ConsoleShard       `json:"shards"`
}

// ConsoleShard is a shard's latency: remote calls as the root timed them (the window its hedge
// delay comes from), and the local leaf module's calls over the sampler's last interval with
// traffic (seconds; 0 when none).
type ConsoleShard struct {
	scatter.ShardLatency
	Leaf     string  `json:"leaf,omitempty"`
	LocalP50 float64 `json:"localP50"`
	LocalP99 float64 `json:"localP99"`
}

// ConsoleState is the answer to GET /v1/console/state. A section that could not be read is
// nil, with the reason in Errors under the section's name.
type ConsoleState struct {
	Now        time.Time         `json:"now"`
	Authorized bool              `json:"authorized"`
	Mutating   bool              `json:"mutating"` // the host has a token: actions are possible
	Pod        string            `json:"pod"`
	Version    version.Info      `json:"version"`
	Ready      bool              `json:"ready"`
	NotReady   []string          `json:"notReady,omitempty"`
	Cluster    *cluster.Status   `json:"cluster,omitempty"`
	Members    []cluster.Member  `json:"members"`
	Elections  []ConsoleElection `json:"elections"`
	Modules    []ConsoleModule   `json:"modules"`
	Queue      *ConsoleQueue     `json:"queue,omitempty"`
	Scatter    *ConsoleScatter   `json:"scatter,omitempty"`
	Errors     map[string]string `json:"errors,omitempty"`
}

// consoleState is the server's console memory: the sampler and when each election token was
// first seen.
type consoleState struct {
	sampler *console.Sampler

	mu     sync.Mutex
	tokens map[string]tokenSeen
}

type tokenSeen struct {
	token uint64
	at    time.Time
}

func newConsoleState(sup *supervisor.Supervisor) *consoleState {
	return &consoleState{sampler: console.NewSampler(console.DefaultSamplerConfig(), sup.Metrics), tokens: map[string]tokenSeen{}}
}

// startConsole runs the sampler until Shutdown (none for a Server not made by New).
func (s *Server) startConsole() {
	if s.console == nil {
		return
	}
	s.consoleOnce.Do(func() {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.console.sampler.Run(s.ctx)
		}()
	})
}

// tokenAge is how long this node has seen token as name's token.
func (c *consoleState) tokenAge(name string, token uint64, now time.Time) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.tokens[name]
	if !ok || t.token != token {
		t = tokenSeen{token: token, at: now}
		c.tokens[name] = t
	}
	return now.Sub(t.at)
}

// serveConsole answers /ui, /ui/... and /v1/console/state; false for other paths.
func (s *Server) serveConsole(ctx *fasthttp.RequestCtx, p, method string) bool {
	switch {
	case p == "/ui":
		ctx.Redirect(ConsolePath, fasthttp.StatusMovedPermanently)
	case len(p) >= len(ConsolePath) && p[:len(ConsolePath)] == ConsolePath:
		if method != fasthttp.MethodGet && method != fasthttp.MethodHead {
			ctx.Response.Header.Set("Allow", "GET, HEAD")
			writeError(ctx, fasthttp.StatusMethodNotAllowed, errors.New("the console is read with GET"))
			return true
		}
		s.serveConsoleFile(ctx, p[len(ConsolePath):])
	case p == "/v1/console/state":
		if method != fasthttp.MethodGet {
			ctx.Response.Header.Set("Allow", "GET")
			writeError(ctx, fasthttp.StatusMethodNotAllowed, errors.New("GET /v1/console/state only"))
			return true
		}
		if s.console == nil {
			writeError(ctx, fasthttp.StatusServiceUnavailable, errors.New("the console is not set up on this server"))
			return true
		}
		ctx.Response.Header.Set("Cache-Control", "no-store")
		writeJSON(ctx, fasthttp.StatusOK, s.consoleSnapshot(s.validToken(ctx.Request.Header.Peek("Authorization"))))
	default:
		return false
	}
	return true
}

func (s *Server) serveConsoleFile(ctx *fasthttp.RequestCtx, name string) {
	if name == "" {
		name = "index.html"
	}
	b, err := fs.ReadFile(console.Files(), name)
	if err != nil {
		writeError(ctx, fasthttp.StatusNotFound, errors.New("no console file "+name))
		return
	}
	h := &ctx.Response.Header
	// The page loads nothing from elsewhere and runs no inline script; it cannot be framed.
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-cache")
	ct := mime.TypeByExtension(path.Ext(name))
	if ct == "" {
		ct = "application/octet-stream"
	}
	ctx.SetContentType(ct)
	ctx.SetBody(b)
}

// consoleSnapshot reads everything the page shows. authorized adds the secrets: election
// tokens, module configuration and errors, dead letters' files and messages (reads.go).
func (s *Server) consoleSnapshot(authorized bool) ConsoleState {
	now := time.Now()
	st := ConsoleState{Now: now, Authorized: authorized, Mutating: s.cfg.Token != "",
		Pod: s.sup.Pod().Metadata.Name, Version: version.Get(),
		Members: []cluster.Member{}, Elections: []ConsoleElection{}, Modules: []ConsoleModule{}}
	fail := func(section string, err error) {
		if st.Errors == nil {
			st.Errors = map[string]string{}
		}
		st.Errors[section] = err.Error()
	}
	st.Ready, st.NotReady = s.sup.Ready()

	series := s.console.sampler.Series()
	busy := map[string]int{}
	for _, m := range s.sup.Metrics() {
		busy[m.Name] = m.Stats.Busy
	}
	for _, m := range s.sup.Statuses() {
		m.Spec = nil // the full spec is on /v1/modules/{name}; the page needs the status
		st.Modules = append(st.Modules, ConsoleModule{ModuleView: moduleView(m, authorized), Busy: busy[m.Name], Series: nonNil(series[m.Name])})
	}

	if c := s.cfg.Cluster; c != nil {
		cs := c.Status()
		st.Cluster = &cs
		st.Members = nonNil(c.Members())
		if el, ok := c.(electionLister); ok {
			for _, l := range el.Elections() {
				e := ConsoleElection{Name: l.Name, Held: l.Held, Holder: l.Holder, Session: l.Session,
					TTLMillis: l.TTLMillis, RaftLeader: l.RaftLeader}
				if l.Held {
					e.ExpiresIn = l.Expiry.Sub(now).Seconds()
					e.Expired = e.ExpiresIn <= 0
					e.ExpiresIn = max(e.ExpiresIn, 0)
					e.TokenAge = s.console.tokenAge(l.Name, l.Token, now).Seconds()
				}
				if authorized {
					tok := l.Token
					e.Token = &tok
				}
				st.Elections = append(st.Elections, e)
			}
		}
	} else {
		fail("cluster", errors.New("this host runs no cluster node"))
	}

	if q := s.cfg.Queue; q != nil {
		cq := &ConsoleQueue{Workers: nonNil(q.WorkerStats()), Jobs: []ConsoleJob{}, Dead: []ConsoleTask{}}
		var err error
		if cq.Stages, err = q.QueueStats(); err != nil {
			fail("queue", err)
		}
		cq.Stages = nonNil(cq.Stages)
		jobs, err := q.Jobs("", consoleJobs)
		if err != nil {
			fail("queue", err)
		}
		for _, j := range jobs {
			cq.Jobs = append(cq.Jobs, ConsoleJob{ID: j.ID, Pipeline: j.Pipeline.Name, State: j.State, Created: j.Created,
				Finished: j.Finished, Inputs: len(j.Inputs), Stages: nonNil(j.Stages)})
		}
		dead, err := q.DeadTasks("")
		if err != nil {
			fail("queue", err)
		}
		cq.DeadTotal = len(dead)
		for _, t := range dead[:min(len(dead), consoleDead)] {
			ct := ConsoleTask{TaskInfo: t, InputCount: len(t.Inputs)}
			ct.Inputs = t.Inputs[:min(len(t.Inputs), consoleTaskInputs)]
			ct.Output = nil
			if !authorized {
				ct.TaskInfo, ct.Redacted = redactTask(t), true
			}
			cq.Dead = append(cq.Dead, ct)
		}
		st.Queue = cq
	}

	if so, ok := s.cfg.Scatter.(scatterObserver); ok {
		a := so.Answers()
		st.Scatter = &ConsoleScatter{Path: s.cfg.ScatterPath, Counts: a.Counts(), Recent: nonNil(a.Recent()), Shards: []ConsoleShard{}}
		leaves := so.ShardLeaves()
		for _, sl := range so.ShardLatencies() {
			cs := ConsoleShard{ShardLatency: sl, Leaf: leaves[sl.Shard]}
			if p, ok := lastBusy(series[cs.Leaf]); ok {
				cs.LocalP50, cs.LocalP99 = p.P50, p.P99
			}
			st.Scatter.Shards = append(st.Scatter.Shards, cs)
		}
	}
	return st
}

// lastBusy is the newest point with calls in it.
func lastBusy(ps []console.Point) (console.Point, bool) {
	for i := len(ps) - 1; i >= 0; i-- {
		if ps[i].Rate > 0 {
			return ps[i], true
		}
	}
	return console.Point{}, false
}

// consoleCollector exports what the dashboards and alerts need beyond the module and queue
// metrics: membership, Raft leadership, elections and scatter answers.
type consoleCollector struct {
	cfg Config
	pod string

	members, raftLeader, raftHasLeader, raftTerm      *prometheus.Desc
	elHeld, elLocal, elExpiresIn                      *prometheus.Desc
	scRequests, scPartial, scFailed, scMissing, scLat *prometheus.Desc
}

func newConsoleCollector(cfg Config, pod string) *consoleCollector {
	return &consoleCollector{cfg: cfg, pod: pod,
		members:       prometheus.NewDesc("wasmpod_cluster_members", "Cluster members this node sees, by gossip state.", []string{"state"}, nil),
		raftLeader:    prometheus.NewDesc("wasmpod_cluster_raft_leader", "1 when this node is the Raft leader.", nil, nil),
		raftHasLeader: prometheus.NewDesc("wasmpod_cluster_raft_has_leader", "1 when this node knows a Raft leader.", nil, nil),
		raftTerm:      prometheus.NewDesc("wasmpod_cluster_raft_term", "This node's current Raft term.", nil, nil),
		elHeld:        prometheus.NewDesc("wasmpod_election_held", "1 when the named lease is held and not expired (this node's replica).", []string{"election"}, nil),
		elLocal:       prometheus.NewDesc("wasmpod_election_local_holder", "1 when this node holds the named lease.", []string{"election"}, nil),
		elExpiresIn:   prometheus.NewDesc("wasmpod_election_expires_in_seconds", "Time left on the named lease (0 when free or expired).", []string{"election"}, nil),
		scRequests:    prometheus.NewDesc("wasmpod_scatter_requests_total", "Scatter requests this root answered or failed.", []string{"pod"}, nil),
		scPartial:     prometheus.NewDesc("wasmpod_scatter_partial_total", "Scatter answers with shards missing.", []string{"pod"}, nil),
		scFailed:      prometheus.NewDesc("wasmpod_scatter_failed_total", "Scatter requests that got no answer (overload, deadline, merge failure).", []string{"pod"}, nil),
		scMissing:     prometheus.NewDesc("wasmpod_scatter_shard_missing_total", "Scatter answers the shard was missing from.", []string{"pod", "shard"}, nil),
		scLat:         prometheus.NewDesc("wasmpod_scatter_shard_latency_seconds", "Recent remote-call latency of the shard (last 128 successful remote calls).", []string{"pod", "shard", "quantile"}, nil),
	}
}

// Describe sends nothing: the collector is unchecked, as elections and shards are known at
// scrape time.
func (c *consoleCollector) Describe(chan<- *prometheus.Desc) {}

func (c *consoleCollector) Collect(ch chan<- prometheus.Metric) {
	g := func(d *prometheus.Desc, v float64, lv ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, lv...)
	}
	cnt := func(d *prometheus.Desc, v uint64, lv ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), lv...)
	}
	if cl := c.cfg.Cluster; cl != nil {
		by := map[cluster.MemberState]int{cluster.MemberAlive: 0, cluster.MemberDead: 0, cluster.MemberLeft: 0}
		for _, m := range cl.Members() {
			by[m.State]++
		}
		for state, n := range by {
			g(c.members, float64(n), string(state))
		}
		st := cl.Status()
		g(c.raftLeader, b2f(st.RaftState == "Leader"))
		g(c.raftHasLeader, b2f(st.RaftLeader != ""))
		g(c.raftTerm, float64(st.Term))
		if el, ok := cl.(electionLister); ok {
			now := time.Now()
			for _, l := range el.Elections() {
				left := max(l.Expiry.Sub(now).Seconds(), 0)
				if !l.Held {
					left = 0
				}
				g(c.elHeld, b2f(l.Held && left > 0), l.Name)
				g(c.elLocal, b2f(l.Held && left > 0 && l.Holder == cl.Name()), l.Name)
				g(c.elExpiresIn, left, l.Name)
			}
		}
	}
	if so, ok := c.cfg.Scatter.(scatterObserver); ok {
		n := so.Answers().Counts()
		cnt(c.scRequests, n.Requests, c.pod)
		cnt(c.scPartial, n.Partial, c.pod)
		cnt(c.scFailed, n.Failed, c.pod)
		for shard, v := range n.Missing {
			cnt(c.scMissing, v, c.pod, shard)
		}
		for _, sl := range so.ShardLatencies() {
			g(c.scLat, sl.P50.Seconds(), c.pod, sl.Shard, "0.5")
			g(c.scLat, sl.P99.Seconds(), c.pod, sl.Shard, "0.99")
		}
	}
}
