package admin

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/host/internal/supervisor/suptest"
	"github.com/wasmpod/wasmpod/runtime"
)

// TestRestartDropsNothing: restarts of a module under a steady load through the ingress fail
// no request (50 per case, 100 in all, so that the test stays well under a minute on a 2-core
// CI machine with -race; WASMPOD_RESTARTS=n sets another count per case): a restart starts fresh instances and switches to them as an upgrade does,
// instead of stopping the module and starting it again (which refused every request of the
// gap with 503). The module is stateful (podkit's counter), so every restart is a handover:
// the counter also shows that no acknowledged write was lost.
func TestRestartDropsNothing(t *testing.T) {
	restarts := 50
	if testing.Short() {
		restarts = 10
	}
	if v, err := strconv.Atoi(os.Getenv("WASMPOD_RESTARTS")); err == nil && v > 0 {
		restarts = v
	}
	wasm := podkitWasm(t)
	for _, tc := range []struct {
		name      string
		resources string
		stateful  bool // one instance: its counter must count every acknowledged inc
	}{
		{"pool of 4", "{concurrency: 4, minInstances: 2, timeout: 10s}", false},
		{"stateful, one instance", "{concurrency: 1, timeout: 10s}", true},
	} {
		t.Run(tc.name, func(t *testing.T) { restartUnderLoad(t, wasm, tc.resources, restarts, tc.stateful) })
	}
}

func restartUnderLoad(t *testing.T, wasm, resources string, restarts int, stateful bool) {
	spec := fmt.Sprintf(`apiVersion: wasmpod.dev/v1
kind: Pod
metadata: {name: restart}
spec:
  modules:
    - name: web
      role: main
      wasm: %s
      resources: %s
`, wasm, resources)
	sup := suptest.Start(t, spec, "")
	addr := "http://" + serveIngress(t, sup) + "/"
	waitReady(t, sup)

	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var ok, failed atomic.Int64
	var firstErr atomic.Value
	// Two clients, each a request every millisecond or so: steady traffic through every switch
	// that leaves the restarts CPU on a 2-core machine.
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			hc := &http.Client{Timeout: 30 * time.Second}
			for ctx.Err() == nil {
				resp, err := hc.Post(addr, "text/plain", strings.NewReader("inc"))
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("%d %s", resp.StatusCode, b))
					continue
				}
				ok.Add(1)
				time.Sleep(time.Millisecond)
			}
		}()
	}
	start := time.Now()
	for i := range restarts {
		if err := sup.RestartModule(context.Background(), "web"); err != nil {
			t.Fatalf("restart %d: %v", i, err)
		}
	}
	took := time.Since(start)
	time.Sleep(100 * time.Millisecond) // a little load after the last switch, too
	stop()
	wg.Wait()
	st, err := sup.Status("web")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d restarts in %s (%s each); %d requests served, %d failed", restarts, took.Round(time.Millisecond), (took / time.Duration(restarts)).Round(time.Millisecond), ok.Load(), failed.Load())
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d requests failed across %d restarts; first: %v", n, restarts, firstErr.Load())
	}
	if st.Restarts != restarts || st.Version != 1 || !st.Ready {
		t.Fatalf("status after the restarts: restarts %d version %d ready %v", st.Restarts, st.Version, st.Ready)
	}
	if !stateful {
		return
	}
	// Every acknowledged inc is in the state the last instance carries: none was lost in the
	// handovers.
	out, err := sup.Call(context.Background(), "web", runtime.RoleHandle, []byte("state"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(out); got != strconv.FormatInt(ok.Load(), 10) {
		t.Fatalf("state %s after %d acknowledged increments", got, ok.Load())
	}
}
