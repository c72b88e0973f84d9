package search_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/cluster/scatter"
	"github.com/wasmpod/wasmpod/internal/wasmbuild"
	"github.com/wasmpod/wasmpod/runtime"
)

// Sources of the corpus: text that every machine of this kind has.
const (
	licenses = "/usr/share/common-licenses"
	docs     = "/usr/share/doc"
	// maxDocPackages bounds how many /usr/share/doc/*/copyright files join the licenses.
	maxDocPackages = 120
	k              = 10
)

var queries = []string{
	"license",
	"warranty",
	"gnu general public",
	"copyright software permission",
	"apache",
	"Free Software Foundation",
	"zzzz-no-such-term-qqqq",
}

// document is one corpus file: its name (as the leaves report it) and where it is.
type document struct{ name, path string }

// corpus lists the documents: every regular file of /usr/share/common-licenses and the
// copyright files of the first maxDocPackages packages of /usr/share/doc, in name order.
func corpus(t *testing.T) []document {
	t.Helper()
	var out []document
	entries, err := os.ReadDir(licenses)
	if err != nil {
		t.Skipf("no corpus on this machine: %v", err)
	}
	for _, e := range entries {
		if e.Type().IsRegular() {
			out = append(out, document{"common-licenses/" + e.Name(), filepath.Join(licenses, e.Name())})
		}
	}
	pkgs, _ := os.ReadDir(docs)
	n := 0
	for _, p := range pkgs {
		path := filepath.Join(docs, p.Name(), "copyright")
		if fi, err := os.Lstat(path); err != nil || !fi.Mode().IsRegular() || n >= maxDocPackages {
			continue
		}
		out = append(out, document{"doc/" + p.Name() + "/copyright", path})
		n++
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	if len(out) < 20 {
		t.Skipf("corpus too small (%d documents)", len(out))
	}
	return out
}

// splitShards copies the documents round-robin into n shard directories, keeping their names
// as relative paths, and returns the directories and each shard's documents.
func splitShards(t *testing.T, docs []document, n int) ([]string, [][]document) {
	t.Helper()
	base := t.TempDir()
	dirs := make([]string, n)
	members := make([][]document, n)
	for i := range dirs {
		dirs[i] = filepath.Join(base, fmt.Sprintf("shard-%d", i))
	}
	for i, d := range docs {
		s := i % n
		data, err := os.ReadFile(d.path)
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(dirs[s], filepath.FromSlash(d.name))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, data, 0o644); err != nil {
			t.Fatal(err)
		}
		members[s] = append(members[s], d)
	}
	return dirs, members
}

// groundTruth answers a query over docs in plain Go, independently of the guests: words are
// split with strings.FieldsFunc on anything but ASCII letters and digits, and lower-cased.
func groundTruth(t *testing.T, docs []document, query string, k int) string {
	t.Helper()
	notWord := func(r rune) bool {
		return !(r < 128 && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'))
	}
	terms := map[string]bool{}
	for _, w := range strings.FieldsFunc(query, notWord) {
		terms[strings.ToLower(w)] = true
	}
	type hit struct {
		name  string
		count int
	}
	var hits []hit
	for _, d := range docs {
		data, err := os.ReadFile(d.path)
		if err != nil {
			t.Fatal(err)
		}
		// Bytes >= 0x80 are separators for the guests; make them so for FieldsFunc too.
		text := strings.Map(func(r rune) rune {
			if r >= 128 {
				return ' '
			}
			return r
		}, strings.ToValidUTF8(string(data), " "))
		n := 0
		for _, w := range strings.FieldsFunc(text, notWord) {
			if terms[strings.ToLower(w)] {
				n++
			}
		}
		if n > 0 {
			hits = append(hits, hit{d.name, n})
		}
	}
	sort.Slice(hits, func(i, j int) bool {
		if hits[i].count != hits[j].count {
			return hits[i].count > hits[j].count
		}
		return hits[i].name < hits[j].name
	})
	var b strings.Builder
	for i := 0; i < len(hits) && i < k; i++ {
		fmt.Fprintf(&b, "%d\t%s\n", hits[i].count, hits[i].name)
	}
	return b.String()
}

func engine(t *testing.T) *runtime.Engine {
	t.Helper()
	cfg := runtime.DefaultConfig()
	cfg.CacheDir = filepath.Join(wasmbuild.CacheDir(), "search-example-cache")
	e, err := runtime.NewEngine(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close(context.Background()) })
	return e
}

