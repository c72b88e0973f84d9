package bench

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/wasmpod/wasmpod/internal/podtest"
	"github.com/wasmpod/wasmpod/internal/wasmbuild"
)

// BenchmarkIngress drives the real `wasmpod run examples/hello/pod.yaml` with wrk, and in the
// same run a baseline: a plain net/http server calling the same module through raw wazero (one
// instance per connection handler from a pool, the ABI's framing by hand, no limits). It
// reports requests/s and p99 latency of both.
//
//	go test ./bench -run XXX -bench Ingress -benchtime 1x
func BenchmarkIngress(b *testing.B) {
	wrk, err := exec.LookPath("wrk")
	if err != nil {
		b.Skip("wrk not installed (Debian package wrk; CI installs it)")
	}
	root, err := wasmbuild.RepoRoot()
	if err != nil {
		b.Fatal(err)
	}
	wasmPath := wasmbuild.Go(b, filepath.Join(root, "examples/hello/guest"))
	wasm, err := os.ReadFile(wasmPath)
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	spec, _ := os.ReadFile(filepath.Join(root, "examples/hello/pod.yaml"))
	os.WriteFile(filepath.Join(dir, "pod.yaml"), spec, 0o644)
	os.WriteFile(filepath.Join(dir, "hello.wasm"), wasm, 0o644)
	h := podtest.Start(b, filepath.Join(dir, "pod.yaml"))

	base, stop := baseline(b, wasm)
	defer stop()
	for i := 0; i < b.N; i++ {
		hostRPS, hostP99 := runWrk(b, wrk, "http://"+h.Ingress+"/world")
		baseRPS, baseP99 := runWrk(b, wrk, "http://"+base+"/world")
		b.ReportMetric(hostRPS, "wasmpod-req/s")
		b.ReportMetric(hostP99, "wasmpod-p99-ms")
		b.ReportMetric(baseRPS, "baseline-req/s")
		b.ReportMetric(baseP99, "baseline-p99-ms")
		b.Logf("wasmpod ingress: %.0f req/s, p99 %.3f ms; baseline net/http + raw wazero: %.0f req/s, p99 %.3f ms", hostRPS, hostP99, baseRPS, baseP99)
	}
}

var (
	rpsRE = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	p99RE = regexp.MustCompile(`\s99%\s+([0-9.]+)(us|ms|s)`)
)

func runWrk(b *testing.B, wrk, url string) (rps, p99ms float64) {
	b.Helper()
	out, err := exec.Command(wrk, "-t2", "-c32", "-d5s", "--latency", url).CombinedOutput()
	if err != nil {
		b.Fatalf("wrk %s: %v\n%s", url, err, out)
	}
	m := rpsRE.FindSubmatch(out)
	l := p99RE.FindSubmatch(out)
	if m == nil || l == nil || bytes.Contains(out, []byte("Non-2xx")) {
		b.Fatalf("wrk %s: unexpected output:\n%s", url, out)
	}
	rps, _ = strconv.ParseFloat(string(m[1]), 64)
	p99ms, _ = strconv.ParseFloat(string(l[1]), 64)
	switch string(l[2]) {
	case "us":
		p99ms /= 1000
	case "s":
		p99ms *= 1000
	}
	return rps, p99ms
}

// rawHTTPInstance is one instance of the hello module driven through raw wazero.
type rawHTTPInstance struct {
	mod  api.Module
	http api.Function
	buf  uint32
	cap  uint32
}

