package admin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/host/internal/supervisor"
	"github.com/wasmpod/wasmpod/host/internal/supervisor/suptest"
	"github.com/wasmpod/wasmpod/runtime"
)

// serveAdmin serves sup's admin API on a loopback port and returns its base URL.
func serveAdmin(t *testing.T, sup *supervisor.Supervisor) string {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Logger = slog.New(slog.DiscardHandler)
	return serveAdminWith(t, cfg, sup)
}

// serveAdminWith serves sup's admin API with cfg on a loopback port (shut down when the test
// ends) and returns its base URL.
func serveAdminWith(t *testing.T, cfg Config, sup *supervisor.Supervisor) string {
	t.Helper()
	s, err := New(cfg, sup)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.Serve(ln, nil)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	})
	return "http://" + ln.Addr().String()
}

// TestBusyModuleStaysReady: a module whose only instance is always busy with slow calls (and
// has a queue of callers, some refused as overloaded) is busy, not ill. Its readiness and
// liveness probes (every second, failing at the first miss) must not take it out of traffic
// nor restart it, and the pod's /readyz stays 200 throughout.
func TestBusyModuleStaysReady(t *testing.T) {
	spec := fmt.Sprintf(`apiVersion: wasmpod.dev/v1
kind: Pod
metadata: {name: busy}
spec:
  modules:
    - name: web
      role: main
      wasm: %s
      resources: {concurrency: 1, timeout: 20s}
      readinessProbe: {periodSeconds: 1, failureThreshold: 1}
      livenessProbe: {periodSeconds: 1, failureThreshold: 1}
`, podkitWasm(t))
	sup := suptest.Start(t, spec, "")
	admin := serveAdmin(t, sup)
	waitReady(t, sup)

	// Saturate: three callers back to back, each call holding the only instance 1.5 s.
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var mu sync.Mutex
	served, overloaded := 0, 0
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				_, err := sup.Call(ctx, "web", runtime.RoleHandle, []byte("sleep:1500"), nil)
				mu.Lock()
				switch {
				case err == nil:
					served++
				case errors.Is(err, runtime.ErrOverloaded):
					overloaded++
				case ctx.Err() != nil:
				default:
					mu.Unlock()
					t.Errorf("call: %v", err)
					return
				}
				mu.Unlock()
			}
		}()
	}
	// 6 s: six probe periods of each kind, every one of them finding the instance busy.
	hc := &http.Client{Timeout: 10 * time.Second}
	end := time.Now().Add(6 * time.Second)
	for time.Now().Before(end) {
		if ok, why := sup.Ready(); !ok {
			t.Fatalf("pod not ready while its module is merely busy: %v", why)
		}
		resp, err := hc.Get(admin + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("/readyz %d while the module is merely busy", resp.StatusCode)
		}
		time.Sleep(50 * time.Millisecond)
	}
	stop()
	wg.Wait()
	st, err := sup.Status("web")
	if err != nil {
		t.Fatal(err)
	}
	if st.Restarts != 0 || st.Failures != 0 || !st.Ready {
		t.Fatalf("a busy module was restarted or taken out of traffic: %+v", st)
	}
	t.Logf("served %d slow calls, %d refused as overloaded; restarts %d", served, overloaded, st.Restarts)
	if served == 0 {
		t.Fatal("the module served nothing: the test did not saturate it")
	}
}

func waitReady(t *testing.T, sup *supervisor.Supervisor) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ok, why := sup.Ready()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pod never ready: %v", why)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
