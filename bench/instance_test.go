package bench

import (
	"bytes"
	"context"
	"os"
	goruntime "runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/internal/wasmbuild"
	"github.com/wasmpod/wasmpod/runtime"
)

// BenchmarkInstance reports what one warm instance costs, with instance images (the default)
// and without (Config.DisableImages) in the same run: the time to create it as part of a
// scale-up burst from 1 to 64 warm instances (instantiate, or map the image; _initialize, ABI
// checks and input buffer unless imaged; start export) and its idle memory: guest linear memory,
// the Go heap the runtime keeps for it (the linear memory of an instance made from an image is
// mapped copy-on-write outside the Go heap), and the resident memory it adds (pages it touched).
// ms/imagebuild is what building the image costs once per load (compiling the image's module,
// cached by CacheDir like any compiled code, and checking one instance).
// Measured for a Go guest (2.7 MB module with the Go runtime inside), C, Rust and AssemblyScript.
func BenchmarkInstance(b *testing.B) {
	for _, g := range []struct {
		name  string
		build func(testing.TB, string) string
		dir   string
	}{
		{"go", wasmbuild.Go, "../plugins/benchleaf"},
		{"c", wasmbuild.C, "../plugins/c-leaf"},
		{"rust", wasmbuild.Rust, "../plugins/rust-leaf"},
		{"as", wasmbuild.AssemblyScript, "../plugins/as-leaf"},
	} {
		for _, mode := range []string{"image", "noimage"} {
			b.Run(g.name+"/"+mode, func(b *testing.B) {
				wasm, err := os.ReadFile(g.build(b, g.dir))
				if err != nil {
					b.Fatal(err)
				}
				cfg := runtime.DefaultConfig()
				cfg.CacheDir = cacheDir("wasmpod")
				cfg.DisableImages = mode == "noimage"
				e, err := runtime.NewEngine(context.Background(), cfg)
				if err != nil {
					b.Fatal(err)
				}
				defer e.Close(context.Background())
				const n = 64 // the burst: 1 -> 64 warm instances
				mc := runtime.DefaultModuleConfig(g.name)
				mc.MaxMemoryPages = 1024
				mc.MaxConcurrency = n
				var total, build time.Duration
				var guestBytes, heapBytes, rssBytes float64
				for b.Loop() {
					m, err := e.Load(context.Background(), wasm, mc)
					if err != nil {
						b.Fatal(err)
					}
					if err := m.Start(context.Background(), runtime.StartOptions{}); err != nil {
						b.Fatal(err)
					}
					if mode == "image" {
						t0 := time.Now()
						m.PrepareImage() // otherwise built in the background at the burst's start
						build += time.Since(t0)
						if !strings.HasPrefix(m.Info().Image, "ready") {
							b.Fatalf("no image: %s", m.Info().Image)
						}
					}
					goruntime.GC()
					var before, after goruntime.MemStats
					goruntime.ReadMemStats(&before)
					rss0 := residentBytes()
					start := time.Now()
					if err := m.Scale(n); err != nil {
						b.Fatal(err)
					}
					for m.Stats().Instances < n {
						time.Sleep(50 * time.Microsecond)
					}
					total += time.Since(start)
					goruntime.GC()
					goruntime.ReadMemStats(&after)
					rss1 := residentBytes()
					s := m.Stats()
					guestBytes = float64(s.MemoryPages) * 65536 / float64(s.Instances)
					heapBytes = (float64(after.HeapInuse) - float64(before.HeapInuse)) / float64(n-1)
					rssBytes = float64(rss1-rss0) / float64(n-1)
					m.Close(context.Background())
				}
				b.ReportMetric(float64(total.Nanoseconds())/float64(b.N*(n-1)), "ns/instantiate")
				b.ReportMetric(float64(total.Nanoseconds())/float64(b.N)/1e6, "ms/burst64")
				b.ReportMetric(float64(build.Nanoseconds())/float64(b.N)/1e6, "ms/imagebuild")
				b.ReportMetric(guestBytes, "guest-B/instance")
				b.ReportMetric(heapBytes, "heap-B/instance")
				b.ReportMetric(rssBytes, "rss-B/instance")
			})
		}
	}
}

// residentBytes is the process's resident set size (Linux; 0 elsewhere).
func residentBytes() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := bytes.Fields(b)
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseInt(string(f[1]), 10, 64)
	return pages * int64(os.Getpagesize())
}
