package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/wasmpod/wasmpod/cluster"
)

// fakeCluster answers every election operation with lease and err, and Watch after wait.
type fakeCluster struct {
	lease cluster.Lease
	err   error
	got   any // the last request
}

func (f *fakeCluster) Name() string { return "n1" }
func (f *fakeCluster) Members() []cluster.Member {
	return []cluster.Member{{Name: "n1", State: cluster.MemberAlive}}
}
func (f *fakeCluster) Status() cluster.Status { return cluster.Status{Node: "n1"} }
func (f *fakeCluster) Get(context.Context, string) (cluster.Lease, error) {
	return f.lease, f.err
}
func (f *fakeCluster) Campaign(_ context.Context, _ string, r cluster.CampaignRequest) (cluster.Lease, error) {
	f.got = r
	return f.lease, f.err
}
func (f *fakeCluster) Renew(_ context.Context, _ string, r cluster.RenewRequest) (cluster.Lease, error) {
	f.got = r
	return f.lease, f.err
}
func (f *fakeCluster) Resign(_ context.Context, _ string, r cluster.ResignRequest) (cluster.Lease, error) {
	f.got = r
	return f.lease, f.err
}
func (f *fakeCluster) Watch(ctx context.Context, _ string, idx uint64) (cluster.Lease, error) {
	if idx < f.lease.Index {
		return f.lease, nil
	}
	<-ctx.Done()
	return f.lease, ctx.Err()
}

// serve runs the admin routes of a server with no supervisor on a loopback listener.
func serve(t *testing.T, c Cluster, cfg Config) string {
	t.Helper()
	cfg.Cluster = c
	s := &Server{cfg: cfg, log: nil}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		if !s.serveCluster(ctx, string(ctx.Path()), string(ctx.Method())) {
			ctx.SetStatusCode(fasthttp.StatusNotFound)
		}
	}, WriteTimeout: cfg.WriteTimeout, ReadTimeout: cfg.ReadTimeout}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ln) }()
	t.Cleanup(func() { s.cancel(); srv.Shutdown(); <-done })
	return "http://" + ln.Addr().String()
}

func TestElectionRoutes(t *testing.T) {
	held := cluster.Lease{Name: "job", Held: true, Holder: "n2", Session: "p/m", Token: 7, Index: 9}
	for _, c := range []struct {
		name, method, path, body string
		err                      error
		status                   int
		wantLease                bool
	}{
		{"members", "GET", "/v1/members", "", nil, 200, false},
		{"cluster status", "GET", "/v1/cluster", "", nil, 200, false},
		{"get", "GET", "/v1/election/job", "", nil, 200, true},
		{"get without quorum", "GET", "/v1/election/job", "", cluster.ErrNoQuorum, 503, false},
		{"campaign granted", "POST", "/v1/election/job/campaign", `{"session":"a/b","ttl_ms":3000}`, nil, 200, true},
		{"campaign lost: 409 with the holder", "POST", "/v1/election/job/campaign", `{"session":"a/b"}`, cluster.ErrNotLeader, 409, true},
		{"campaign without session", "POST", "/v1/election/job/campaign", `{}`, nil, 400, false},
		{"campaign unknown field", "POST", "/v1/election/job/campaign", `{"session":"a","x":1}`, nil, 400, false},
		{"campaign trailing data", "POST", "/v1/election/job/campaign", `{"session":"a"} {}`, nil, 400, false},
		{"campaign invalid in the cluster", "POST", "/v1/election/job/campaign", `{"session":"a"}`, cluster.ErrInvalid, 400, false},
		{"renew stale: 409", "POST", "/v1/election/job/renew", `{"session":"a","token":3}`, cluster.ErrStaleToken, 409, true},
		{"renew without token", "POST", "/v1/election/job/renew", `{"session":"a"}`, nil, 400, false},
		{"resign", "POST", "/v1/election/job/resign", `{"session":"a","token":7}`, nil, 200, true},
		{"resign on a closed node", "POST", "/v1/election/job/resign", `{"session":"a","token":7}`, cluster.ErrClosed, 503, false},
		{"unknown op", "POST", "/v1/election/job/steal", `{}`, nil, 404, false},
		{"wrong method", "GET", "/v1/election/job/campaign", "", nil, 405, false},
		{"watch bad index", "GET", "/v1/election/job/watch?index=x", "", nil, 400, false},
		{"watch changed", "GET", "/v1/election/job/watch?index=3", "", nil, 200, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Token = "tok"
			base := serve(t, &fakeCluster{lease: held, err: c.err}, cfg)
			req, _ := http.NewRequest(c.method, base+c.path, strings.NewReader(c.body))
			req.Header.Set("Authorization", "Bearer tok") // the operator sees fencing tokens
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body struct {
				cluster.Lease
				Error string         `json:"error"`
				L     *cluster.Lease `json:"lease"`
			}
			var buf bytes.Buffer
			buf.ReadFrom(resp.Body)
			json.Unmarshal(buf.Bytes(), &body)
			if resp.StatusCode != c.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, c.status, buf.String())
			}
			gotLease := body.Token == 7 || (body.L != nil && body.L.Token == 7)
			if gotLease != c.wantLease {
				t.Fatalf("lease in body = %v, want %v: %s", gotLease, c.wantLease, buf.String())
			}
		})
	}
}

