package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/internal/wasmbuild"
)

// The hostile corpus (runtime/testdata/hostile) through the real binary behind ingress: every
// attack on the deadline is answered 504 within the deadline plus a bound while /healthz keeps
// answering, the host's goroutines and fds come back to their baseline, hostile uploads neither
// hang a PUT nor block a restart, and SIGTERM stops the host in time with a runaway guest.

// hostileBound is how long past its deadline a cut request may take on a loaded, shared 2-core
// machine; every case below runs for tens of seconds to minutes when it is not cut.
const hostileBound = 6 * time.Second

func hostileWasm(t *testing.T, name string) string {
	return wasmbuild.WAT(t, "../../../runtime/testdata/hostile/"+name+".wat")
}

func hostilePod(t *testing.T, wasm string, grace int, timeout string) string {
	return writePod(t, fmt.Sprintf(`apiVersion: wasmpod.dev/v1
kind: Pod
metadata: {name: hostile}
spec:
  terminationGracePeriodSeconds: %d
  modules:
    - name: web
      wasm: %s
      resources: {memory: 32Mi, timeout: %s, concurrency: 2}
`, grace, wasm, timeout))
}

// healthWatch polls /healthz until stop and returns the slowest answer (a timeout counts as
// the whole poll timeout).
func (h *host) healthWatch(stop <-chan struct{}) func() time.Duration {
	var worst time.Duration
	var mu sync.Mutex
	done := make(chan struct{})
	client := &http.Client{Timeout: 10 * time.Second}
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			t0 := time.Now()
			resp, err := client.Get("http://" + h.admin + "/healthz")
			took := time.Since(t0)
			if err == nil {
				resp.Body.Close()
			}
			mu.Lock()
			worst = max(worst, took)
			mu.Unlock()
		}
	}()
	return func() time.Duration { <-done; mu.Lock(); defer mu.Unlock(); return worst }
}

var goroutinesRE = regexp.MustCompile(`goroutine profile: total (\d+)`)

// footprint returns the host's goroutine count (pprof) and open fds (/proc).
func (h *host) footprint() (goroutines, fds int) {
	h.t.Helper()
	_, body := h.adminDo("GET", "/debug/pprof/goroutine?debug=1", nil)
	if m := goroutinesRE.FindStringSubmatch(body); m != nil {
		goroutines, _ = strconv.Atoi(m[1])
	}
	ents, _ := os.ReadDir(filepath.Join("/proc", strconv.Itoa(h.cmd.Process.Pid), "fd"))
	return goroutines, len(ents)
}

func TestHostileBehindIngress(t *testing.T) {
	h := startHost(t, hostilePod(t, hostileWasm(t, "recursion"), 5, "2s"), "")
	waitFor(t, time.Minute, "ready", func() bool { c, _ := h.adminDo("GET", "/readyz", nil); return c == 200 })
	h.call("\x00\x14") // fib(20): warm up every path once before the baseline
	g0, fd0 := h.footprint()
	for _, tc := range []struct {
		name  string
		input string
	}{
		{"fib without loops", "\x00\x2f"},
		{"mutual recursion through call_indirect", "\x01\x2f"},
		{"straight-line bodies in a recursion tree", "\x02\x28"},
		{"memory.fill and memory.copy at the leaves", "\x03\x14"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stop := make(chan struct{})
			worst := h.healthWatch(stop)
			t0 := time.Now()
			code, body := h.call(tc.input)
			took := time.Since(t0)
			close(stop)
			t.Logf("answered %d after %s; slowest /healthz %s", code, took.Round(time.Millisecond), worst().Round(time.Millisecond))
			if code != http.StatusGatewayTimeout || !strings.Contains(body, "deadline") {
				t.Fatalf("want 504 naming the deadline, got %d %q", code, body)
			}
			if took > 2*time.Second+hostileBound {
				t.Fatalf("answered after %s (deadline 2s)", took)
			}
			if w := worst(); w > 2*time.Second {
				t.Fatalf("/healthz took %s while the guest ran", w)
			}
		})
	}
	t.Run("deep recursion", func(t *testing.T) {
		code, body := h.call("\x04\x0f")
		if code < 500 || !strings.Contains(body, "stack") {
			t.Fatalf("1.5 M frames: want a 5xx stack overflow, got %d %q", code, body)
		}
	})
	t.Run("table.grow of 4 G entries", func(t *testing.T) {
		code, body := h.call("\x05\x00")
		if code != 200 || body != "\xff\xff\xff\xff" {
			t.Fatalf("want 200 and -1, got %d %q", code, body)
		}
	})
	// Goroutines and fds return to the baseline (a margin for the HTTP client's own).
	waitFor(t, 30*time.Second, "goroutines and fds back to baseline", func() bool {
		g, fd := h.footprint()
		return g <= g0+5 && fd <= fd0+5
	})
	g1, fd1 := h.footprint()
	t.Logf("goroutines %d -> %d, fds %d -> %d", g0, g1, fd0, fd1)
	if code, body := h.call("\x00\x14"); code != 200 || body != "\x6d\x1a\x00\x00" {
		t.Fatalf("fib(20) after the attacks: %d %q", code, body)
	}
}

