package bench

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/internal/wasmbuild"
)

// BenchmarkPriority shows the host's priority admission end to end (the real wasmpod binary,
// requests over its ingress): the main module's request latency p99 alone, next to a CPU-hungry
// low-priority sidecar (its ticks admitted only on spare CPU), and next to the same sidecar at
// normal priority (no admission control). The goal: with the low-priority sidecar the
// p99 stays within 20 % of the p99 alone. It reports p99s (µs) and ratios; it asserts nothing
// about timing.
//
//	go test -run '^$' -bench Priority -benchtime 3000x ./bench
func BenchmarkPriority(b *testing.B) {
	root, err := wasmbuild.RepoRoot()
	if err != nil {
		b.Fatal(err)
	}
	kit := wasmbuild.Go(b, filepath.Join(root, "host/testdata/podkit"))
	bin := filepath.Join(b.TempDir(), "wasmpod")
	if out, err := exec.Command("go", "build", "-o", bin, filepath.Join(root, "host/cmd/wasmpod")).CombinedOutput(); err != nil {
		b.Fatalf("build: %v\n%s", err, out)
	}
	const sidecar = `
    - name: hog
      role: sidecar
      wasm: %s
      priority: %s
      tickInterval: 1ms
      config: {tickspin: "2000000"}`
	p99 := map[string]float64{}
	for _, c := range []struct{ name, extra string }{
		{"alone", ""},
		{"low-sidecar", fmt.Sprintf(sidecar, kit, "low")},
		{"normal-sidecar", fmt.Sprintf(sidecar, kit, "normal")},
	} {
		b.Run(c.name, func(b *testing.B) {
			spec := filepath.Join(b.TempDir(), "pod.yaml")
			os.WriteFile(spec, fmt.Appendf(nil, `apiVersion: wasmpod.dev/v1
kind: Pod
metadata: {name: bench}
spec:
  modules:
    - name: web
      wasm: %s
      priority: high
      resources: {concurrency: 2}%s
`, kit, c.extra), 0o600)
			ingress := startHost(b, bin, spec)
			url := "http://" + ingress + "/"
			body := []byte("spin:20000")
			call := func() {
				resp, err := http.Post(url, "text/plain", bytes.NewReader(body))
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Fatalf("status %d", resp.StatusCode)
				}
			}
			for range 200 {
				call()
			}
			lat := make([]time.Duration, 0, b.N)
			for b.Loop() {
				t0 := time.Now()
				call()
				lat = append(lat, time.Since(t0))
			}
			slices.Sort(lat)
			v := float64(lat[len(lat)*99/100].Microseconds())
			p99[c.name] = v
			b.ReportMetric(v, "p99-µs")
			if a := p99["alone"]; a > 0 && c.name != "alone" {
				b.ReportMetric(v/a, "p99-ratio")
			}
		})
	}
}

var ingressRE = regexp.MustCompile(`pod running.*? ingress=(\S+)`)

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *lockedBuf) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

func startHost(b *testing.B, bin, spec string) string {
	var log lockedBuf
	cmd := exec.Command(bin, "run", spec, "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--state-dir", b.TempDir())
	cmd.Stderr = &log
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() })
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		if m := ingressRE.FindStringSubmatch(log.String()); m != nil {
			return m[1]
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.Fatalf("host did not start:\n%s", log.String())
	return ""
}