// A watch waits longer than the write timeout: fasthttp arms it only to write the answer.
func TestWatchOutlivesWriteTimeout(t *testing.T) {
	cfg := DefaultConfig()
	cfg.WriteTimeout, cfg.ReadTimeout = 100*time.Millisecond, 100*time.Millisecond
	cfg.MaxWatchWait = time.Minute
	base := serve(t, &fakeCluster{lease: cluster.Lease{Name: "job", Index: 2}}, cfg)
	resp, err := http.Get(base + "/v1/election/job/watch?index=2&wait=400ms")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var l cluster.Lease
	if err := json.NewDecoder(resp.Body).Decode(&l); err != nil || resp.StatusCode != 200 || l.Index != 2 {
		t.Fatalf("watch past the write timeout: %d %+v %v", resp.StatusCode, l, err)
	}
}

func TestElectionCaller(t *testing.T) {
	s := &Server{cfg: Config{Token: "admin-token", AppTokens: map[string]string{
		"billing": "billing-token-0123456789", "bill": "bill-token-0123456789"}}}
	for _, c := range []struct {
		name, auth  string
		ok          bool
		may, mayNot []string // sessions
	}{
		{"no token", "", false, nil, []string{"billing", "x"}},
		{"wrong token", "Bearer nope", false, nil, []string{"billing"}},
		{"not a bearer", "Basic admin-token", false, nil, []string{"billing"}},
		{"admin", "Bearer admin-token", true, []string{"billing", "bill/x", "p/m"}, nil},
		{"an app: its own namespace", "Bearer billing-token-0123456789", true,
			[]string{"billing", "billing/worker-1"}, []string{"bill", "bill/x", "billing2", "p/m", ""}},
		{"a prefix of another app's name is not its namespace", "Bearer bill-token-0123456789", true,
			[]string{"bill", "bill/x"}, []string{"billing", "billing/worker-1"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var ctx fasthttp.RequestCtx
			addr, _ := net.ResolveTCPAddr("tcp", "127.0.0.1:5000") // loopback earns nothing
			ctx.Init(&fasthttp.Request{}, addr, nil)
			if c.auth != "" {
				ctx.Request.Header.Set("Authorization", c.auth)
			}
			who, ok := s.electionCaller(&ctx)
			if ok != c.ok {
				t.Fatalf("authorized = %v, want %v", ok, c.ok)
			}
			if !ok && ctx.Response.StatusCode() != fasthttp.StatusUnauthorized {
				t.Fatalf("refused with %d, want 401", ctx.Response.StatusCode())
			}
			for _, sess := range c.may {
				if !who.mayUse(sess) {
					t.Errorf("may not use session %q; want may", sess)
				}
			}
			for _, sess := range c.mayNot {
				if who.mayUse(sess) {
					t.Errorf("may use session %q; want may not", sess)
				}
			}
		})
	}
}

func TestElectionStatus(t *testing.T) {
	for _, c := range []struct {
		err  error
		want int
	}{
		{nil, 200},
		{cluster.ErrNotLeader, 409},
		{cluster.ErrStaleToken, 409},
		{cluster.ErrNoQuorum, 503},
		{cluster.ErrClosed, 503},
		{cluster.ErrInvalid, 400},
		{errors.New("boom"), 500},
	} {
		if got := ElectionStatus(c.err); got != c.want {
			t.Errorf("ElectionStatus(%v) = %d, want %d", c.err, got, c.want)
		}
	}
}

func FuzzElectionBodies(f *testing.F) {
	for _, s := range []string{`{"session":"a/b","ttl_ms":2000}`, `{"session":"a","token":5}`, `{}`, ``, `{"session":1}`, `[]`, `{"token":-1}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if r, err := parseCampaign(b); err == nil && (r.Session == "" || r.TTLMillis < 0) {
			t.Fatalf("parseCampaign accepted %q as %+v", b, r)
		} else if err != nil && !errors.Is(err, cluster.ErrInvalid) {
			t.Fatalf("parseCampaign error not ErrInvalid: %v", err)
		}
		if r, err := parseRenew(b); err == nil && (r.Session == "" || r.Token == 0) {
			t.Fatalf("parseRenew accepted %q as %+v", b, r)
		}
		if r, err := parseResign(b); err == nil && (r.Session == "" || r.Token == 0) {
			t.Fatalf("parseResign accepted %q as %+v", b, r)
		}
	})
}
