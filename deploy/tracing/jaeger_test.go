package tracing

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/deploy/internal/deploytest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	deploytest.Cleanup()
	os.Exit(code)
}

// wait bounds each wait (the cluster to route every shard, Jaeger to show the trace):
// generous, for a loaded 2-core machine.
const wait = 2 * time.Minute

var client = &http.Client{Timeout: 30 * time.Second}

// TestJaegerThreeNodes runs examples/search as a 3-node cluster of real wasmpod processes
// exporting to a real Jaeger all-in-one (OTLP/HTTP in, in-memory storage), sends one search
// through node n1's ingress with a traceparent of its own, and reads that trace back through
// Jaeger's query API (API v3): it must hold spans of all three processes (service.instance.id
// n1, n2, n3): the ingress and scatter spans of the root, and the peers' scatter.serve spans
// (n1 holds s0-s2; s3 is only on n2 and s5 only on n3, so both serve).
func TestJaegerThreeNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("Jaeger and three real hosts")
	}
	start := time.Now()
	jaeger, err := deploytest.Jaeger()
	if err != nil {
		deploytest.Skip(t, "Jaeger all-in-one (tools/jaeger) could not be built: "+err.Error())
	}
	t.Logf("jaeger binary %s (ready after %s)", jaeger, time.Since(start).Round(time.Second))
	bin, err := deploytest.Binary()
	if err != nil {
		t.Fatal(err)
	}
	dir := searchPods(t)
	otlp, query := startJaeger(t, jaeger, dir)

	specs := []string{filepath.Join(dir, "node-1.yaml"), filepath.Join(dir, "node-2.yaml"), filepath.Join(dir, "node-3.yaml")}
	hosts := deploytest.StartCluster(t, bin, deploytest.ClusterConfig{Specs: specs, Dir: dir, Env: []string{
		"OTEL_EXPORTER_OTLP_ENDPOINT=http://" + otlp,
		"OTEL_TRACES_SAMPLER=always_on",
		"OTEL_BSP_SCHEDULE_DELAY=200", // ms: export soon after a span ends
	}})
	root := hosts[0]

	// Wait until n1 routes every shard (gossip has told it where s3-s5 are).
	deadline := time.Now().Add(wait)
	for {
		partial, err := search(root.Ingress, "")
		if err == nil && !partial {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no complete answer from n1 within %s: partial %v, %v", wait, partial, err)
		}
		time.Sleep(300 * time.Millisecond)
	}

	var tid [16]byte
	var sid [8]byte
	rand.Read(tid[:])
	rand.Read(sid[:])
	traceID := hex.EncodeToString(tid[:])
	if partial, err := search(root.Ingress, "00-"+traceID+"-"+hex.EncodeToString(sid[:])+"-01"); err != nil || partial {
		t.Fatalf("traced search: partial %v, %v", partial, err)
	}

	// The trace at Jaeger: spans by node, until every node's are in.
	want := map[string][]string{
		"n1": {"ingress", "scatter", "scatter.attempt", "scatter.merge", "module.call"},
		"n2": {"scatter.serve", "module.call"},
		"n3": {"scatter.serve", "module.call"},
	}
	var got map[string][]string
	deadline = time.Now().Add(wait)
	for {
		got, err = jaegerTrace(query, traceID)
		if err == nil && hasAll(got, want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("trace %s at Jaeger after %s: spans by service.instance.id %v (%v); want at least %v", traceID, wait, got, err, want)
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("trace %s: spans by node %v", traceID, got)
}

// searchPods lays out what examples/search's node files refer to in a directory: the node
// files, wasm/ (the guests built from source) and shards/ (the corpus dealt into 6 shards).
func searchPods(t *testing.T) string {
	t.Helper()
	root, err := deploytest.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "wasm"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, g := range []string{"search-leaf", "search-merge"} {
		wasm, err := deploytest.Guest("plugins/"+g, false)
		if err != nil {
			t.Fatal(err)
		}
		copyFile(t, wasm, filepath.Join(dir, "wasm", g+".wasm"))
	}
	for i := 1; i <= 3; i++ {
		f := fmt.Sprintf("node-%d.yaml", i)
		copyFile(t, filepath.Join(root, "examples", "search", f), filepath.Join(dir, f))
	}
	mkshards, err := deploytest.Command("./examples/search/cmd/mkshards")
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(mkshards, "-n", "6", "-o", filepath.Join(dir, "shards")).CombinedOutput(); err != nil {
		t.Fatalf("mkshards: %v\n%s", err, out)
	}
	return dir
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// jaegerConfig is an all-in-one configuration (Jaeger v2, an OpenTelemetry collector): an
// OTLP/HTTP receiver, in-memory storage, and the query service (HTTP API and its gRPC
// endpoint), all on loopback ports of the test's choosing; no other receiver, no telemetry
// listener of its own.
const jaegerConfig = `service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
extensions:
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 10000
  jaeger_query:
    storage:
      traces: memstore
    http:
      endpoint: %s
    grpc:
      endpoint: %s
receivers:
  otlp:
    protocols:
      http:
        endpoint: %s
processors:
  batch:
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
`

// startJaeger runs Jaeger all-in-one and waits until its query API answers; it returns the
// OTLP/HTTP receiver's and the query API's addresses.
func startJaeger(t *testing.T, bin, dir string) (otlp, query string) {
	t.Helper()
	otlp, query = deploytest.FreeAddr(t), deploytest.FreeAddr(t)
	cfg := filepath.Join(dir, "jaeger.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, jaegerConfig, query, deploytest.FreeAddr(t), otlp), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config", cfg)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out := &deploytest.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("jaeger output:\n%s", out.String())
		}
	})
	deadline := time.Now().Add(wait)
	for {
		resp, err := client.Get("http://" + query + "/api/services")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return otlp, query
			}
		}
		select {
		case <-done:
			t.Fatalf("jaeger exited:\n%s", out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("jaeger's query API not up within %s: %v\n%s", wait, err, out.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// search sends one query to the scatter route at ingress (with traceparent, if not ""); it
// reports whether the answer was partial.
func search(ingress, traceparent string) (partial bool, err error) {
	req, err := http.NewRequest(http.MethodPost, "http://"+ingress+"/search", strings.NewReader("10 gnu general public"))
	if err != nil {
		return false, err
	}
	if traceparent != "" {
		req.Header.Set("traceparent", traceparent)
	}
	resp, err := client.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	return resp.Header.Get("Wasmpod-Partial") == "true", nil
}

// otlpJSON is the part of an OTLP/JSON trace (Jaeger's API v3 answer) the test reads.
type otlpJSON struct {
	Result struct {
		ResourceSpans []struct {
			Resource struct {
				Attributes []struct {
					Key   string `json:"key"`
					Value struct {
						StringValue string `json:"stringValue"`
					} `json:"value"`
				} `json:"attributes"`
			} `json:"resource"`
			ScopeSpans []struct {
				Spans []struct {
					Name string `json:"name"`
				} `json:"spans"`
			} `json:"scopeSpans"`
		} `json:"resourceSpans"`
	} `json:"result"`
}

// jaegerTrace reads trace id from Jaeger's API v3 and returns its span names by the service
// instance (the wasmpod node) that sent them.
func jaegerTrace(query, id string) (map[string][]string, error) {
	resp, err := client.Get("http://" + query + "/api/v3/traces/" + id)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /api/v3/traces/%s: status %d: %.200s", id, resp.StatusCode, b)
	}
	var tr otlpJSON
	if err := json.Unmarshal(b, &tr); err != nil {
		return nil, fmt.Errorf("GET /api/v3/traces/%s: %w: %.200s", id, err, b)
	}
	got := map[string][]string{}
	for _, rs := range tr.Result.ResourceSpans {
		node := "?"
		for _, a := range rs.Resource.Attributes {
			if a.Key == "service.instance.id" {
				node = a.Value.StringValue
			}
		}
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				if !slices.Contains(got[node], s.Name) {
					got[node] = append(got[node], s.Name)
				}
			}
		}
	}
	for _, names := range got {
		sort.Strings(names)
	}
	return got, nil
}

// hasAll reports whether got has every span name of want, per node.
func hasAll(got, want map[string][]string) bool {
	for node, names := range want {
		for _, n := range names {
			if !slices.Contains(got[node], n) {
				return false
			}
		}
	}
	return true
}
