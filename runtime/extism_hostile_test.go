package runtime_test

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/internal/wasmbuild"
	"github.com/wasmpod/wasmpod/runtime"
)

// extismHostile is testdata/extism_hostile.wat: a plugin that attacks Extism's kernel and the
// host functions around it (see its header).
func extismHostile(t testing.TB) []byte {
	return readFile(t, wasmbuild.WAT(t, "testdata/extism_hostile.wat"))
}

// callWithin calls m's handle role with in, and fails the test if the call has not returned
// long after the module's deadline (a hang, not a timing bound).
func callWithin(t *testing.T, m *runtime.Module, in []byte) ([]byte, error) {
	t.Helper()
	type result struct {
		out []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		out, err := m.Call(context.Background(), runtime.RoleHandle, in, nil)
		done <- result{out, err}
	}()
	select {
	case r := <-done:
		return r.out, r.err
	case <-time.After(30 * time.Second):
		t.Fatalf("the call has not returned 30s after its %s deadline", m.Config().CallTimeout)
		return nil, nil
	}
}

// TestExtismKernelLoopInHostFunction: a plugin that corrupts the block list of Extism's kernel
// (its own memory, which go-sdk's store_u64 lets it write anywhere) makes every walk of the list
// loop forever. A walk the plugin starts itself runs under its call and is cut at the deadline;
// one that a host function starts (reading a name, a log line or an error message, allocating for
// a value) must be cut too: go-sdk's helpers run the kernel under context.Background(), so such a
// call never returned, burning a core, and Stop could not end it.
func TestExtismKernelLoopInHostFunction(t *testing.T) {
	e := newEngine(t, runtime.DefaultConfig())
	wasm := extismHostile(t)
	for _, fn := range []string{"loop_length", "loop_log", "loop_config", "loop_var_get", "loop_var_set", "loop_headers", "loop_http", "loop_error", "loop_error_return"} {
		t.Run(fn, func(t *testing.T) {
			mc := extismConfig("kernel-" + fn)
			mc.MaxMemoryPages = 64
			mc.CallTimeout = 300 * time.Millisecond
			mc.MaxConcurrency = 1
			mc.AllowedHosts = []string{"127.0.0.1"}
			mc.Config = map[string]string{"k": "value"}
			mc.ExtismFunctions = map[runtime.Role]string{runtime.RoleHandle: fn, runtime.RoleLeaf: "ok"}
			m := started(t, e, wasm, mc)
			_, err := callWithin(t, m, nil)
			t.Logf("%.300v", err)
			if !errors.Is(err, runtime.ErrDeadline) && !errors.Is(err, runtime.ErrTrap) {
				t.Fatalf("%s: %v, want the deadline (or a trap)", fn, err)
			}
			// The instance whose kernel was corrupted is gone; the module still serves.
			if out, err := m.Call(context.Background(), runtime.RoleLeaf, nil, nil); err != nil || len(out) != 0 {
				t.Fatalf("after %s: %q %v", fn, out, err)
			}
			if st := m.Stats(); st.Discards != 1 {
				t.Fatalf("after %s: %+v, want the corrupted instance discarded", fn, st)
			}
		})
	}
}

// TestExtismStopCutsKernelLoop: Stop ends a call whose host function walks a corrupted kernel
// block list (TestExtismKernelLoopInHostFunction), long before its deadline.
func TestExtismStopCutsKernelLoop(t *testing.T) {
	e := newEngine(t, runtime.DefaultConfig())
	mc := extismConfig("kernel-stop")
	mc.MaxMemoryPages = 64
	mc.CallTimeout = time.Hour
	mc.ExtismFunctions = map[runtime.Role]string{runtime.RoleHandle: "loop_log"}
	m := started(t, e, extismHostile(t), mc)
	stopCutsCall(t, m, nil, "the call looping in the kernel for log_info")
}

