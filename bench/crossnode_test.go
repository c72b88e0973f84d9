package bench

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/cluster/scatter"
	"github.com/wasmpod/wasmpod/internal/wasmbuild"
	"github.com/wasmpod/wasmpod/runtime"
)

// crossNodeClients is how many requests the root keeps in flight.
const crossNodeClients = 8

// startPeers builds cluster/scatter/internal/peerd (a stand-in for the host's internal
// endpoint) and runs n of them on loopback, each serving shardsPer benchleaf shards over
// transport. It returns their addresses; the processes are stopped at cleanup.
func startPeers(b *testing.B, leafWasm, transport string, n, shardsPer int) []string {
	root, err := wasmbuild.RepoRoot()
	if err != nil {
		b.Fatal(err)
	}
	bin := filepath.Join(b.TempDir(), "peerd")
	build := exec.Command("go", "build", "-o", bin, "./cluster/scatter/internal/peerd")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("building peerd: %v\n%s", err, out)
	}
	var addrs []string
	for p := range n {
		args := []string{"-leaf", leafWasm, "-transport", transport, "-cache", cacheDir("wasmpod"), "-concurrency", "2"}
		for s := range shardsPer {
			args = append(args, "-shard", fmt.Sprintf("s%d", p*shardsPer+s))
		}
		cmd := exec.Command(bin, args...)
		cmd.Stderr = os.Stderr
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			b.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() })
		line, err := bufio.NewReader(stdout).ReadString('\n')
		addr, ok := strings.CutPrefix(strings.TrimSpace(line), "LISTEN ")
		if err != nil || !ok {
			b.Fatalf("peerd %d: %q %v", p, line, err)
		}
		addrs = append(addrs, addr)
	}
	return addrs
}

// BenchmarkCrossNode measures a root fanning out to 48 shards served by 3 peer processes on
// loopback (16 each) and merging locally, with crossNodeClients requests in flight, over the
// fasthttp transport and over net/http. ns/op is wall time per request at that concurrency;
// req/s, p50 and p99 latency are reported as metrics.
func BenchmarkCrossNode(b *testing.B) {
	leaf := wasmbuild.Go(b, "../plugins/benchleaf")
	wasm, err := os.ReadFile(leaf)
	if err != nil {
		b.Fatal(err)
	}
	const nodes, per = 3, 16
	want := uint64(nodes*per) * sumOf(input1K)
	for _, transport := range []string{"fasthttp", "nethttp"} {
		b.Run(transport, func(b *testing.B) {
			addrs := startPeers(b, leaf, transport, nodes, per)
			ctx := context.Background()
			ecfg := runtime.DefaultConfig()
			ecfg.CacheDir = cacheDir("wasmpod")
			e, err := runtime.NewEngine(ctx, ecfg)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { e.Close(ctx) })
			merge := loadWasmpod(b, e, wasm, false)
			newPeer := scatter.NewFastHTTPPeer
			if transport == "nethttp" {
				newPeer = scatter.NewNetHTTPPeer
			}
			var shards []scatter.Shard
			for p, addr := range addrs {
				peer, err := newPeer(addr, scatter.DefaultPeerConfig())
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { peer.Close() })
				for s := range per {
					name := fmt.Sprintf("s%d", p*per+s)
					shards = append(shards, scatter.Shard{Name: name, Replicas: []scatter.Replica{{Node: addr, Leaf: peer.Leaf(name)}}})
				}
			}
			cfg := scatter.DefaultConfig()
			cfg.Deadline = 2 * time.Second // a loaded 2-core machine: measure latency, not misses
			g, err := scatter.New(shards, merge, cfg)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { g.Close() })
			// Warm the connections and the modules.
			for range 50 {
				if _, _, err := g.Do(ctx, input1K, nil); err != nil {
					b.Fatal(err)
				}
			}
			lat := make([]time.Duration, b.N)
			var next atomic.Int64
			var partial, failed, hedges atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			start := time.Now()
			for range crossNodeClients {
				wg.Add(1)
				go func() {
					defer wg.Done()
					dst := make([]byte, 0, 8)
					for {
						i := int(next.Add(1)) - 1
						if i >= b.N {
							return
						}
						t0 := time.Now()
						out, res, err := g.Do(ctx, input1K, dst[:0])
						lat[i] = time.Since(t0)
						hedges.Add(int64(res.Hedges))
						switch {
						case err != nil:
							failed.Add(1)
						case res.Partial:
							partial.Add(1)
						case binary.LittleEndian.Uint64(out) != want:
							failed.Add(1)
						}
					}
				}()
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			if f := failed.Load(); f > 0 {
				b.Fatalf("%d requests failed", f)
			}
			slices.Sort(lat)
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-us")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-us")
			b.ReportMetric(float64(partial.Load())/float64(b.N), "partial/op")
			b.ReportMetric(float64(hedges.Load())/float64(b.N), "hedges/op")
		})
	}
}

func sumOf(b []byte) uint64 {
	var s uint64
	for _, c := range b {
		s += uint64(c)
	}
	return s
}
