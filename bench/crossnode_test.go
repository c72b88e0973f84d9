package bench

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/internal/podtest"
	"github.com/wasmpod/wasmpod/internal/wasmbuild"
)

// The cross-node benchmark: 3 real `wasmpod run` processes on loopback, joined into one
// cluster, each running a pod with 16 benchleaf shards (leaf modules) and benchleaf's merge, and
// spec.scatter listing all 48 shards (its own 16 as leaf:, the other 32 as remote: true). One
// node, the root, takes the requests on its ingress: it fans out to its 16 local shards and to
// the 32 on the other two nodes over --scatter-transport, and merges.
const (
	crossNodes     = 3
	crossPerNode   = 16
	crossClients   = 8 // requests in flight at the root
	crossPath      = "/sum"
	crossReadyWait = 2 * time.Minute
)

// crossNodeSpec is the pod of node n (0-based): leaf modules for shards n*16 .. n*16+15, the
// merge, and every shard in spec.scatter. Each shard has one replica (its node); a deadline of 2s
// on a loaded 2-core machine measures latency, not misses.
func crossNodeSpec(wasm string, n int) string {
	var s strings.Builder
	fmt.Fprintf(&s, `apiVersion: wasmpod.dev/v1
kind: Pod
metadata: {name: crossnode}
spec:
  terminationGracePeriodSeconds: 5
  modules:
`)
	for i := n * crossPerNode; i < (n+1)*crossPerNode; i++ {
		fmt.Fprintf(&s, "    - {name: leaf-s%d, role: leaf, wasm: %s, resources: {memory: 32Mi, concurrency: 2}}\n", i, wasm)
	}
	fmt.Fprintf(&s, `    - {name: merge, role: merge, wasm: %s, resources: {memory: 32Mi, concurrency: 4}}
  scatter:
    path: %s
    merge: merge
    replicas: 1
    deadline: 2s
    shards:
`, wasm, crossPath)
	for i := range crossNodes * crossPerNode {
		if i/crossPerNode == n {
			fmt.Fprintf(&s, "      - {name: s%d, leaf: leaf-s%d}\n", i, i)
		} else {
			fmt.Fprintf(&s, "      - {name: s%d, remote: true}\n", i)
		}
	}
	return s.String()
}

// crossHost is one wasmpod process of the cluster.
type crossHost struct {
	name    string
	ingress string
	cmd     *exec.Cmd
	done    chan struct{} // closed once the process has been reaped
	log     lockedBuf
}

// crossCluster is the 3 processes of one sub-benchmark. It outlives the sub-benchmark's runs
// (b.N = 1, then the real N), so it is started once and stopped by its caller.
type crossCluster struct {
	dir      string
	hosts    []*crossHost
	internal []int // the nodes' internal (scatter endpoint) ports
}

func crossFreePort(b *testing.B) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// start runs the 3 nodes with transport: node-1 first (the gossip seed), the others joining it.
func (c *crossCluster) start(b *testing.B, bin, wasm, transport string, secure bool) {
	dir, err := os.MkdirTemp("", "crossnode")
	if err != nil {
		b.Fatal(err)
	}
	c.dir = dir
	seed := crossFreePort(b)
	for n := range crossNodes {
		name := fmt.Sprintf("node-%d", n+1)
		spec := filepath.Join(dir, name+".yaml")
		if err := os.WriteFile(spec, []byte(crossNodeSpec(wasm, n)), 0o644); err != nil {
			b.Fatal(err)
		}
		gossip := seed
		if n > 0 {
			gossip = crossFreePort(b)
		}
		h := &crossHost{name: name, ingress: fmt.Sprintf("127.0.0.1:%d", crossFreePort(b)), done: make(chan struct{})}
		internal := crossFreePort(b)
		c.internal = append(c.internal, internal)
		args := []string{"run", spec, "--node-name", name, "--listen", h.ingress,
			"--admin", fmt.Sprintf("127.0.0.1:%d", crossFreePort(b)),
			"--state-dir", filepath.Join(dir, "state-"+name),
			"--bind", fmt.Sprintf("127.0.0.1:%d", gossip),
			"--raft-addr", fmt.Sprintf("127.0.0.1:%d", crossFreePort(b)),
			"--internal", fmt.Sprintf("127.0.0.1:%d", internal),
			"--scatter-transport", transport, "--log-level", "warn"}
		if secure { // mutual TLS between the nodes, derived from the gossip key
			args = append(args, "--gossip-key-file", podtest.GossipKeyFile(b))
		} else {
			args = append(args, "--insecure-cluster")
		}
		if n > 0 {
			args = append(args, "--join", fmt.Sprintf("127.0.0.1:%d", seed))
		}
		h.cmd = exec.Command(bin, args...)
		h.cmd.Stdout, h.cmd.Stderr = &h.log, &h.log
		if err := h.cmd.Start(); err != nil {
			b.Fatal(err)
		}
		go func() { h.cmd.Wait(); close(h.done) }()
		c.hosts = append(c.hosts, h)
	}
}