// TestHostileUploads: PUTs of modules whose start section never ends, or that write the fuel
// global, are refused within the deadline; meanwhile restart and a corrective PUT work.
func TestHostileUploads(t *testing.T) {
	h := startHost(t, hostilePod(t, hostileWasm(t, "recursion"), 5, "2s"), "")
	waitFor(t, time.Minute, "ready", func() bool { c, _ := h.adminDo("GET", "/readyz", nil); return c == 200 })
	good, err := os.ReadFile(hostileWasm(t, "recursion"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"start_loop", "start_fib"} {
		t.Run(name, func(t *testing.T) {
			bad, err := os.ReadFile(hostileWasm(t, name))
			if err != nil {
				t.Fatal(err)
			}
			type answer struct {
				code int
				body string
				took time.Duration
			}
			put := make(chan answer, 1)
			t0 := time.Now()
			go func() {
				req, _ := http.NewRequest("PUT", "http://"+h.admin+"/v1/modules/web/wasm", bytes.NewReader(bad))
				req.Header.Set("Authorization", "Bearer "+token)
				resp, err := (&http.Client{Timeout: time.Minute}).Do(req)
				if err != nil {
					put <- answer{body: err.Error(), took: time.Since(t0)}
					return
				}
				defer resp.Body.Close()
				var b bytes.Buffer
				b.ReadFrom(resp.Body)
				put <- answer{resp.StatusCode, b.String(), time.Since(t0)}
			}()
			// While the hostile upload loads: restart is not blocked behind it for long.
			time.Sleep(200 * time.Millisecond)
			r0 := time.Now()
			if code, body := h.adminDo("POST", "/v1/modules/web/restart", nil); code != 200 {
				t.Fatalf("restart during the upload: %d %s", code, body)
			}
			t.Logf("restart answered after %s", time.Since(r0).Round(time.Millisecond))
			select {
			case a := <-put:
				t.Fatalf("restart waited for the hostile upload to fail (%d %s)", a.code, a.body)
			default: // the upload still runs into its deadline: restart did not wait for it
			}
			a := <-put
			t.Logf("PUT answered %d after %s: %s", a.code, a.took.Round(time.Millisecond), a.body)
			if a.code < 400 || !strings.Contains(a.body, "deadline") {
				t.Fatalf("want the upload refused at its deadline, got %d %q", a.code, a.body)
			}
			if a.took > 2*time.Second+hostileBound {
				t.Fatalf("PUT answered after %s (deadline 2s)", a.took)
			}
			// A corrective PUT goes through, and the module serves.
			if code, body := h.do("PUT", "http://"+h.admin+"/v1/modules/web/wasm", good, token); code != 200 {
				t.Fatalf("corrective PUT: %d %s", code, body)
			}
			waitFor(t, time.Minute, "ready", func() bool { c, _ := h.adminDo("GET", "/readyz", nil); return c == 200 })
			if code, body := h.call("\x00\x14"); code != 200 || body != "\x6d\x1a\x00\x00" {
				t.Fatalf("fib(20) after the corrective PUT: %d %q", code, body)
			}
		})
	}
	t.Run("fuel writer", func(t *testing.T) {
		code, body := h.do("PUT", "http://"+h.admin+"/v1/modules/web/wasm", fuelWriterWasm(), token)
		if code != 400 && code != 422 && code < 500 || !strings.Contains(body, "global 1 out of range") {
			t.Fatalf("want the module refused for its global index, got %d %q", code, body)
		}
		if code, _ := h.adminDo("GET", "/healthz", nil); code != 200 {
			t.Fatalf("healthz after the fuel writer: %d", code)
		}
	})
}

// TestSIGTERMWithRunawayGuest: a guest that would run for minutes (its deadline is a minute)
// does not keep the host past its grace period.
func TestSIGTERMWithRunawayGuest(t *testing.T) {
	const grace = 3 * time.Second
	h := startHost(t, hostilePod(t, hostileWasm(t, "recursion"), int(grace/time.Second), "60s"), "")
	waitFor(t, time.Minute, "ready", func() bool { c, _ := h.adminDo("GET", "/readyz", nil); return c == 200 })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for k := 0; k < 2; k++ { // fib(47) and the call_indirect variant: minutes each
		go func(k int) {
			req, _ := http.NewRequestWithContext(ctx, "POST", "http://"+h.ingress+"/", strings.NewReader(string([]byte{byte(k), 47})))
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
		}(k)
	}
	time.Sleep(500 * time.Millisecond) // the guests are running
	h.sigtermWithin(t, grace)
}

// sigtermWithin sends the host SIGTERM and fails unless it exits within grace (its pod's
// terminationGracePeriodSeconds) and hostileBound.
func (h *host) sigtermWithin(t *testing.T, grace time.Duration) {
	t.Helper()
	t0 := time.Now()
	h.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-h.done:
	case <-time.After(grace + 90*time.Second):
		t.Fatalf("the host did not exit within %s of SIGTERM", grace+90*time.Second)
	}
	took := time.Since(t0)
	t.Logf("exited %s after SIGTERM (grace %s): %v", took.Round(time.Millisecond), grace, h.exitErr)
	if took > grace+hostileBound {
		t.Fatalf("exited after %s, grace %s", took, grace)
	}
}