func load(t *testing.T, e *runtime.Engine, wasmPath, name, mount string) *runtime.Module {
	t.Helper()
	cfg := runtime.DefaultModuleConfig(name)
	cfg.MaxMemoryPages = 1024
	if mount != "" {
		cfg.Mounts = []runtime.Mount{{HostPath: mount, GuestPath: "/data", ReadOnly: true}}
	}
	m, err := e.LoadFile(context.Background(), wasmPath, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(context.Background(), runtime.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(context.Background()) })
	return m
}

func ask(t *testing.T, g *scatter.Gather, query string) (string, scatter.Result) {
	t.Helper()
	out, res, err := g.Do(context.Background(), []byte(fmt.Sprintf("%d %s", k, query)), nil)
	if err != nil {
		t.Fatalf("query %q: %v", query, err)
	}
	return string(out), res
}

// TestSearchOneNode runs every shard in process through the runtime's pools.
func TestSearchOneNode(t *testing.T) {
	docs := corpus(t)
	leafWasm := wasmbuild.Go(t, "../../plugins/search-leaf")
	mergeWasm := wasmbuild.Go(t, "../../plugins/search-merge")
	e := engine(t)
	for _, n := range []int{1, 5} {
		t.Run(fmt.Sprintf("%d-shards", n), func(t *testing.T) {
			dirs, _ := splitShards(t, docs, n)
			shards := make([]scatter.Shard, n)
			for i, dir := range dirs {
				name := fmt.Sprintf("s%d", i)
				shards[i] = scatter.Shard{Name: name, Replicas: []scatter.Replica{{Leaf: scatter.NewModuleLeaf(load(t, e, leafWasm, fmt.Sprintf("leaf-%d-%d", n, i), dir))}}}
			}
			cfg := scatter.DefaultConfig()
			cfg.Deadline = 30 * time.Second // correctness, not latency: never partial on a slow machine
			g, err := scatter.New(shards, load(t, e, mergeWasm, fmt.Sprintf("merge-%d", n), ""), cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer g.Close()
			for _, q := range queries {
				got, res := ask(t, g, q)
				if res.Partial {
					t.Fatalf("%q: partial, missing %v", q, res.Missing)
				}
				want := groundTruth(t, docs, q, k)
				if want == "" && !strings.HasPrefix(q, "zzzz") {
					t.Fatalf("%q: the ground truth found nothing: the corpus is not what the test expects", q)
				}
				if got != want {
					t.Errorf("%q:\ngot\n%s\nwant\n%s", q, got, want)
				}
			}
		})
	}
}

// peer is one peerd process serving some shards on loopback.
type peer struct {
	cmd  *exec.Cmd
	addr string
	done chan struct{} // closed when the process has exited and been reaped
}

func (p *peer) kill() {
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

var buildPeerd = sync.OnceValues(func() (string, error) {
	root, err := wasmbuild.RepoRoot()
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "peerd")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "peerd")
	cmd := exec.Command("go", "build", "-o", bin, "./cluster/scatter/internal/peerd")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building peerd: %v\n%s", err, out)
	}
	return bin, nil
})

// startPeer runs peerd (the stand-in for a node's internal endpoint) with the given shards.
func startPeer(t *testing.T, leafWasm string, shards map[string]string) *peer {
	t.Helper()
	bin, err := buildPeerd()
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"-leaf", leafWasm, "-cache", filepath.Join(wasmbuild.CacheDir(), "search-example-cache")}
	names := make([]string, 0, len(shards))
	for name := range shards {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		args = append(args, "-shard", name+"="+shards[name])
	}
	p := &peer{cmd: exec.Command(bin, args...), done: make(chan struct{})}
	p.cmd.Stderr = os.Stderr
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	go func() { p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() { p.cmd.Process.Signal(syscall.SIGTERM); <-p.done })
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "LISTEN ")
	if err != nil || !ok {
		p.kill()
		t.Fatalf("peerd: %q %v", line, err)
	}
	p.addr = addr
	return p
}

