package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The soak: WASMPOD_SOAK=<duration> (e.g. 10m; `make soak`) runs a host under constant load
// while an operator churns its main module in a loop: upgrade to another version and roll
// back, restart, scale to 8 and back to 1, stop and start. It fails on any request that fails
// other than with 503 (the module stopped, or refused as overloaded), and on growth of the
// host's RSS, goroutines, open file descriptors or heap after a forced GC faster than the
// slopes below, fitted (least squares) over the samples after the warm-up. WASMPOD_SOAK_REPORT
// names a file the figures are written to (Markdown), e.g. bench/SOAK.md.
//
// The slopes: a leak of one goroutine or one descriptor per cycle (about 8 cycles a minute) is
// well above them, and so is a leak of one instance's memory (a few MiB) per cycle. They sit
// above what a healthy host shows under this churn: over 6 minutes (bench/SOAK.md) RSS
// +0.6 MiB/min, heap after GC +0.5 MiB/min, heap objects, goroutines and descriptors flat.
var soakSlopes = map[string]float64{
	"rss_mib":        8,  // MiB per minute
	"heap_mib":       2,  // MiB per minute, heap in use after a forced GC
	"heap_objects_k": 50, // thousand objects per minute after a forced GC
	"goroutines":     3,  // per minute (the least of three readings per sample)
	"fds":            2,  // per minute (the least of three readings per sample)
}

type soakSample struct {
	at   time.Duration
	vals map[string]float64
}

func TestSoak(t *testing.T) {
	d, err := time.ParseDuration(os.Getenv("WASMPOD_SOAK"))
	if err != nil || d <= 0 {
		t.Skip("set WASMPOD_SOAK=<duration> (e.g. 10m) to run the soak (make soak)")
	}
	h := startHost(t, writePod(t, fmt.Sprintf(`apiVersion: wasmpod.dev/v1
kind: Pod
metadata: {name: soak}
spec:
  terminationGracePeriodSeconds: 10
  modules:
    - name: web
      wasm: %s
      resources: {memory: 64Mi, timeout: 5s, concurrency: 8}
      readinessProbe: {periodSeconds: 1}
      livenessProbe: {periodSeconds: 1}
`, guests["podkit"])), "")
	waitFor(t, time.Minute, "ready", func() bool { return h.status("web").Ready })
	pid := h.cmd.Process.Pid
	other, err := os.ReadFile(guests["echo"])
	if err != nil {
		t.Fatal(err)
	}

	// Load: four keep-alive clients, each as fast as the host answers.
	ctx, stopLoad := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var ok, unavailable, failed atomic.Int64
	var failMu sync.Mutex
	var failures []string
	fail := func(s string) {
		failed.Add(1)
		failMu.Lock()
		if len(failures) < 10 {
			failures = append(failures, s)
		}
		failMu.Unlock()
	}
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				req, _ := http.NewRequestWithContext(ctx, "POST", "http://"+h.ingress+"/", strings.NewReader("echo:soak"))
				resp, err := hc.Do(req)
				if err != nil {
					if ctx.Err() == nil {
						fail(err.Error())
					}
					continue
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				switch resp.StatusCode {
				case 200:
					ok.Add(1)
				case 503:
					unavailable.Add(1)
				default:
					fail(fmt.Sprintf("%d %s", resp.StatusCode, bytes.TrimSpace(b)))
				}
			}
		}()
	}

	op := func(method, path string, body []byte, want int) {
		t.Helper()
		if code, b := h.adminDo(method, path, body); code != want {
			t.Fatalf("%s %s: %d %s", method, path, code, b)
		}
	}
	var samples []soakSample
	start := time.Now()
	cycles := 0
	for time.Since(start) < d {
		op("PUT", "/v1/modules/web/wasm", other, 200)
		time.Sleep(time.Second)
		op("POST", "/v1/modules/web/rollback", nil, 200)
		time.Sleep(time.Second)
		op("POST", "/v1/modules/web/restart", nil, 200)
		time.Sleep(time.Second)
		op("POST", "/v1/modules/web/scale", []byte(`{"replicas": 8}`), 200)
		time.Sleep(time.Second)
		op("POST", "/v1/modules/web/scale", []byte(`{"replicas": 1}`), 200)
		time.Sleep(time.Second)
		op("POST", "/v1/modules/web/stop", nil, 200)
		time.Sleep(200 * time.Millisecond)
		op("POST", "/v1/modules/web/start", nil, 200)
		waitFor(t, time.Minute, "ready after start", func() bool { return h.status("web").Ready })
		time.Sleep(time.Second)
		cycles++
		samples = append(samples, soakSample{at: time.Since(start), vals: h.sample(pid)})
	}
	stopLoad()
	wg.Wait()

	// Fit over the samples after the warm-up (the first fifth, at least two cycles): caches,
	// pools and the compilation of both versions fill then.
	warm := max(len(samples)/5, 2)
	if len(samples)-warm < 3 {
		t.Fatalf("only %d samples: run the soak longer (at least a minute)", len(samples))
	}
	fit := samples[warm:]
	var rep strings.Builder
	fmt.Fprintf(&rep, "# Soak\n\nWritten by `make soak` (host/cmd/wasmpod TestSoak) on %s, %s/%s, %d cores. Each sample is taken at the same point of a cycle (after the start, ready); slopes are least-squares fits over the samples after the warm-up (the first fifth).\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), goruntime.GOOS, goruntime.GOARCH, goruntime.NumCPU())
	fmt.Fprintf(&rep, "Soak of %s: %d cycles (upgrade and back, restart, scale 8 and 1, stop and start), "+
		"4 clients as fast as the host answers: %d requests served, %d refused with 503 (module stopped or overloaded), %d failed otherwise.\n\n",
		d, cycles, ok.Load(), unavailable.Load(), failed.Load())
	fmt.Fprintf(&rep, "| measure | after warm-up | at the end | slope per minute | limit |\n|---|---|---|---|---|\n")
	var over []string
	for _, k := range []string{"rss_mib", "heap_mib", "heap_objects_k", "goroutines", "fds"} {
		slope := slopePerMinute(fit, k)
		fmt.Fprintf(&rep, "| %s | %.1f | %.1f | %+.2f | %.0f |\n", k, fit[0].vals[k], fit[len(fit)-1].vals[k], slope, soakSlopes[k])
		if slope > soakSlopes[k] {
			over = append(over, fmt.Sprintf("%s grows %.2f per minute (limit %.0f)", k, slope, soakSlopes[k]))
		}
	}
	t.Log("\n" + rep.String())
	if p := os.Getenv("WASMPOD_SOAK_REPORT"); p != "" {
		if err := os.WriteFile(p, []byte(rep.String()), 0o644); err != nil {
			t.Error(err)
		}
	}
	if n := failed.Load(); n > 0 {
		t.Errorf("%d requests failed other than with 503; first: %q", n, failures)
	}
	if ok.Load() == 0 {
		t.Error("no request was served")
	}
	if len(over) > 0 {
		t.Errorf("growth: %s", strings.Join(over, "; "))
	}
}