// fuelWriterWasm is runtime's fuelWriter (hostile_test.go): invalid as uploaded, it writes
// global 1, the index the instrumenter appends the fuel at.
func fuelWriterWasm() []byte {
	var b []byte
	sec := func(id byte, body ...byte) {
		b = append(b, id, byte(len(body)))
		b = append(b, body...)
	}
	b = append(b, "\x00asm\x01\x00\x00\x00"...)
	sec(1, 3, 0x60, 0, 1, 0x7F, 0x60, 1, 0x7F, 1, 0x7F, 0x60, 1, 0x7F, 1, 0x7E)
	sec(3, 3, 0, 1, 2)
	sec(5, 1, 0, 2)
	sec(6, 1, 0x7F, 1, 0x41, 0, 0x0B)
	exp := []byte{4}
	for i, n := range []string{"wasmpod_abi_version", "wasmpod_buffer", "wasmpod_handle", "memory"} {
		exp = append(exp, byte(len(n)))
		exp = append(exp, n...)
		if n == "memory" {
			exp = append(exp, 2, 0)
		} else {
			exp = append(exp, 0, byte(i))
		}
	}
	sec(7, exp...)
	code := []byte{3}
	for _, f := range [][]byte{
		{0, 0x41, 1, 0x0B},
		{0, 0x41, 0x80, 0x80, 0x04, 0x0B},
		{0, 0x03, 0x40, 0x41, 0xC0, 0x84, 0x3D, 0x24, 1, 0x0C, 0, 0x0B, 0x42, 0, 0x0B},
	} {
		code = append(code, byte(len(f)))
		code = append(code, f...)
	}
	sec(10, code...)
	return b
}

// TestSIGTERMDuringHostileLoad: a SIGTERM that arrives while a module loads whose start
// function never returns (its limit is a minute) does not keep the host past its grace period,
// whether the module is an upload replacing a running one or the pod's own, still starting.
func TestSIGTERMDuringHostileLoad(t *testing.T) {
	const grace = 3 * time.Second
	for _, c := range []struct {
		name   string
		pod    string // the pod's module
		upload bool   // start_loop is PUT over the running pod's module
	}{
		{"upload", "recursion", true},
		{"pod start", "start_loop", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := launchHost(t, hostilePod(t, hostileWasm(t, c.pod), int(grace/time.Second), "60s"), "", c.upload)
			if c.upload {
				waitFor(t, time.Minute, "ready", func() bool { c, _ := h.adminDo("GET", "/readyz", nil); return c == 200 })
				bad, err := os.ReadFile(hostileWasm(t, "start_loop"))
				if err != nil {
					t.Fatal(err)
				}
				go func() {
					req, _ := http.NewRequest("PUT", "http://"+h.admin+"/v1/modules/web/wasm", bytes.NewReader(bad))
					req.Header.Set("Authorization", "Bearer "+token)
					if resp, err := (&http.Client{Timeout: 2 * time.Minute}).Do(req); err == nil {
						resp.Body.Close()
					}
				}()
			}
			time.Sleep(time.Second) // the start function is running
			h.sigtermWithin(t, grace)
		})
	}
}