// stopCutsCall calls m's handler with in and, once the call runs, stops m with a short grace:
// Stop must say it cut the call, and the call must end with ErrNotRunning (what names it for
// the failure message).
func stopCutsCall(t *testing.T, m *runtime.Module, in []byte, what string) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		_, err := m.Call(context.Background(), runtime.RoleHandle, in, nil)
		done <- err
	}()
	eventually(t, "the call is running", func() bool { return m.Stats().Busy == 1 })
	if err := m.Stop(context.Background(), runtime.StopOptions{Grace: 50 * time.Millisecond}); err == nil || !strings.Contains(err.Error(), "cut") {
		t.Fatalf("stop: %v", err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, runtime.ErrNotRunning) {
			t.Fatalf("cut call: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("Stop did not cut %s", what)
	}
}

// TestExtismExitZero: a plugin that calls WASI proc_exit(0) (a Go, Rust or C command's _start
// ends that way) succeeds with its output, as with extism go-sdk; its instance is closed by the
// exit, so the next call must run on a new one rather than fail with "module is closed".
func TestExtismExitZero(t *testing.T) {
	e := newEngine(t, runtime.DefaultConfig())
	mc := extismConfig("exit0")
	mc.MaxMemoryPages = 64
	mc.MaxConcurrency = 1
	mc.ExtismFunctions = map[runtime.Role]string{runtime.RoleHandle: "exit0"}
	m := started(t, e, extismHostile(t), mc)
	for i := 0; i < 3; i++ {
		out, err := m.Call(context.Background(), runtime.RoleHandle, nil, nil)
		if err != nil || string(out) != "bye" {
			t.Fatalf("call %d: %q %v", i, out, err)
		}
	}
	if st := m.Stats(); st.Errors != 0 || st.Discards != 3 {
		t.Fatalf("stats %+v: want no errors and each exited instance discarded", st)
	}
}

// TestExtismErrorMessageBounded: the message of a guest error is bounded as for native modules
// (4 KiB), however large a block the plugin hands to error_set; the error keeps its code.
func TestExtismErrorMessageBounded(t *testing.T) {
	e := newEngine(t, runtime.DefaultConfig())
	mc := extismConfig("error-big")
	mc.ExtismFunctions = map[runtime.Role]string{runtime.RoleHandle: "error_big"}
	m := started(t, e, extismHostile(t), mc)
	_, err := m.Call(context.Background(), runtime.RoleHandle, nil, nil)
	var ge *runtime.GuestError
	if !errors.As(err, &ge) || ge.Code != 1 {
		t.Fatalf("error_big: %.200v, want a guest error with code 1", err)
	}
	if n := len(ge.Message); n > 4<<10 {
		t.Fatalf("error_big: a guest error message of %d bytes, want at most %d", n, 4<<10)
	}
}

// TestExtismHostWriteWhenKernelFull: a host function that cannot allocate the block for its
// result (the instance's memory limit is reached) fails the call. go-sdk's WriteBytes ignored the
// failed allocation: it wrote the value at offset 0 of the kernel's memory, over the kernel's
// allocator root, and returned 0, which config_get's caller reads as "no such key".
func TestExtismHostWriteWhenKernelFull(t *testing.T) {
	e := newEngine(t, runtime.DefaultConfig())
	mc := extismConfig("full-config")
	mc.MaxMemoryPages = 64
	mc.MaxConcurrency = 1
	mc.Config = map[string]string{"k": "value"}
	mc.ExtismFunctions = map[runtime.Role]string{runtime.RoleHandle: "full_config", runtime.RoleLeaf: "ok"}
	m := started(t, e, extismHostile(t), mc)
	out, err := m.Call(context.Background(), runtime.RoleHandle, nil, nil)
	if err == nil {
		off := uint64(0)
		if len(out) == 8 {
			off = binary.LittleEndian.Uint64(out)
		}
		t.Fatalf("config_get with the kernel's memory full returned offset %d and the call succeeded, want the call to fail", off)
	}
	t.Logf("%.300v", err)
	if !errors.Is(err, runtime.ErrTrap) || !strings.Contains(err.Error(), "memory limit") {
		t.Fatalf("config_get with the kernel's memory full: %v, want a trap naming the memory limit", err)
	}
	if out, err := m.Call(context.Background(), runtime.RoleLeaf, nil, nil); err != nil || len(out) != 0 {
		t.Fatalf("after: %q %v", out, err)
	}
}

// TestExtismHTTPHostileResponses: what an allowed host answers cannot hold the call past its
// deadline or make the host hold more than its limits: a body over the 16 MiB limit, a server
// that never answers or drips its body, and a response whose headers are a megabyte and more.
func TestExtismHTTPHostileResponses(t *testing.T) {
	stop := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/huge":
			chunk := make([]byte, 1<<20)
			for i := 0; i < 17; i++ {
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		case "/silent":
			select {
			case <-r.Context().Done():
			case <-stop:
			}
		case "/drip":
			for {
				if _, err := w.Write([]byte("x")); err != nil {
					return
				}
				w.(http.Flusher).Flush()
				select {
				case <-r.Context().Done():
					return
				case <-stop:
					return
				case <-time.After(50 * time.Millisecond):
				}
			}
		case "/headers":
			v := strings.Repeat("h", 8<<10)
			for i := 0; i < 256; i++ { // 2 MiB of headers
				w.Header().Set("X-Bomb-"+strconv.Itoa(i), v)
			}
			w.Write([]byte("ok"))
		case "/ok":
			w.Write([]byte("fine"))
		}
	}))
	defer srv.Close()
	defer close(stop)

	e := newEngine(t, runtime.DefaultConfig())
	for _, tc := range []struct {
		path    string
		timeout time.Duration // the call's deadline
		want    error         // the call's error
		msg     string        // a part of its message
	}{
		// The limits are what /huge and /headers test: their deadline is far off, as reading
		// 16 MiB into the guest under -race on a busy 2-core machine took over a second.
		{"/huge", 15 * time.Second, runtime.ErrTrap, "over the limit of 16777216 bytes"},
		{"/silent", time.Second, runtime.ErrDeadline, ""},
		{"/drip", time.Second, runtime.ErrDeadline, ""},
		{"/headers", 15 * time.Second, runtime.ErrTrap, "header"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			mc := extismConfig("http-hostile")
			mc.CallTimeout = tc.timeout
			mc.AllowedHosts = []string{strings.TrimPrefix(srv.URL, "http://")}
			m := started(t, e, extismGo(t), mc)
			out, err := callWithin(t, m, []byte("fetch:"+srv.URL+tc.path))
			t.Logf("%.300v", err)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("fetch %s: %.100q %.300v, want %v with %q", tc.path, out, err, tc.want, tc.msg)
			}
			if out, err := m.Call(context.Background(), runtime.RoleHandle, []byte("fetch:"+srv.URL+"/ok"), nil); err != nil || string(out) != "200 fine" {
				t.Fatalf("after %s: %q %v", tc.path, out, err)
			}
		})
	}
}