// baseline serves the module with net/http and raw wazero on a loopback port.
func baseline(b *testing.B, wasm []byte) (string, func()) {
	ctx := context.Background()
	rt := wazero.NewRuntime(ctx)
	wasi_snapshot_preview1.MustInstantiate(ctx, rt)
	hb := rt.NewHostModuleBuilder("wasmpod")
	i32 := api.ValueTypeI32
	stub := func(name string, params, results []api.ValueType, fn api.GoModuleFunc) {
		hb.NewFunctionBuilder().WithGoModuleFunction(fn, params, results).Export(name)
	}
	greeting := []byte("hello")
	stub("log", []api.ValueType{i32, i32, i32}, nil, func(context.Context, api.Module, []uint64) {})
	stub("error", []api.ValueType{i32, i32}, nil, func(context.Context, api.Module, []uint64) {})
	stub("config_get", []api.ValueType{i32, i32, i32, i32}, []api.ValueType{i32}, func(_ context.Context, m api.Module, s []uint64) {
		key, _ := m.Memory().Read(uint32(s[0]), uint32(s[1]))
		if string(key) != "greeting" {
			s[0] = api.EncodeI32(-1)
			return
		}
		if uint32(s[3]) >= uint32(len(greeting)) {
			m.Memory().Write(uint32(s[2]), greeting)
		}
		s[0] = api.EncodeI32(int32(len(greeting)))
	})
	stub("metric_define", []api.ValueType{i32, i32, i32, i32, i32}, []api.ValueType{i32}, func(_ context.Context, _ api.Module, s []uint64) { s[0] = 0 })
	stub("metric_record", []api.ValueType{i32, api.ValueTypeF64}, nil, func(context.Context, api.Module, []uint64) {})
	stub("scale", []api.ValueType{i32}, []api.ValueType{i32}, func(_ context.Context, _ api.Module, s []uint64) { s[0] = api.EncodeI32(-1) })
	if _, err := hb.Instantiate(ctx); err != nil {
		b.Fatal(err)
	}
	cm, err := rt.CompileModule(ctx, wasm)
	if err != nil {
		b.Fatal(err)
	}
	pool := make(chan *rawHTTPInstance, 64)
	newInst := func() *rawHTTPInstance {
		m, err := rt.InstantiateModule(ctx, cm, wazero.NewModuleConfig().WithName("").WithStartFunctions())
		if err != nil {
			b.Fatal(err)
		}
		if f := m.ExportedFunction("_initialize"); f != nil {
			if _, err := f.Call(ctx); err != nil {
				b.Fatal(err)
			}
		}
		r, err := m.ExportedFunction("wasmpod_buffer").Call(ctx, 64<<10)
		if err != nil || r[0] == 0 {
			b.Fatalf("wasmpod_buffer: %v", err)
		}
		return &rawHTTPInstance{mod: m, http: m.ExportedFunction("wasmpod_http"), buf: uint32(r[0]), cap: 64 << 10}
	}
	for range 8 {
		pool <- newInst()
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		in := frameRequest(r, body)
		var inst *rawHTTPInstance
		select {
		case inst = <-pool:
		default:
			inst = newInst()
		}
		defer func() {
			select {
			case pool <- inst:
			default:
				inst.mod.Close(ctx)
			}
		}()
		if uint32(len(in)) > inst.cap || !inst.mod.Memory().Write(inst.buf, in) {
			http.Error(w, "too large", http.StatusRequestEntityTooLarge)
			return
		}
		res, err := inst.http.Call(ctx, uint64(len(in)))
		if err != nil || int64(res[0]) < 0 {
			http.Error(w, fmt.Sprint("guest failed: ", err), 500)
			return
		}
		n, addr := uint32(res[0]>>32), uint32(res[0])
		out, ok := inst.mod.Memory().Read(addr, n)
		if !ok {
			http.Error(w, "bad output", http.StatusBadGateway)
			return
		}
		writeResponse(w, out)
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go srv.Serve(ln)
	return ln.Addr().String(), func() { srv.Close(); rt.Close(ctx) }
}

// frameRequest frames an HTTP request as guest-sdk/ABI.md §2.2 says.
func frameRequest(r *http.Request, body []byte) []byte {
	var out []byte
	str := func(s []byte) {
		out = binary.LittleEndian.AppendUint32(out, uint32(len(s)))
		out = append(out, s...)
	}
	str([]byte(r.Method))
	str([]byte(r.RequestURI))
	n := 0
	for _, vs := range r.Header {
		n += len(vs)
	}
	out = binary.LittleEndian.AppendUint32(out, uint32(n))
	for k, vs := range r.Header {
		for _, v := range vs {
			str([]byte(k))
			str([]byte(v))
		}
	}
	str(body)
	return out
}

// writeResponse decodes a §2.2 response and writes it.
func writeResponse(w http.ResponseWriter, b []byte) {
	u32 := func() uint32 {
		if len(b) < 4 {
			b = nil
			return 0
		}
		v := binary.LittleEndian.Uint32(b)
		b = b[4:]
		return v
	}
	str := func() string {
		n := u32()
		if uint32(len(b)) < n {
			b = nil
			return ""
		}
		s := string(b[:n])
		b = b[n:]
		return s
	}
	status := u32()
	for n := u32(); n > 0; n-- {
		k, v := str(), str()
		w.Header().Add(k, v)
	}
	body := str()
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(int(status))
	io.WriteString(w, body)
}
