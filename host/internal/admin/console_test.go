package admin

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/cluster"
	"github.com/wasmpod/wasmpod/cluster/scatter"
	"github.com/wasmpod/wasmpod/host/internal/console"
)

// electionCluster is fakeCluster with a list of elections.
type electionCluster struct {
	fakeCluster
	leases []cluster.Lease
}

func (c *electionCluster) Elections() []cluster.Lease { return c.leases }

// observedScatter is a scatter root that keeps an answer log, as the host's does.
type observedScatter struct{ log console.AnswerLog }

func (s *observedScatter) Do(_ context.Context, _, dst []byte) ([]byte, scatter.Result, error) {
	return dst, scatter.Result{}, nil
}
func (s *observedScatter) Answers() *console.AnswerLog { return &s.log }
func (s *observedScatter) ShardLatencies() []scatter.ShardLatency {
	return []scatter.ShardLatency{{Shard: "s0", Samples: 3, P50: time.Millisecond, P99: 2 * time.Millisecond}}
}
func (s *observedScatter) ShardLeaves() map[string]string { return map[string]string{"s0": "hello"} }

// consoleServer runs a real admin server over a real supervisor (the hello example) with a
// cluster holding one election and a scatter root with one partial answer.
func consoleServer(t *testing.T) string {
	t.Helper()
	sup, _ := helloPod(t, "greeting: hi")
	c := &electionCluster{leases: []cluster.Lease{{Name: "primary", Held: true, Holder: "n2", Session: "web/hello",
		Token: 4242, TTLMillis: 5000, Expiry: time.Now().Add(time.Hour)}}}
	sc := &observedScatter{}
	sc.log.Record(time.Now(), scatter.Result{Partial: true, Missing: []string{"s0"}}, nil)
	cfg := DefaultConfig()
	cfg.Token, cfg.Cluster, cfg.Scatter, cfg.ScatterPath = "tok", c, sc, "/search"
	return serveAdminWith(t, cfg, sup)
}

func request(t *testing.T, method, url, token string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	c := http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestConsoleRoutes(t *testing.T) {
	base := consoleServer(t)
	t.Run("files", func(t *testing.T) {
		for _, c := range []struct {
			method, path string
			code         int
			ctype, body  string
		}{
			{"GET", "/ui/", 200, "text/html", "console.js"},
			{"GET", "/ui/index.html", 200, "text/html", "<title>wasmpod console</title>"},
			{"GET", "/ui/console.js", 200, "javascript", "sessionStorage"},
			{"GET", "/ui/console.css", 200, "text/css", ".bar"},
			{"HEAD", "/ui/", 200, "text/html", ""},
			{"GET", "/ui", 301, "", ""},
			{"GET", "/ui/nope.js", 404, "application/json", "no console file"},
			{"GET", "/ui/static/index.html", 404, "application/json", "no console file"},
			{"GET", "/ui/%2e%2e/go.mod", 404, "application/json", ""},
			{"POST", "/ui/", 405, "application/json", "GET"},
			{"POST", "/v1/console/state", 405, "application/json", "GET"},
		} {
			tok := ""
			if c.method == "POST" {
				tok = "tok" // without it the admin listener refuses a POST before any route (401)
			}
			resp, body := request(t, c.method, base+c.path, tok)
			if resp.StatusCode != c.code || !strings.Contains(resp.Header.Get("Content-Type"), c.ctype) || !strings.Contains(body, c.body) {
				t.Errorf("%s %s: %d %q %.80q; want %d %q containing %q", c.method, c.path, resp.StatusCode, resp.Header.Get("Content-Type"), body, c.code, c.ctype, c.body)
			}
			if c.code == 200 {
				for h, want := range map[string]string{"Content-Security-Policy": "default-src 'self'", "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY"} {
					if !strings.Contains(resp.Header.Get(h), want) {
						t.Errorf("%s %s: %s %q, want %q", c.method, c.path, h, resp.Header.Get(h), want)
					}
				}
			}
		}
	})
	t.Run("state and the token", func(t *testing.T) {
		for _, c := range []struct {
			name, token string
			authorized  bool
		}{
			{"no token", "", false},
			{"wrong token", "nope", false},
			{"a prefix of the token", "to", false},
			{"admin token", "tok", true},
		} {
			resp, body := request(t, "GET", base+"/v1/console/state", c.token)
			if resp.StatusCode != 200 {
				t.Fatalf("%s: %d %s", c.name, resp.StatusCode, body)
			}
			if resp.Header.Get("Cache-Control") != "no-store" {
				t.Errorf("%s: Cache-Control %q", c.name, resp.Header.Get("Cache-Control"))
			}
			var st ConsoleState
			if err := json.Unmarshal([]byte(body), &st); err != nil {
				t.Fatal(err)
			}
			if st.Authorized != c.authorized || !st.Mutating {
				t.Errorf("%s: authorized %v mutating %v", c.name, st.Authorized, st.Mutating)
			}
			if len(st.Elections) != 1 || st.Elections[0].Holder != "n2" || st.Elections[0].ExpiresIn <= 0 {
				t.Fatalf("%s: elections %+v", c.name, st.Elections)
			}
			hasToken := st.Elections[0].Token != nil
			if hasToken != c.authorized || strings.Contains(body, "4242") != c.authorized {
				t.Errorf("%s: election token shown %v (%q in body %v), want %v", c.name, hasToken, "4242", strings.Contains(body, "4242"), c.authorized)
			}
			if c.authorized && *st.Elections[0].Token != 4242 {
				t.Errorf("token %d", *st.Elections[0].Token)
			}
			if st.Pod != "web" || len(st.Modules) != 1 || st.Modules[0].Name != "hello" || st.Modules[0].Spec != nil {
				t.Errorf("%s: modules %+v", c.name, st.Modules)
			}
			if len(st.Members) != 1 || st.Cluster == nil || st.Cluster.Node != "n1" {
				t.Errorf("%s: members %+v cluster %+v", c.name, st.Members, st.Cluster)
			}
			if st.Scatter == nil || st.Scatter.Path != "/search" || st.Scatter.Counts.Partial != 1 || len(st.Scatter.Recent) != 1 ||
				st.Scatter.Recent[0].Missing[0] != "s0" || len(st.Scatter.Shards) != 1 || st.Scatter.Shards[0].Leaf != "hello" {
				t.Errorf("%s: scatter %+v", c.name, st.Scatter)
			}
		}
	})
	t.Run("metrics", func(t *testing.T) {
		_, body := request(t, "GET", base+"/metrics", "")
		for _, want := range []string{
			`wasmpod_cluster_members{state="alive"} 1`,
			`wasmpod_cluster_raft_has_leader 0`,
			`wasmpod_election_held{election="primary"} 1`,
			`wasmpod_election_local_holder{election="primary"} 0`,
			`wasmpod_scatter_requests_total{pod="web"} 1`,
			`wasmpod_scatter_partial_total{pod="web"} 1`,
			`wasmpod_scatter_shard_missing_total{pod="web",shard="s0"} 1`,
			`wasmpod_scatter_shard_latency_seconds{pod="web",quantile="0.99",shard="s0"} 0.002`,
		} {
			if !strings.Contains(body, want) {
				t.Errorf("/metrics lacks %s", want)
			}
		}
		if strings.Contains(body, "4242") {
			t.Error("/metrics shows the fencing token to anyone")
		}
	})
}
