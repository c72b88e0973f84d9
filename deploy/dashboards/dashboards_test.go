package dashboards

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/wasmpod/wasmpod/deploy/internal/deploytest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	deploytest.Cleanup()
	os.Exit(code)
}

// tool finds a Prometheus tool (Debian package prometheus), or skips (fails in CI).
func tool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		deploytest.Skip(t, name+" not installed (Debian package prometheus)")
	}
	return p
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestAlertRules: the rules load, and each alert fires on the history it is for and not on a
// normal one (alerts_test.yml).
func TestAlertRules(t *testing.T) {
	promtool := tool(t, "promtool")
	t.Log(run(t, promtool, "check", "rules", "alerts.yml"))
	t.Log(run(t, promtool, "test", "rules", "alerts_test.yml"))
}

// dashboard is the part of a Grafana dashboard the test reads.
type dashboard struct {
	UID        string  `json:"uid"`
	Title      string  `json:"title"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Query struct {
				Query string `json:"query"`
			} `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		UID string `json:"uid"`
	} `json:"datasource"`
	GridPos struct{ H, W, X, Y int } `json:"gridPos"`
	Targets []struct {
		Expr  string `json:"expr"`
		RefID string `json:"refId"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // a collapsed row's
}

// query is one PromQL expression of the dashboard or the rules, with where it comes from.
type query struct{ where, expr string }

var labelValuesRE = regexp.MustCompile(`^label_values\((.+),\s*[a-z_]+\)$`)

// grafanaVars replaces the dashboard's variables with what Grafana would send for "All" and a
// short range.
var grafanaVars = strings.NewReplacer("$__rate_interval", "1m", "$__interval", "15s", "$__range", "5m",
	"$instance", ".*", "$pod", ".*", "$module", ".*")

func dashboardQueries(t *testing.T) (dashboard, []query) {
	t.Helper()
	b, err := os.ReadFile("wasmpod.json")
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("wasmpod.json: %v", err)
	}
	var qs []query
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			walk(p.Panels)
			for _, tg := range p.Targets {
				qs = append(qs, query{fmt.Sprintf("panel %q target %s", p.Title, tg.RefID), grafanaVars.Replace(tg.Expr)})
			}
		}
	}
	walk(d.Panels)
	for _, v := range d.Templating.List {
		m := labelValuesRE.FindStringSubmatch(v.Query.Query)
		if m == nil {
			t.Fatalf("variable %s: query %q is not label_values(SELECTOR, LABEL)", v.Name, v.Query.Query)
		}
		qs = append(qs, query{"variable " + v.Name, grafanaVars.Replace(m[1])})
	}
	return d, qs
}

func ruleQueries(t *testing.T) []query {
	t.Helper()
	b, err := os.ReadFile("alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	var rf struct {
		Groups []struct {
			Rules []struct {
				Alert string `json:"alert"`
				Expr  string `json:"expr"`
			} `json:"rules"`
		} `json:"groups"`
	}
	if err := yaml.Unmarshal(b, &rf); err != nil {
		t.Fatal(err)
	}
	var qs []query
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			qs = append(qs, query{"alert " + r.Alert, r.Expr})
		}
	}
	return qs
}

// TestDashboardShape: what Grafana needs to import the file.
func TestDashboardShape(t *testing.T) {
	d, qs := dashboardQueries(t)
	if d.UID == "" || d.Title == "" {
		t.Errorf("uid %q title %q: both needed for import", d.UID, d.Title)
	}
	ids := map[int]bool{}
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if ids[p.ID] {
				t.Errorf("panel %q: duplicate id %d", p.Title, p.ID)
			}
			ids[p.ID] = true
			if p.GridPos.W <= 0 || p.GridPos.X+p.GridPos.W > 24 || p.GridPos.H <= 0 {
				t.Errorf("panel %q: grid position %+v outside Grafana's 24 columns", p.Title, p.GridPos)
			}
			if p.Type != "row" && (p.Datasource == nil || p.Datasource.UID != "${DS_PROMETHEUS}" || len(p.Targets) == 0) {
				t.Errorf("panel %q: needs the imported Prometheus datasource and a query", p.Title)
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	if len(qs) < 30 {
		t.Errorf("%d queries: the dashboard lost panels", len(qs))
	}
}

var metricRE = regexp.MustCompile(`\b((?:wasmpod|go|process)_[a-zA-Z0-9_]+)\b`)

// TestQueriesAgainstARealHost: every PromQL expression of the dashboard and the alerts parses
// (promtool check rules on them as recording rules), every metric it names is on a real host's
// /metrics, and, with a real Prometheus scraping that host, every dashboard query evaluates
// without error to at least one series.
func TestQueriesAgainstARealHost(t *testing.T) {
	if testing.Short() {
		t.Skip("real host and Prometheus")
	}
	promtool := tool(t, "promtool")
	prometheus := tool(t, "prometheus")
	_, dqs := dashboardQueries(t)
	rqs := ruleQueries(t)
	all := append(slices.Clone(dqs), rqs...)

	// 1. Every expression parses.
	var rules strings.Builder
	rules.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	for i, q := range all {
		e, _ := json.Marshal(q.expr)
		fmt.Fprintf(&rules, "      - record: dashboard:query_%d\n        expr: %s\n", i, e)
	}
	dir := t.TempDir()
	rulesFile := filepath.Join(dir, "queries.yml")
	if err := os.WriteFile(rulesFile, []byte(rules.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "check", "rules", rulesFile).CombinedOutput(); err != nil {
		t.Fatalf("a query does not parse: %v\n%s", err, out)
	}

	// 2. A real host with every kind of metric: modules, a pipeline with a job and a dead
	// letter, a scatter root with a partial answer, an election.
	h := startHost(t, dir)
	names := scrapeNames(t, "http://"+h.Admin+"/metrics")
	for _, q := range all {
		for _, m := range metricRE.FindAllString(q.expr, -1) {
			if !names[m] {
				t.Errorf("%s: metric %s is not on the host's /metrics", q.where, m)
			}
		}
	}

	// 3. A real Prometheus scraping it: every dashboard query has data.
	api := startPrometheus(t, prometheus, dir, h.Admin)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		// Rates need two scrapes in the window: wait for a few.
		r := promQuery(t, api, `count_over_time(up{job="wasmpod"}[1m])`)
		if n, _ := strconv.Atoi(firstValue(r)); n >= 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Prometheus has not scraped the host 4 times in 2 minutes: %v", r)
		}
		time.Sleep(500 * time.Millisecond)
	}
	for _, q := range dqs {
		if r := promQuery(t, api, q.expr); len(r) == 0 {
			t.Errorf("%s: no data from a real host:\n%s", q.where, q.expr)
		}
	}
	for _, q := range rqs {
		promQuery(t, api, q.expr) // evaluates (quiet: nothing is wrong with this host)
	}
}

func firstValue(r []promSample) string {
	if len(r) == 0 {
		return ""
	}
	return r[0].Value[1]
}

// scrapeNames reads a /metrics page and returns every metric name on it (a histogram's
// _bucket, _sum and _count series included).
func scrapeNames(t *testing.T, u string) map[string]bool {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	names := map[string]bool{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if f := strings.Fields(line); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			names[f[2]] = true
			if f[3] == "histogram" || f[3] == "summary" {
				names[f[2]+"_sum"], names[f[2]+"_count"] = true, true
				if f[3] == "histogram" {
					names[f[2]+"_bucket"] = true
				}
			}
		}
	}
	return names
}

type sample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

type promSample struct {
	Metric map[string]string
	Value  [2]string
}

// promQuery evaluates expr now; a query Prometheus refuses fails the test.
func promQuery(t *testing.T, api, expr string) []promSample {
	t.Helper()
	resp, err := http.Get(api + "/api/v1/query?query=" + url.QueryEscape(expr))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string          `json:"resultType"`
			Result     json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(b, &r); err != nil || r.Status != "success" {
		t.Fatalf("query %s: %s %s", expr, r.Error, b)
	}
	if r.Data.ResultType != "vector" {
		t.Fatalf("query %s: result type %s, want vector", expr, r.Data.ResultType)
	}
	var ss []sample
	if err := json.Unmarshal(r.Data.Result, &ss); err != nil {
		t.Fatal(err)
	}
	out := make([]promSample, len(ss))
	for i, s := range ss {
		out[i].Metric = s.Metric
		out[i].Value[0], out[i].Value[1] = fmt.Sprint(s.Value[0]), fmt.Sprint(s.Value[1])
	}
	return out
}

func startPrometheus(t *testing.T, bin, dir, target string) string {
	t.Helper()
	cfg := fmt.Sprintf(`global: {scrape_interval: 1s, evaluation_interval: 1s}
scrape_configs:
  - job_name: wasmpod
    static_configs: [{targets: [%q]}]
`, target)
	cfgFile := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := deploytest.FreeAddr(t)
	cmd := exec.Command(bin, "--config.file", cfgFile, "--storage.tsdb.path", filepath.Join(dir, "tsdb"),
		"--web.listen-address", addr, "--log.level", "warn")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("prometheus output:\n%s", out.String())
		}
	})
	api := "http://" + addr
	deadline := time.Now().Add(time.Minute)
	for {
		if resp, err := http.Get(api + "/-/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return api
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus not ready in a minute:\n%s", out.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

const token = "dashboards-test-token"

// startHost runs a wasmpod host whose /metrics has every family the dashboard and the rules
// query: a main module, a stage pipeline with a finished job and a dead letter, a scatter root
// with a partial answer (leaf-b stopped), and an election it holds.
func startHost(t *testing.T, dir string) *deploytest.Host {
	t.Helper()
	bin, err := deploytest.Binary()
	if err != nil {
		t.Fatal(err)
	}
	guest := func(d string, command bool) string {
		p, err := deploytest.Guest(d, command)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	hello, stage, sum := guest("examples/hello/guest", false), guest("host/testdata/stagecmd", true), guest("plugins/benchleaf", false)
	spec := filepath.Join(dir, "pod.yaml")
	if err := os.WriteFile(spec, []byte(fmt.Sprintf(`apiVersion: wasmpod.dev/v1
kind: Pod
metadata: {name: dash}
spec:
  terminationGracePeriodSeconds: 2
  modules:
    - {name: hello, wasm: %[1]s, config: {greeting: hi}}
    - {name: upper, role: stage, wasm: %[2]s, resources: {timeout: 20s}}
    - {name: leaf-a, role: leaf, wasm: %[3]s}
    - {name: leaf-b, role: leaf, wasm: %[3]s}
    - {name: merge, role: merge, wasm: %[3]s}
  pipelines:
    - {name: shout, maxAttempts: 1, stages: [{module: upper}]}
  scatter:
    path: /sum
    merge: merge
    deadline: 10s
    shards:
      - {name: a, leaf: leaf-a}
      - {name: b, leaf: leaf-b}
`, hello, stage, sum)), 0o644); err != nil {
		t.Fatal(err)
	}
	h := deploytest.RunLocal(t, bin, []string{"WASMPOD_TOKEN=" + token}, "run", spec,
		"--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--state-dir", filepath.Join(dir, "state"), "--node-name", "dash")
	cli := func(args ...string) string {
		cmd := exec.Command(bin, append(args, "--admin", h.Admin)...)
		cmd.Env = append(os.Environ(), "WASMPOD_TOKEN="+token)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("wasmpod %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	in := t.TempDir()
	ok, fail := filepath.Join(in, "a.txt"), filepath.Join(in, "fail.txt")
	os.WriteFile(ok, []byte("a\n"), 0o644)
	os.WriteFile(fail, []byte("x\n"), 0o644)
	cli("queue", "submit", "--pipeline", "shout", "--wait", ok)
	cmd := exec.Command(bin, "queue", "submit", "--pipeline", "shout", "--wait", fail, "--admin", h.Admin)
	cmd.Env = append(os.Environ(), "WASMPOD_TOKEN="+token)
	cmd.Run() // exits 1: the job finishes with its task dead-lettered
	cli("election", "campaign", "dashboards", "--session", "test", "--ttl", "1h")
	scatterOnce := func() {
		resp, err := http.Post("http://"+h.Ingress+"/sum", "application/octet-stream", strings.NewReader("abc"))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	scatterOnce()
	cli("stop", "leaf-b")
	deadline := time.Now().Add(time.Minute)
	for !scrapeNames(t, "http://"+h.Admin+"/metrics")["wasmpod_scatter_shard_missing_total"] {
		if time.Now().After(deadline) {
			t.Fatal("no partial scatter answer a minute after leaf-b stopped")
		}
		scatterOnce()
		time.Sleep(200 * time.Millisecond)
	}
	var names []string
	for n := range scrapeNames(t, "http://"+h.Admin+"/metrics") {
		if strings.HasPrefix(n, "wasmpod_") {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	t.Logf("host metrics: %s", strings.Join(names, " "))
	return h
}