// TestExtismStopCutsHTTPRequest: a call waiting in http_request on a server that never answers
// is cut when its module stops, as a call running guest code is (TestExtismStopCutsCalls).
func TestExtismStopCutsHTTPRequest(t *testing.T) {
	stop := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-stop:
		}
	}))
	defer srv.Close()
	defer close(stop)
	e := newEngine(t, runtime.DefaultConfig())
	mc := extismConfig("http-stop")
	mc.CallTimeout = time.Minute
	mc.AllowedHosts = []string{strings.TrimPrefix(srv.URL, "http://")}
	m := started(t, e, extismGo(t), mc)
	stopCutsCall(t, m, []byte("fetch:"+srv.URL+"/"), "the call waiting in http_request")
}

// TestExtismKernelResetAfterCorruption: a plugin that leaves the kernel's allocator position
// past its memory makes go-sdk's reset, run before the instance's next call, trap: go-sdk printed
// the trap to the host's stdout and failed that next call (an unrelated request) with "reset".
// The instance is discarded after the call that corrupted it instead.
func TestExtismKernelResetAfterCorruption(t *testing.T) {
	e := newEngine(t, runtime.DefaultConfig())
	mc := extismConfig("bad-position")
	mc.MaxMemoryPages = 64
	mc.MaxConcurrency = 1
	mc.ExtismFunctions = map[runtime.Role]string{runtime.RoleHandle: "bad_position", runtime.RoleLeaf: "ok"}
	m := started(t, e, extismHostile(t), mc)

	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout := os.Stdout
	os.Stdout = w
	printed := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(r)
		printed <- b
	}()
	var errs []error
	for _, role := range []runtime.Role{runtime.RoleHandle, runtime.RoleLeaf, runtime.RoleLeaf} {
		_, err := m.Call(context.Background(), role, []byte("input"), nil)
		errs = append(errs, err)
	}
	os.Stdout = stdout
	w.Close()
	out := <-printed
	for i, err := range errs {
		if err != nil {
			t.Errorf("call %d: %v", i, err)
		}
	}
	if len(out) != 0 {
		t.Errorf("the host's stdout got %q", out)
	}
	if st := m.Stats(); st.Discards != 1 {
		t.Errorf("stats %+v, want the corrupted instance discarded", st)
	}
}

// TestExtismVarFlood: many tiny vars cannot pass resources.vars (each counts its name, value
// and 40 bytes, as go-sdk counts), and a var set again counts once.
func TestExtismVarFlood(t *testing.T) {
	const limit = 4 << 10
	e := newEngine(t, runtime.DefaultConfig())
	mc := extismConfig("var-flood")
	mc.MaxVarBytes = limit
	mc.MaxConcurrency = 1
	m := started(t, e, extismGo(t), mc)
	ctx := context.Background()
	n := 0
	for ; n < limit; n++ {
		// "count:vNNNN" stores the var vNNNN (5 bytes) with the decimal "1" (1 byte).
		_, err := m.Call(ctx, runtime.RoleHandle, []byte("count:v"+strconv.Itoa(1000+n)), nil)
		if err != nil {
			if !strings.Contains(err.Error(), "Variable store is full") {
				t.Fatalf("var %d: %v", n, err)
			}
			break
		}
	}
	if most := limit / (5 + 1 + 40); n == 0 || n > most {
		t.Fatalf("%d vars of 6 bytes fit in a store of %d bytes, want 1 to %d", n, limit, most)
	}

	mc.Name = "var-replace"
	m = started(t, e, extismGo(t), mc)
	for i := 0; i < 3; i++ {
		if _, err := m.Call(ctx, runtime.RoleHandle, []byte("setvar:big=3000"), nil); err != nil {
			t.Fatalf("setting a 3000-byte var under a %d-byte limit, time %d: %v", limit, i+1, err)
		}
	}
}
