package search_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/examples/search"
	"github.com/wasmpod/wasmpod/internal/podtest"
	"github.com/wasmpod/wasmpod/internal/wasmbuild"
)

// The tests below run the example's own pod files with the real wasmpod binary: pod.yaml on one
// node, node-{1,2,3}.yaml as a 3-node cluster on loopback (shards s0..s5; node-1 holds s0 s1 s2,
// node-2 s2 s3 s4, node-3 s4 s5 s0, so only s1, s3 and s5 have a single replica).

const podShards = 6

// podDir lays out what the pod files refer to in a temporary directory: the pod files, wasm/
// (the guests built from source) and shards/ (the corpus dealt into podShards shards). It
// returns the directory and the documents of each shard.
func podDir(t *testing.T) (string, [][]search.Document) {
	t.Helper()
	docs, err := search.Corpus()
	if err != nil || len(docs) < 20 {
		t.Skipf("no corpus on this machine (%d documents): %v", len(docs), err)
	}
	dir := t.TempDir()
	members, err := search.WriteShards(filepath.Join(dir, "shards"), docs, podShards)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "wasm"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, g := range []string{"search-leaf", "search-merge"} {
		copyFile(t, wasmbuild.Go(t, "../../plugins/"+g), filepath.Join(dir, "wasm", g+".wasm"))
	}
	for _, f := range []string{"pod.yaml", "node-1.yaml", "node-2.yaml", "node-3.yaml"} {
		copyFile(t, f, filepath.Join(dir, f))
	}
	return dir, members
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

// host is one wasmpod process.
type host struct {
	name          string
	ingress, adm  string
	cmd           *exec.Cmd
	done          chan struct{} // closed once the process has exited and been reaped
	log           *bytes.Buffer // guarded by logMu
	logMu         sync.Mutex
	gossip, inter int
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// startHost runs `wasmpod run spec` on loopback; join is a gossip port to join, or 0.
func startHost(t *testing.T, dir, spec, name string, gossip, join int) *host {
	t.Helper()
	h := &host{name: name, ingress: fmt.Sprintf("127.0.0.1:%d", podtest.FreePort(t)), adm: fmt.Sprintf("127.0.0.1:%d", podtest.FreePort(t)),
		done: make(chan struct{}), log: new(bytes.Buffer), gossip: gossip}
	args := []string{"run", filepath.Join(dir, spec), "--listen", h.ingress, "--admin", h.adm,
		"--state-dir", filepath.Join(dir, "state-"+name), "--node-name", name}
	if gossip != 0 {
		h.inter = podtest.FreePort(t)
		args = append(args, "--bind", fmt.Sprintf("127.0.0.1:%d", gossip), "--raft-addr", fmt.Sprintf("127.0.0.1:%d", podtest.FreePort(t)),
			"--internal", fmt.Sprintf("127.0.0.1:%d", h.inter), "--gossip-key-file", podtest.GossipKeyFile(t))
	}
	if join != 0 {
		args = append(args, "--join", fmt.Sprintf("127.0.0.1:%d", join))
	}
	h.cmd = exec.Command(podtest.Binary(t), args...)
	h.cmd.Stdout = lockedWriter{&h.logMu, h.log}
	h.cmd.Stderr = lockedWriter{&h.logMu, h.log}
	if err := h.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { h.cmd.Wait(); close(h.done) }()
	t.Cleanup(func() {
		h.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-h.done:
		case <-time.After(20 * time.Second):
			h.cmd.Process.Kill()
			<-h.done
			t.Errorf("%s did not stop within 20s of SIGTERM", name)
		}
		if t.Failed() {
			h.logMu.Lock()
			t.Logf("%s log:\n%s", name, h.log.String())
			h.logMu.Unlock()
		}
	})
	return h
}

func (h *host) kill() {
	h.cmd.Process.Signal(syscall.SIGKILL)
	<-h.done
}

// answer is one response of the scatter route.
type answer struct {
	status  int
	body    string
	partial bool
	missing []string
}

// client bounds every request: a request that does not return within it is a hang.
var client = &http.Client{Timeout: 15 * time.Second}

func (h *host) search(query string) (answer, error) {
	resp, err := client.Post("http://"+h.ingress+"/search", "text/plain", strings.NewReader(fmt.Sprintf("%d %s", k, query)))
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return answer{}, err
	}
	a := answer{status: resp.StatusCode, body: string(b), partial: resp.Header.Get("Wasmpod-Partial") == "true"}
	if m := resp.Header.Get("Wasmpod-Missing-Shards"); m != "" {
		a.missing = strings.Split(m, ",")
	}
	if a.status != http.StatusOK {
		return a, fmt.Errorf("status %d: %s", a.status, b)
	}
	if a.partial != (len(a.missing) > 0) {
		return a, fmt.Errorf("header Wasmpod-Partial %v but missing shards %v", a.partial, a.missing)
	}
	return a, nil
}

// waitComplete polls h until an answer is complete (every shard routed), or fails the test.
func waitComplete(t *testing.T, h *host) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var last answer
	var err error
	for time.Now().Before(deadline) {
		if last, err = h.search("license"); err == nil && !last.partial {
			return
		}
		select {
		case <-h.done:
			t.Fatalf("%s exited", h.name)
		case <-time.After(200 * time.Millisecond):
		}
	}
	t.Fatalf("%s: no complete answer within 60s: last %+v, %v", h.name, last, err)
}

var (
	truthMu    sync.Mutex
	truthCache = map[string]string{}
)

