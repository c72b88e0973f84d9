// Package sidecar is the sidecar example's end-to-end test (see README.md).
package sidecar

import (
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/internal/podtest"
)

// archived returns how many times each URI appears in the archive.
func archived(t *testing.T, dir string) map[string]int {
	t.Helper()
	paths, _ := filepath.Glob(filepath.Join(dir, "*.log.gz"))
	seen := map[string]int{}
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		zr, err := gzip.NewReader(f)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		b, err := io.ReadAll(zr)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		for _, l := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
			f := strings.Fields(l)
			if len(f) != 5 {
				t.Fatalf("%s: malformed line %q", p, l)
			}
			seen[f[2]]++
		}
	}
	return seen
}

func TestSidecar(t *testing.T) {
	spec := podtest.CopyExample(t, "sidecar", []string{"accesslog-main", "log-saver"})
	dir := filepath.Dir(spec)
	h := podtest.Start(t, spec)

	// A steady stream of requests from two clients for the whole test.
	var sent atomic.Int64
	var failMu sync.Mutex
	var failures []string
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for c := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				uri := fmt.Sprintf("/r/%d-%d", c, i)
				code, body := h.Get("GET", uri, nil)
				if code != 200 || body != "ok "+uri+"\n" {
					failMu.Lock()
					failures = append(failures, fmt.Sprintf("%s: %d %q", uri, code, body))
					failMu.Unlock()
				}
				sent.Add(1)
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}
	waitSent := func(n int64) {
		podtest.WaitFor(t, time.Minute, "requests", func() bool { return sent.Load() >= n })
	}
	admin := func(method, path string, body []byte) {
		t.Helper()
		if code, b := h.AdminDo(method, path, body); code != 200 {
			t.Fatalf("%s %s: %d %s", method, path, code, b)
		}
	}
	waitSent(100)

	// Trap the sidecar's tick: its instance is discarded, main is untouched.
	fault := filepath.Join(dir, "logs", ".crash-saver")
	os.WriteFile(fault, nil, 0o644)
	podtest.WaitFor(t, time.Minute, "a trapped tick", func() bool { return strings.Contains(h.Log(), "fault file present") })
	os.Remove(fault)
	waitSent(sent.Load() + 100)

	// Kill (stop) the sidecar, serve without it, start it again.
	admin("POST", "/v1/modules/saver/stop", nil)
	waitSent(sent.Load() + 200)
	admin("POST", "/v1/modules/saver/start", nil)
	waitSent(sent.Load() + 100)

	// Upgrade the sidecar while main serves.
	w, err := os.ReadFile(filepath.Join(dir, "log-saver.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	admin("PUT", "/v1/modules/saver/wasm", w)
	waitSent(sent.Load() + 200)

	close(stop)
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("%d of %d requests failed while the sidecar was disturbed, e.g. %s", len(failures), sent.Load(), failures[0])
	}
	total := int(sent.Load())
	var seen map[string]int
	podtest.WaitFor(t, 2*time.Minute, "every line archived", func() bool {
		seen = archived(t, filepath.Join(dir, "logs", "archive"))
		return len(seen) >= total
	})
	for c := range 2 {
		for i := 0; ; i++ {
			uri := fmt.Sprintf("/r/%d-%d", c, i)
			n, ok := seen[uri]
			if !ok {
				break
			}
			if n != 1 {
				t.Errorf("%s archived %d times", uri, n)
			}
		}
	}
	if len(seen) != total {
		t.Fatalf("archive holds %d distinct requests, %d were sent", len(seen), total)
	}
	t.Logf("%d requests served and archived exactly once through a trap, a stop/start and an upgrade of the sidecar", total)
}
