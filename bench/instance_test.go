package bench

import (
	"context"
	"os"
	goruntime "runtime"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/internal/wasmbuild"
	"github.com/wasmpod/wasmpod/runtime"
)

// BenchmarkInstance reports what one warm instance costs: the time to create it (instantiate,
// _initialize, ABI checks, start export) and its idle memory (guest linear memory plus the Go
// heap the runtime keeps for it). Measured for a Go guest (a 2.7 MB module with the Go runtime
// inside) and a C guest (12 KB).
func BenchmarkInstance(b *testing.B) {
	for _, g := range []struct {
		name  string
		build func(testing.TB, string) string
		dir   string
	}{
		{"go", wasmbuild.Go, "../plugins/benchleaf"},
		{"c", wasmbuild.C, "../plugins/c-leaf"},
	} {
		b.Run(g.name, func(b *testing.B) {
			wasm, err := os.ReadFile(g.build(b, g.dir))
			if err != nil {
				b.Fatal(err)
			}
			cfg := runtime.DefaultConfig()
			cfg.CacheDir = cacheDir("wasmpod")
			e, err := runtime.NewEngine(context.Background(), cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer e.Close(context.Background())
			const n = 32
			mc := runtime.DefaultModuleConfig(g.name)
			mc.MaxMemoryPages = 1024
			mc.MaxConcurrency = n
			var total time.Duration
			var guestBytes, heapBytes float64
			for b.Loop() {
				m, err := e.Load(context.Background(), wasm, mc)
				if err != nil {
					b.Fatal(err)
				}
				if err := m.Start(context.Background(), runtime.StartOptions{}); err != nil {
					b.Fatal(err)
				}
				goruntime.GC()
				var before, after goruntime.MemStats
				goruntime.ReadMemStats(&before)
				start := time.Now()
				if err := m.Scale(n); err != nil {
					b.Fatal(err)
				}
				for m.Stats().Instances < n {
					time.Sleep(100 * time.Microsecond)
				}
				total += time.Since(start)
				goruntime.GC()
				goruntime.ReadMemStats(&after)
				s := m.Stats()
				guestBytes = float64(s.MemoryPages) * 65536 / float64(s.Instances)
				heapBytes = (float64(after.HeapInuse) - float64(before.HeapInuse)) / float64(n-1)
				m.Close(context.Background())
			}
			b.ReportMetric(float64(total.Nanoseconds())/float64(b.N*(n-1)), "ns/instantiate")
			b.ReportMetric(guestBytes, "guest-B/instance")
			b.ReportMetric(heapBytes, "heap-B/instance")
		})
	}
}