// TestSearchThreeNodes serves 6 shards from 3 processes on loopback (2 each) and queries them
// from a root in this process; then one process is killed while queries are in flight.
func TestSearchThreeNodes(t *testing.T) {
	docs := corpus(t)
	leafWasm := wasmbuild.Go(t, "../../plugins/search-leaf")
	mergeWasm := wasmbuild.Go(t, "../../plugins/search-merge")
	e := engine(t)
	const nodes, per = 3, 2
	dirs, members := splitShards(t, docs, nodes*per)

	for _, replicated := range []bool{false, true} {
		t.Run(map[bool]string{false: "one-replica", true: "two-replicas"}[replicated], func(t *testing.T) {
			// Node j holds shards j*per..j*per+per-1; with replicas, also those of node j+1.
			holds := func(node, shard int) bool {
				owner := shard / per
				return owner == node || replicated && owner == (node+1)%nodes
			}
			peers := make([]*peer, nodes)
			clients := make([]scatter.Peer, nodes)
			for j := range nodes {
				shardDirs := map[string]string{}
				for s := range dirs {
					if holds(j, s) {
						shardDirs[fmt.Sprintf("s%d", s)] = dirs[s]
					}
				}
				peers[j] = startPeer(t, leafWasm, shardDirs)
				c, err := scatter.NewFastHTTPPeer(peers[j].addr, scatter.DefaultPeerConfig())
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				clients[j] = c
			}
			shards := make([]scatter.Shard, len(dirs))
			for s := range dirs {
				name := fmt.Sprintf("s%d", s)
				shards[s].Name = name
				for j := range nodes {
					// the owner first, then the replica
					if j := (s/per + j) % nodes; holds(j, s) {
						shards[s].Replicas = append(shards[s].Replicas, scatter.Replica{Node: fmt.Sprintf("node%d", j), Leaf: clients[j].Leaf(name)})
					}
				}
			}
			cfg := scatter.DefaultConfig()
			cfg.Deadline = 5 * time.Second // generous: a missing shard here means a dead node, not a slow one
			g, err := scatter.New(shards, load(t, e, mergeWasm, "merge-"+t.Name(), ""), cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer g.Close()
			for _, q := range queries {
				got, res := ask(t, g, q)
				if res.Partial {
					t.Fatalf("%q: partial, missing %v", q, res.Missing)
				}
				if want := groundTruth(t, docs, q, k); got != want {
					t.Errorf("%q:\ngot\n%s\nwant\n%s", q, got, want)
				}
			}

			// Kill node 1 while queries are in flight. Every query returns (partial or not, never
			// a hang); afterwards answers are exact over the shards still reachable.
			var wg sync.WaitGroup
			stop := make(chan struct{})
			for range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						select {
						case <-stop:
							return
						default:
						}
						if _, _, err := g.Do(context.Background(), []byte("10 license"), nil); err != nil {
							t.Errorf("query during the kill: %v", err)
							return
						}
					}
				}()
			}
			peers[1].kill()
			close(stop)
			wg.Wait()

			var lost []string
			var surviving []document
			for s := range dirs {
				if !replicated && s/per == 1 {
					lost = append(lost, fmt.Sprintf("s%d", s))
					continue
				}
				surviving = append(surviving, members[s]...)
			}
			sort.Slice(surviving, func(i, j int) bool { return surviving[i].name < surviving[j].name })
			for _, q := range queries {
				got, res := ask(t, g, q)
				if fmt.Sprint(res.Missing) != fmt.Sprint(lost) || res.Partial != (lost != nil) {
					t.Fatalf("%q after the kill: missing %v, want %v", q, res.Missing, lost)
				}
				if want := groundTruth(t, surviving, q, k); got != want {
					t.Errorf("%q after the kill:\ngot\n%s\nwant\n%s", q, got, want)
				}
			}
			// Gossip marks the node dead: its replicas are not even tried any more.
			g.SetNodeAlive("node1", false)
			if _, res := ask(t, g, "license"); fmt.Sprint(res.Missing) != fmt.Sprint(lost) {
				t.Fatalf("after marking node1 dead: missing %v, want %v", res.Missing, lost)
			}
		})
	}
}
