package bench

import (
	"context"
	"encoding/binary"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/wasmpod/wasmpod/internal/podtest"
	"github.com/wasmpod/wasmpod/internal/spans"
	"github.com/wasmpod/wasmpod/internal/wasmbuild"
)

// otlpSink is a local OTLP/HTTP trace receiver that accepts every export and counts them: it
// does not decode them, so that its own work (in this process) does not weigh on the fan-out
// measured beside it.
type otlpSink struct {
	url            string
	exports, bytes atomic.Int64
}

func newOTLPSink(b *testing.B) *otlpSink {
	s := &otlpSink{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		s.exports.Add(1)
		s.bytes.Add(n)
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	b.Cleanup(srv.Close)
	s.url = srv.URL
	return s
}

// installTracing installs, for b's duration, the pipeline the host builds from the OTEL_*
// variables (host/internal/tracing): a batch span processor exporting over OTLP/HTTP to sink,
// with sampler.
func installTracing(b *testing.B, sink *otlpSink, sampler sdktrace.Sampler) {
	exp, err := otlptracehttp.New(context.Background(), otlptracehttp.WithEndpointURL(sink.url+"/v1/traces"))
	if err != nil {
		b.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithSampler(sampler))
	restore := spans.Install(tp)
	b.Cleanup(func() {
		restore()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := tp.Shutdown(ctx); err != nil {
			b.Errorf("flushing spans: %v", err)
		}
	})
}

// BenchmarkTracing measures what OpenTelemetry tracing costs (issue 16: off is free, 1 %
// sampling at most 5 % slower), in one run:
//
//   - fanout-64/{off,sampled-1pct,sampled-100pct}: one scatter.Gather request over 64 local
//     shards (as BenchmarkFanout/64/wasmpod) with tracing off (no provider: the span sites'
//     atomic switch is off), then with the host's pipeline (batch processor, OTLP/HTTP export
//     to a local receiver) under parentbased_traceidratio 0.01 and under always_on (66 spans a
//     request: the request, 64 attempts, the merge). The off case is the no-tracing baseline:
//     tracing cannot be compiled out, and off is one atomic load per span site.
//   - ingress: the real `wasmpod run examples/hello/pod.yaml` under wrk (as BenchmarkIngress),
//     one host without OTEL_* variables and one with OTEL_EXPORTER_OTLP_ENDPOINT (a local
//     receiver) and OTEL_TRACES_SAMPLER=parentbased_traceidratio, ARG 0.01, measured
//     alternately; metrics off-req/s, sampled-1pct-req/s, off-p99-ms, sampled-1pct-p99-ms.
//
// benchreport computes the ratios. go test ./bench -run XXX -bench Tracing
func BenchmarkTracing(b *testing.B) {
	sink := newOTLPSink(b)
	path := wasmbuild.Go(b, "../plugins/benchleaf")
	wasm, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	const n = 64
	g := newWasmpodFanout(b, wasm, wasm, n)
	want := nativeFanout(n, goruntime.GOMAXPROCS(0))
	for _, c := range []struct {
		name    string
		sampler sdktrace.Sampler // nil: tracing off
	}{
		{"off", nil},
		{"sampled-1pct", sdktrace.ParentBased(sdktrace.TraceIDRatioBased(0.01))},
		{"sampled-100pct", sdktrace.AlwaysSample()},
	} {
		b.Run("fanout-64/"+c.name, func(b *testing.B) {
			if c.sampler != nil {
				installTracing(b, sink, c.sampler)
			} else if spans.On() {
				b.Fatal("tracing is on before it was installed")
			}
			runWasmpodFanout(b, g, want)
		})
	}
	// The same comparison with the two settings alternating in blocks of 50 requests inside
	// one timed loop, so that both see the same machine at the same moments: on a shared
	// machine the sequential cases above differ by more than the 5 % they are held to.
	b.Run("fanout-64/alternating", func(b *testing.B) {
		exp, err := otlptracehttp.New(context.Background(), otlptracehttp.WithEndpointURL(sink.url+"/v1/traces"))
		if err != nil {
			b.Fatal(err)
		}
		tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(0.01))))
		b.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := tp.Shutdown(ctx); err != nil {
				b.Errorf("flushing spans: %v", err)
			}
		})
		const block = 50
		ctx := context.Background()
		var spent [2]time.Duration // off, sampled 1 %
		var count [2]int
		b.ReportAllocs()
		b.ResetTimer()
		for done := 0; done < b.N; {
			k, side := min(block, b.N-done), (done/block)%2
			restore := func() {}
			if side == 1 {
				restore = spans.Install(tp)
			}
			start := time.Now()
			for range k {
				out, res, err := g.Do(ctx, input1K, nil)
				if err != nil || res.Partial || binary.LittleEndian.Uint64(out) != want {
					b.Fatalf("Do: %v, partial %v", err, res.Missing)
				}
			}
			spent[side] += time.Since(start)
			count[side] += k
			restore()
			done += k
		}
		if count[0] == 0 || count[1] == 0 {
			return // the b.N=1 probe
		}
		off := float64(spent[0].Nanoseconds()) / float64(count[0])
		on := float64(spent[1].Nanoseconds()) / float64(count[1])
		b.ReportMetric(off/1e3, "off-us/op")
		b.ReportMetric(on/1e3, "sampled-1pct-us/op")
		b.ReportMetric(on/off, "1pct/off")
	})
	b.Run("ingress", func(b *testing.B) { benchTracingIngress(b, sink) })
}

func benchTracingIngress(b *testing.B, sink *otlpSink) {
	wrk, err := exec.LookPath("wrk")
	if err != nil {
		b.Skip("wrk not installed (Debian package wrk; CI installs it)")
	}
	root, err := wasmbuild.RepoRoot()
	if err != nil {
		b.Fatal(err)
	}
	wasm, err := os.ReadFile(wasmbuild.Go(b, filepath.Join(root, "examples/hello/guest")))
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	spec, _ := os.ReadFile(filepath.Join(root, "examples/hello/pod.yaml"))
	os.WriteFile(filepath.Join(dir, "pod.yaml"), spec, 0o644)
	os.WriteFile(filepath.Join(dir, "hello.wasm"), wasm, 0o644)

	// The hosts take their tracing configuration from the environment they start with.
	for _, k := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG", "OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER"} {
		b.Setenv(k, "")
	}
	off := podtest.Start(b, filepath.Join(dir, "pod.yaml"))
	b.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", sink.url)
	b.Setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
	b.Setenv("OTEL_TRACES_SAMPLER_ARG", "0.01")
	on := podtest.Start(b, filepath.Join(dir, "pod.yaml"))
	before := sink.exports.Load()
	for i := 0; i < b.N; i++ {
		offRPS, offP99 := runWrk(b, wrk, "http://"+off.Ingress+"/world")
		onRPS, onP99 := runWrk(b, wrk, "http://"+on.Ingress+"/world")
		b.ReportMetric(offRPS, "off-req/s")
		b.ReportMetric(offP99, "off-p99-ms")
		b.ReportMetric(onRPS, "sampled-1pct-req/s")
		b.ReportMetric(onP99, "sampled-1pct-p99-ms")
		b.Logf("ingress tracing off: %.0f req/s, p99 %.3f ms; 1%% sampled: %.0f req/s, p99 %.3f ms", offRPS, offP99, onRPS, onP99)
	}
	b.Logf("the sampled host made %d exports so far (its batch processor flushes every 5 s)", sink.exports.Load()-before)
}