// stop ends the processes (SIGTERM, SIGKILL after 20s) and removes their directory; with
// failed it prints their logs.
func (c *crossCluster) stop(b *testing.B, failed bool) {
	for _, h := range c.hosts {
		h.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, h := range c.hosts {
		select {
		case <-h.done:
		case <-time.After(20 * time.Second):
			h.cmd.Process.Kill()
			<-h.done
		}
		if failed {
			b.Logf("%s log:\n%s", h.name, h.log.String())
		}
	}
	if c.dir != "" {
		os.RemoveAll(c.dir)
	}
}

// crossAnswer is one answer of a root's scatter route.
type crossAnswer struct {
	sum     uint64
	partial bool
}

func crossQuery(client *http.Client, h *crossHost, in []byte) (crossAnswer, error) {
	resp, err := client.Post("http://"+h.ingress+crossPath, "application/octet-stream", bytes.NewReader(in))
	if err != nil {
		return crossAnswer{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return crossAnswer{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return crossAnswer{}, fmt.Errorf("status %d: %s", resp.StatusCode, body)
	}
	if len(body) != 8 {
		return crossAnswer{}, fmt.Errorf("answer of %d bytes, want 8: %q", len(body), body)
	}
	return crossAnswer{sum: binary.LittleEndian.Uint64(body), partial: resp.Header.Get("Wasmpod-Partial") == "true"}, nil
}

// waitComplete polls every node until its answer is complete and exact: each node routes all
// 48 shards (its own and, by gossip, the other nodes').
func (c *crossCluster) waitComplete(b *testing.B, client *http.Client, want uint64) {
	deadline := time.Now().Add(crossReadyWait)
	for _, h := range c.hosts {
		for {
			a, err := crossQuery(client, h, input1K)
			if err == nil && !a.partial {
				if a.sum != want {
					b.Fatalf("%s: sum %d, want %d", h.name, a.sum, want)
				}
				break
			}
			select {
			case <-h.done:
				b.Fatalf("%s exited", h.name)
			default:
			}
			if time.Now().After(deadline) {
				b.Fatalf("%s: no complete answer within %s: %+v, %v", h.name, crossReadyWait, a, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
}

// BenchmarkCrossNode measures the scatter route of a root that fans out to 48 shards: 16 local,
// 32 on two other wasmpod processes on loopback (see crossNodeSpec), with crossClients
// requests in flight over HTTP to the root's ingress, once per inter-node transport
// (--scatter-transport fasthttp and nethttp), both over mutual TLS between the nodes (the
// default with a gossip key). ns/op is wall time per request at that concurrency; req/s, p50
// and p99 latency (client-side, µs) and the share of partial answers (which should be 0) are
// reported as metrics.
//
// mtls-vs-plain runs two clusters at once, one with TLS and one in the clear
// (--insecure-cluster), both fasthttp, and sends every client's requests to them in turn: the
// two see the same machine at the same moments, so a loaded machine's bursts do not land on
// one side. It reports each side's p50 and p99 (tls-/plain-) and req/s of the pair.
//
//	go test -run '^$' -bench CrossNode -benchtime 200x ./bench/
func BenchmarkCrossNode(b *testing.B) {
	root, err := wasmbuild.RepoRoot()
	if err != nil {
		b.Fatal(err)
	}
	bin := filepath.Join(b.TempDir(), "wasmpod")
	if out, err := exec.Command("go", "build", "-o", bin, filepath.Join(root, "host/cmd/wasmpod")).CombinedOutput(); err != nil {
		b.Skipf("cannot build the wasmpod binary, skipping the cross-node benchmark: %v\n%s", err, out)
	}
	wasm := wasmbuild.Go(b, filepath.Join(root, "plugins/benchleaf"))
	want := uint64(crossNodes*crossPerNode) * sumOf(input1K)
	client := &http.Client{
		Timeout:   15 * time.Second, // a request that does not return within it is a hang
		Transport: &http.Transport{MaxIdleConnsPerHost: 2 * crossClients},
	}
	defer client.CloseIdleConnections()
	// ready starts cs (once) and warms them: connections between the nodes and the modules'
	// pools.
	ready := func(b *testing.B, cs []*crossCluster, transports []string, secure []bool) {
		var started []*crossCluster
		for i, c := range cs {
			if c.hosts != nil {
				continue
			}
			c.start(b, bin, wasm, transports[i], secure[i])
			c.waitComplete(b, client, want)
			started = append(started, c)
		}
		if len(started) == 0 {
			return
		}
		// crossClients at once, as measured: the pools between the nodes grow to what the
		// load needs (a TLS handshake per new connection) before the timer starts.
		warm := func() {
			for _, c := range started {
				var wg sync.WaitGroup
				errs := make(chan error, crossClients)
				for range crossClients {
					wg.Go(func() {
						for range 40 {
							if _, err := crossQuery(client, c.hosts[0], input1K); err != nil {
								errs <- err
								return
							}
						}
					})
				}
				wg.Wait()
				close(errs)
				if err := <-errs; err != nil {
					b.Fatal(err)
				}
			}
		}
		warm()
		// The first time a module needs a second instance (the warm-up's concurrent load) its
		// host builds the module's instance image in the background: a compile, seconds of CPU
		// here. Measured while that runs, a cluster looked 2-3x slower than it is once warm;
		// wait for it to finish, then warm again (the wait may idle out pooled connections).
		crossQuiet(b, started...)
		warm()
	}
	for _, transport := range []string{"fasthttp", "nethttp"} {
		c := &crossCluster{}
		ok := b.Run(transport, func(b *testing.B) {
			ready(b, []*crossCluster{c}, []string{transport}, []bool{true})
			lat, elapsed, partial := crossLoad(b, client, []*crossHost{c.hosts[0]}, want)
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
			b.ReportMetric(float64(pct(lat[0], 50).Microseconds()), "p50-us")
			b.ReportMetric(float64(pct(lat[0], 99).Microseconds()), "p99-us")
			b.ReportMetric(float64(partial)/float64(b.N), "partial/op")
		})
		c.stop(b, !ok)
	}
	tlsC, plainC := &crossCluster{}, &crossCluster{}
	ok := b.Run("mtls-vs-plain", func(b *testing.B) {
		ready(b, []*crossCluster{tlsC, plainC}, []string{"fasthttp", "fasthttp"}, []bool{true, false})
		// Both clusters warm at once, as measured: the first one started sat idle while the
		// second compiled its modules, and its first requests after that ran cold (GC, shrunk
		// stacks), which counted against whichever side was started first.
		crossWarm(b, client, []*crossHost{tlsC.hosts[0], plainC.hosts[0]}, 400)
		tlsCPU0, plainCPU0 := tlsC.cpu(), plainC.cpu()
		tlsConns0, plainConns0 := tlsC.peerConns(), plainC.peerConns()
		lat, elapsed, partial := crossLoad(b, client, []*crossHost{tlsC.hosts[0], plainC.hosts[0]}, want)
		b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
		b.ReportMetric(float64(pct(lat[0], 50).Microseconds()), "tls-p50-us")
		b.ReportMetric(float64(pct(lat[0], 99).Microseconds()), "tls-p99-us")
		b.ReportMetric(float64(pct(lat[1], 50).Microseconds()), "plain-p50-us")
		b.ReportMetric(float64(pct(lat[1], 99).Microseconds()), "plain-p99-us")
		// CPU time (user + system) of each cluster's three processes per request it served.
		half := float64(b.N) / 2
		b.ReportMetric(float64((tlsC.cpu()-tlsCPU0).Microseconds())/half, "tls-cpu-us/req")
		b.ReportMetric(float64((plainC.cpu()-plainCPU0).Microseconds())/half, "plain-cpu-us/req")
		b.ReportMetric(float64(partial)/float64(b.N), "partial/op")
		// Connections between the nodes dialled while timed (each a TLS handshake on the
		// TLS side): 0 when the pools warmed up to what the load needs.
		if len(tlsConns0) == 0 || len(plainConns0) == 0 {
			b.Fatalf("no connections between the nodes found in /proc/net/tcp (tls %d, plain %d)", len(tlsConns0), len(plainConns0))
		}
		b.ReportMetric(float64(newConns(tlsConns0, tlsC.peerConns())), "tls-dials")
		b.ReportMetric(float64(newConns(plainConns0, plainC.peerConns())), "plain-dials")
	})
	tlsC.stop(b, !ok)
	plainC.stop(b, !ok)
}

// cpu is the CPU time (user + system) the cluster's processes have used so far, from
// /proc/PID/stat (0 where it cannot be read).
func (c *crossCluster) cpu() time.Duration {
	var total time.Duration
	for _, h := range c.hosts {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", h.cmd.Process.Pid))
		if err != nil {
			continue
		}
		// Fields after the command name (which may hold spaces) start after the last ')'.
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(f) < 13 {
			continue
		}
		ut, _ := strconv.ParseInt(f[11], 10, 64)          // utime, field 14
		st, _ := strconv.ParseInt(f[12], 10, 64)          // stime, field 15
		total += time.Duration(ut+st) * time.Second / 100 // USER_HZ is 100 on Linux
	}
	return total
}

// peerConns is the set of established connections to the cluster's scatter endpoints, by the
// dialling side's port (from /proc/net/tcp; loopback, IPv4). Connections in the set after a
// run that were not in it before were dialled during the run: a TLS handshake each.
func (c *crossCluster) peerConns() map[int]bool {
	data, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return nil
	}
	out := map[int]bool{}
	for _, line := range strings.Split(string(data), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 4 || f[3] != "01" { // 01: ESTABLISHED
			continue
		}
		port := func(a string) int {
			i := strings.LastIndexByte(a, ':')
			v, _ := strconv.ParseInt(a[i+1:], 16, 32)
			return int(v)
		}
		if slices.Contains(c.internal, port(f[2])) { // remote end is an endpoint: f[1] dialled
			out[port(f[1])] = true
		}
	}
	return out
}

// crossWarm sends n requests, alternating between roots, crossClients at a time (untimed).
func crossWarm(b *testing.B, client *http.Client, roots []*crossHost, n int) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range crossClients {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				if _, err := crossQuery(client, roots[i%len(roots)], input1K); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if b.Failed() {
		b.FailNow()
	}
}

// crossQuiet waits until the clusters' processes together use under 15 % of one CPU over a
// second (their idle chatter, gossip and Raft heartbeats, is a few %; an instance-image
// compile is a second or more of CPU), at most 30 s.
func crossQuiet(b *testing.B, cs ...*crossCluster) {
	cpu := func() time.Duration {
		var t time.Duration
		for _, c := range cs {
			t += c.cpu()
		}
		return t
	}
	deadline := time.Now().Add(30 * time.Second)
	prev := cpu()
	for time.Now().Before(deadline) {
		time.Sleep(time.Second)
		now := cpu()
		if now-prev < 150*time.Millisecond {
			return
		}
		prev = now
	}
	b.Logf("clusters still busy after 30 s (%v of CPU in the last second); measuring anyway", cpu()-prev)
}

// newConns counts the connections in after that were not in before.
func newConns(before, after map[int]bool) int {
	n := 0
	for p := range after {
		if !before[p] {
			n++
		}
	}
	return n
}

// pct is the p-th percentile of sorted latencies.
func pct(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, len(sorted)*p/100)]
}

// crossLoad sends b.N requests from crossClients clients, request i to roots[i % len(roots)],
// and returns each root's sorted latencies, the wall time and the partial answers.
func crossLoad(b *testing.B, client *http.Client, roots []*crossHost, want uint64) ([][]time.Duration, time.Duration, int64) {
	lat := make([]time.Duration, b.N)
	var next, partial atomic.Int64
	var errMu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for range crossClients {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= b.N {
					return
				}
				t0 := time.Now()
				a, err := crossQuery(client, roots[i%len(roots)], input1K)
				lat[i] = time.Since(t0)
				if err == nil && !a.partial && a.sum != want {
					err = fmt.Errorf("sum %d, want %d", a.sum, want)
				}
				if err != nil {
					errMu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					errMu.Unlock()
					continue
				}
				if a.partial {
					partial.Add(1)
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if firstErr != nil {
		b.Fatalf("a request failed: %v", firstErr)
	}
	per := make([][]time.Duration, len(roots))
	for i, d := range lat {
		per[i%len(roots)] = append(per[i%len(roots)], d)
	}
	for _, l := range per {
		slices.Sort(l)
	}
	return per, elapsed, partial.Load()
}

func sumOf(b []byte) uint64 {
	var s uint64
	for _, c := range b {
		s += uint64(c)
	}
	return s
}