// truth is the ground truth over the shards not in missing (memoized: the kill test checks
// thousands of answers to a few queries).
func truth(t *testing.T, members [][]search.Document, missing []string, query string) string {
	t.Helper()
	key := fmt.Sprint(len(members), missing, query)
	truthMu.Lock()
	defer truthMu.Unlock()
	if s, ok := truthCache[key]; ok {
		return s
	}
	var docs []document
	for i, m := range members {
		if slices.Contains(missing, search.ShardName(i)) {
			continue
		}
		for _, d := range m {
			docs = append(docs, document{d.Name, d.Path})
		}
	}
	truthCache[key] = groundTruth(t, docs, query, k)
	return truthCache[key]
}

// checkQueries compares every query's answer on h with the ground truth; a partial answer (a
// shard past the deadline on a loaded machine) is retried a few times.
func checkQueries(t *testing.T, h *host, members [][]search.Document) {
	t.Helper()
	for _, q := range queries {
		var a answer
		var err error
		for range 5 {
			if a, err = h.search(q); err != nil || !a.partial {
				break
			}
		}
		if err != nil {
			t.Fatalf("%s %q: %v", h.name, q, err)
		}
		if a.partial {
			t.Fatalf("%s %q: still partial after 5 tries, missing %v", h.name, q, a.missing)
		}
		if want := truth(t, members, nil, q); a.body != want {
			t.Errorf("%s %q:\ngot\n%s\nwant\n%s", h.name, q, a.body, want)
		}
	}
}

// TestPodOneNode runs pod.yaml (every shard local) and checks each query with the ground truth.
func TestPodOneNode(t *testing.T) {
	dir, members := podDir(t)
	h := startHost(t, dir, "pod.yaml", "solo", 0, 0)
	waitComplete(t, h)
	checkQueries(t, h, members)
	// Not POST: refused, and the main-module route is not involved.
	resp, err := client.Get("http://" + h.ingress + "/search")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET /search: %d, want 405", resp.StatusCode)
	}
}

// TestPodThreeNodes runs node-{1,2,3}.yaml as a cluster on loopback, checks the answers of two
// roots with the ground truth, then SIGKILLs node-3 while 4 clients keep querying node-1:
// every query returns (the client's timeout is the hang detector), no answer lacks a shard
// that has a live replica, each is exact over the shards it has, and once gossip marks node-3
// dead the answers name exactly s5 (its only single-replica shard) as missing.
func TestPodThreeNodes(t *testing.T) {
	dir, members := podDir(t)
	g1 := podtest.FreePort(t)
	hosts := []*host{startHost(t, dir, "node-1.yaml", "node-1", g1, 0)}
	for i := 2; i <= 3; i++ {
		hosts = append(hosts, startHost(t, dir, fmt.Sprintf("node-%d.yaml", i), fmt.Sprintf("node-%d", i), podtest.FreePort(t), g1))
	}
	for _, h := range hosts[:2] {
		waitComplete(t, h)
		checkQueries(t, h, members)
	}

	root := hosts[0]
	stop := make(chan struct{})
	var (
		mu       sync.Mutex
		answers  []answer
		queryErr error
		wg       sync.WaitGroup
	)
	for c := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := c; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				q := queries[i%len(queries)]
				a, err := root.search(q)
				mu.Lock()
				if err != nil && queryErr == nil {
					queryErr = fmt.Errorf("%q: %w", q, err)
				}
				a.body = q + "\x00" + a.body
				answers = append(answers, a)
				mu.Unlock()
			}
		}()
	}
	time.Sleep(300 * time.Millisecond) // some queries before the kill
	hosts[2].kill()
	waitMemberDead(t, root, "node-3")
	time.Sleep(300 * time.Millisecond) // and some after gossip marked it dead
	close(stop)
	wg.Wait()
	if queryErr != nil {
		t.Fatalf("a query failed: %v", queryErr)
	}
	partial := 0
	for _, a := range answers {
		q, body, _ := strings.Cut(a.body, "\x00")
		for _, m := range a.missing {
			if m != "s5" {
				t.Fatalf("%q: missing %v, but only s5 has no live replica", q, a.missing)
			}
		}
		if a.partial {
			partial++
		}
		if want := truth(t, members, a.missing, q); body != want {
			t.Fatalf("%q (missing %v):\ngot\n%s\nwant\n%s", q, a.missing, body, want)
		}
	}
	if partial == 0 {
		t.Fatalf("%d answers, none partial after node-3 was killed", len(answers))
	}
	t.Logf("%d answers during the kill, %d partial", len(answers), partial)
	// Now that gossip says node-3 is dead: s5 and only s5 is missing, every time.
	for _, q := range queries {
		a, err := root.search(q)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(a.missing, []string{"s5"}) {
			t.Fatalf("%q after node-3 died: missing %v, want [s5]", q, a.missing)
		}
		if want := truth(t, members, a.missing, q); a.body != want {
			t.Errorf("%q:\ngot\n%s\nwant\n%s", q, a.body, want)
		}
	}
}

// waitMemberDead polls h's admin API until it lists member as dead.
func waitMemberDead(t *testing.T, h *host, member string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := client.Get("http://" + h.adm + "/v1/members")
		if err == nil {
			var ms []struct{ Name, State string }
			json.NewDecoder(resp.Body).Decode(&ms) // a bad answer lists nobody: poll again
			resp.Body.Close()
			for _, m := range ms {
				if m.Name == member && m.State != "alive" {
					return
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s still alive for %s after 30s", member, h.name)
}