// slopePerMinute is the least-squares slope of k over the samples, per minute.
func slopePerMinute(s []soakSample, k string) float64 {
	var sx, sy, sxx, sxy float64
	n := float64(len(s))
	for _, p := range s {
		x, y := p.at.Minutes(), p.vals[k]
		sx += x
		sy += y
		sxx += x * x
		sxy += x * y
	}
	den := n*sxx - sx*sx
	if den == 0 {
		return 0
	}
	return (n*sxy - sx*sy) / den
}

// goroutinesRE is hostile_e2e_test.go's.
var (
	heapAllocRE = regexp.MustCompile(`# HeapAlloc = (\d+)`)
	heapObjRE   = regexp.MustCompile(`# HeapObjects = (\d+)`)
)

// sample reads the host's RSS and descriptors from /proc and its goroutines and heap after a
// forced GC from pprof.
func (h *host) sample(pid int) map[string]float64 {
	h.t.Helper()
	v := map[string]float64{}
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		h.t.Fatal(err)
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			v["rss_mib"] = kb / 1024
		}
	}
	f.Close()
	// Descriptors and goroutines: the least of three readings, as a request or probe in
	// flight holds one of each for a moment.
	v["fds"], v["goroutines"] = 1e9, 1e9
	for range 3 {
		fds, err := os.ReadDir(filepath.Join("/proc", strconv.Itoa(pid), "fd"))
		if err != nil {
			h.t.Fatal(err)
		}
		v["fds"] = min(v["fds"], float64(len(fds)))
		_, g := h.adminDo("GET", "/debug/pprof/goroutine?debug=1", nil)
		m := goroutinesRE.FindStringSubmatch(g)
		if m == nil {
			h.t.Fatalf("no goroutine count in the profile: %.200s", g)
		}
		n, _ := strconv.ParseFloat(m[1], 64)
		v["goroutines"] = min(v["goroutines"], n)
		time.Sleep(50 * time.Millisecond)
	}
	_, hp := h.adminDo("GET", "/debug/pprof/heap?gc=1&debug=1", nil)
	m, mo := heapAllocRE.FindStringSubmatch(hp), heapObjRE.FindStringSubmatch(hp)
	if m == nil || mo == nil {
		h.t.Fatalf("no heap figures in the profile: %.200s", hp)
	}
	b, _ := strconv.ParseFloat(m[1], 64)
	o, _ := strconv.ParseFloat(mo[1], 64)
	v["heap_mib"], v["heap_objects_k"] = b/(1<<20), o/1000
	return v
}
