package admin

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/host/internal/supervisor"
	"github.com/wasmpod/wasmpod/host/internal/supervisor/suptest"
	"github.com/wasmpod/wasmpod/internal/wasmbuild"
)

func podkitWasm(t *testing.T) string {
	t.Helper()
	root, err := wasmbuild.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return wasmbuild.Go(t, filepath.Join(root, "host/testdata/podkit"))
}

// serveIngress serves sup's ingress on a loopback port with the host's defaults and returns
// its address.
func serveIngress(t *testing.T, sup *supervisor.Supervisor) string {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Logger = slog.New(slog.DiscardHandler)
	s, err := New(cfg, sup)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.Serve(nil, ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	})
	return ln.Addr().String()
}

// TestIngressClientGoneCutsCall is the curl -m 1: a client asks a module of
// concurrency 1 (timeout 40 s) for a call that would run 20 s and leaves after a second. The
// call is cut once the client has gone, not when it would have ended, so the next request is
// served instead of getting 503 "all 1 instances busy" for the rest of the 20 s. Both a loop
// with a host call (the clock) and a pure arithmetic loop are cut.
func TestIngressClientGoneCutsCall(t *testing.T) {
	wasm := podkitWasm(t)
	for _, tc := range []struct{ name, cmd string }{
		{"host call in the loop", "busy:20000"},
		{"pure arithmetic", "spin:100000000000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := fmt.Sprintf(`apiVersion: wasmpod.dev/v1
kind: Pod
metadata: {name: cancel}
spec:
  modules:
    - name: web
      role: main
      wasm: %s
      resources: {concurrency: 1, timeout: 40s}
`, wasm)
			sup := suptest.Start(t, spec, "")
			addr := serveIngress(t, sup)

			// The impatient client: sends the call, waits a second, leaves.
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", len(tc.cmd), tc.cmd)
			start := time.Now()
			time.Sleep(time.Second)
			c.Close()
			left := time.Now()

			// The next client. 10 s: far above a cut (a poll period plus a loop head) on a
			// loaded machine, half the time the abandoned call would otherwise hold the
			// only instance.
			hc := &http.Client{Timeout: 30 * time.Second}
			var busy int
			for {
				resp, err := hc.Post("http://"+addr+"/", "text/plain", strings.NewReader("echo:next"))
				if err != nil {
					t.Fatal(err)
				}
				b := make([]byte, 64)
				n, _ := resp.Body.Read(b)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK && string(b[:n]) == "next" {
					break
				}
				if resp.StatusCode != http.StatusServiceUnavailable {
					t.Fatalf("next request: %d %q", resp.StatusCode, b[:n])
				}
				busy++
				if time.Since(left) > 10*time.Second {
					t.Fatalf("next request still refused %s after the client left (%d x 503): the abandoned call kept running", time.Since(left).Round(time.Millisecond), busy)
				}
			}
			t.Logf("next request served %s after the client left (call started %s before), %d x 503 before", time.Since(left).Round(time.Millisecond), left.Sub(start).Round(time.Millisecond), busy)
			st, err := sup.Status("web")
			if err != nil {
				t.Fatal(err)
			}
			if st.Restarts != 0 || !st.Ready {
				t.Fatalf("module after the cut: %+v", st)
			}
		})
	}
}
