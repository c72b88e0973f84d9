package bench

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
	"time"

	extism "github.com/extism/go-sdk"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/wasmpod/wasmpod/internal/wasmbuild"
	"github.com/wasmpod/wasmpod/runtime"
)

var input256 = func() []byte {
	b := make([]byte, 256)
	for i := range b {
		b[i] = byte(i * 31)
	}
	return b
}()

// nativeLeaf is the leaf's logic as a Go function, writing into a reused buffer like the guest.
func nativeLeaf(in, out []byte) []byte {
	var s uint64
	for _, b := range in {
		s += uint64(b)
	}
	return binary.LittleEndian.AppendUint64(out, s)
}

func cacheDir(sub string) string {
	return filepath.Join(wasmbuild.CacheDir(), "wazero-bench-cache", sub)
}

// rawGuest is benchleaf instantiated on a bare wazero runtime, the way a careful hand-written
// host would call it: cached function handles, a reused stack, the guest's own input buffer.
type rawGuest struct {
	rt           wazero.Runtime
	mod          api.Module
	noop, leaf   api.Function
	bufPtr       uint32
	stack        []uint64
	out          []byte
	withDeadline bool
}

// newRawRuntime is the baselines' hand-written host: a bare wazero runtime (with wazero's own
// termination guard when guarded), WASI, and the wasmpod host functions the Go SDK imports,
// none of which is called on the benchmarked paths.
func newRawRuntime(b *testing.B, guarded bool) wazero.Runtime {
	ctx := context.Background()
	cache, err := wazero.NewCompilationCacheWithDir(cacheDir(map[bool]string{true: "guarded", false: "bare"}[guarded]))
	if err != nil {
		b.Fatal(err)
	}
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithCloseOnContextDone(guarded).WithCompilationCache(cache))
	b.Cleanup(func() { rt.Close(ctx); cache.Close(ctx) })
	wasi_snapshot_preview1.MustInstantiate(ctx, rt)
	hb := rt.NewHostModuleBuilder("wasmpod")
	i32, f64 := api.ValueTypeI32, api.ValueTypeF64
	nothing := api.GoModuleFunc(func(context.Context, api.Module, []uint64) {})
	minus1 := api.GoModuleFunc(func(_ context.Context, _ api.Module, s []uint64) { s[0] = api.EncodeI32(-1) })
	hb.NewFunctionBuilder().WithGoModuleFunction(nothing, []api.ValueType{i32, i32, i32}, nil).Export("log")
	hb.NewFunctionBuilder().WithGoModuleFunction(nothing, []api.ValueType{i32, i32}, nil).Export("error")
	hb.NewFunctionBuilder().WithGoModuleFunction(minus1, []api.ValueType{i32, i32, i32, i32}, []api.ValueType{i32}).Export("config_get")
	hb.NewFunctionBuilder().WithGoModuleFunction(minus1, []api.ValueType{i32, i32, i32, i32, i32}, []api.ValueType{i32}).Export("metric_define")
	hb.NewFunctionBuilder().WithGoModuleFunction(nothing, []api.ValueType{i32, f64}, nil).Export("metric_record")
	hb.NewFunctionBuilder().WithGoModuleFunction(minus1, []api.ValueType{i32}, []api.ValueType{i32}).Export("scale")
	if _, err := hb.Instantiate(ctx); err != nil {
		b.Fatal(err)
	}
	return rt
}

func newRawGuest(b *testing.B, wasm []byte, guarded bool) *rawGuest {
	ctx := context.Background()
	rt := newRawRuntime(b, guarded)
	mod, err := rt.InstantiateWithConfig(ctx, wasm, wazero.NewModuleConfig().WithStartFunctions("_initialize").WithName(""))
	if err != nil {
		b.Fatal(err)
	}
	g := &rawGuest{rt: rt, mod: mod, noop: mod.ExportedFunction("wasmpod_handle"), leaf: mod.ExportedFunction("wasmpod_leaf"), stack: make([]uint64, 1), out: make([]byte, 0, 64), withDeadline: guarded}
	res, err := mod.ExportedFunction("wasmpod_buffer").Call(ctx, 64<<10)
	if err != nil || res[0] == 0 {
		b.Fatalf("wasmpod_buffer: %v", err)
	}
	g.bufPtr = uint32(res[0])
	return g
}

func (g *rawGuest) call(b *testing.B, f api.Function, in []byte) {
	ctx := context.Background()
	var cancel context.CancelFunc
	if g.withDeadline {
		// The naive way to get a termination guarantee: a deadline context per call.
		ctx, cancel = context.WithTimeout(ctx, 5*time.Second)
	}
	if len(in) > 0 {
		g.mod.Memory().Write(g.bufPtr, in)
	}
	g.stack[0] = uint64(len(in))
	if err := f.CallWithStack(ctx, g.stack); err != nil {
		b.Fatal(err)
	}
	if cancel != nil {
		cancel()
	}
	r := g.stack[0]
	if n := uint32(r >> 32); n > 0 {
		o, _ := g.mod.Memory().Read(uint32(r), n)
		g.out = append(g.out[:0], o...)
	}
}

func loadWasmpod(b *testing.B, e *runtime.Engine, wasm []byte, trusted bool) *runtime.Module {
	cfg := runtime.DefaultModuleConfig("benchleaf")
	cfg.Trusted = trusted
	cfg.MaxMemoryPages = 1024
	m, err := e.Load(context.Background(), wasm, cfg)
	if err != nil {
		b.Fatal(err)
	}
	if err := m.Start(context.Background(), runtime.StartOptions{}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { m.Close(context.Background()) })
	return m
}

func newExtism(b *testing.B, wasmPath string) *extism.Plugin {
	ctx := context.Background()
	manifest := extism.Manifest{Wasm: []extism.Wasm{extism.WasmFile{Path: wasmPath}}}
	cp, err := extism.NewCompiledPlugin(ctx, manifest, extism.PluginConfig{EnableWasi: true}, nil)
	if err != nil {
		b.Fatal(err)
	}
	p, err := cp.Instance(ctx, extism.PluginInstanceConfig{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.Close(ctx); cp.Close(ctx) })
	return p
}

// newEngine is a wasmpod engine with the benchmarks' compilation cache, closed when b's test
// ends.
func newEngine(b testing.TB) *runtime.Engine {
	ecfg := runtime.DefaultConfig()
	ecfg.CacheDir = cacheDir("wasmpod")
	e, err := runtime.NewEngine(context.Background(), ecfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { e.Close(context.Background()) })
	return e
}

// BenchmarkCall measures one warm call: a noop export and a leaf that sums 256 input bytes and
// returns 8, through wasmpod and through its baselines, on the same guest.
func BenchmarkCall(b *testing.B) {
	leafPath := wasmbuild.Go(b, "../plugins/benchleaf")
	wasm, err := os.ReadFile(leafPath)
	if err != nil {
		b.Fatal(err)
	}
	extPath := wasmbuild.Go(b, "guests/extismleaf")

	e := newEngine(b)
	guarded := loadWasmpod(b, e, wasm, false)
	trusted := loadWasmpod(b, e, wasm, true)
	bare := newRawGuest(b, wasm, false)
	naive := newRawGuest(b, wasm, true)
	ext := newExtism(b, extPath)
	extWasm, err := os.ReadFile(extPath)
	if err != nil {
		b.Fatal(err)
	}
	// The same Extism plugin through wasmpod's runtime (ABIExtism): pool, limits, stats and
	// deadline are wasmpod's, the call is extism go-sdk's.
	xcfg := runtime.DefaultModuleConfig("extismleaf")
	xcfg.ABI = runtime.ABIExtism
	xcfg.MaxMemoryPages = 1024
	xcfg.ExtismFunctions = map[runtime.Role]string{runtime.RoleHandle: "noop"}
	viaWasmpod, err := e.Load(context.Background(), extWasm, xcfg)
	if err != nil {
		b.Fatal(err)
	}
	if err := viaWasmpod.Start(context.Background(), runtime.StartOptions{}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { viaWasmpod.Close(context.Background()) })

	ctx := context.Background()
	dst := make([]byte, 0, 64)
	wasmpodCall := func(m *runtime.Module, role runtime.Role, in []byte) func(*testing.B) {
		return func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				out, err := m.Call(ctx, role, in, dst[:0])
				if err != nil {
					b.Fatal(err)
				}
				dst = out
			}
		}
	}
	rawCall := func(g *rawGuest, leaf bool) func(*testing.B) {
		return func(b *testing.B) {
			b.ReportAllocs()
			f, in := g.noop, []byte(nil)
			if leaf {
				f, in = g.leaf, input256
			}
			for b.Loop() {
				g.call(b, f, in)
			}
		}
	}
	extCall := func(fn string, in []byte) func(*testing.B) {
		return func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := ext.Call(fn, in); err != nil {
					b.Fatal(err)
				}
			}
		}
	}

	// Check once that every path computes the same leaf result.
	want := nativeLeaf(input256, nil)
	got, err := guarded.Call(ctx, runtime.RoleLeaf, input256, nil)
	if err != nil || string(got) != string(want) {
		b.Fatalf("wasmpod leaf %x %v, want %x", got, err, want)
	}
	bare.call(b, bare.leaf, input256)
	if string(bare.out) != string(want) {
		b.Fatalf("wazero leaf %x, want %x", bare.out, want)
	}
	if _, out, err := ext.Call("leaf", input256); err != nil || string(out) != string(want) {
		b.Fatalf("extism leaf %x %v, want %x", out, err, want)
	}
	if out, err := viaWasmpod.Call(ctx, runtime.RoleLeaf, input256, nil); err != nil || string(out) != string(want) {
		b.Fatalf("wasmpod-extism leaf %x %v, want %x", out, err, want)
	}

	b.Run("noop/wasmpod", wasmpodCall(guarded, runtime.RoleHandle, nil))
	b.Run("noop/wasmpod-trusted", wasmpodCall(trusted, runtime.RoleHandle, nil))
	b.Run("noop/wazero", rawCall(bare, false))
	b.Run("noop/wazero-guarded", rawCall(naive, false))
	b.Run("noop/extism", extCall("noop", nil))
	b.Run("noop/wasmpod-extism", wasmpodCall(viaWasmpod, runtime.RoleHandle, nil))
	b.Run("leaf256/wasmpod", wasmpodCall(guarded, runtime.RoleLeaf, input256))
	b.Run("leaf256/wasmpod-trusted", wasmpodCall(trusted, runtime.RoleLeaf, input256))
	b.Run("leaf256/wazero", rawCall(bare, true))
	b.Run("leaf256/wazero-guarded", rawCall(naive, true))
	b.Run("leaf256/extism", extCall("leaf", input256))
	b.Run("leaf256/wasmpod-extism", wasmpodCall(viaWasmpod, runtime.RoleLeaf, input256))
	b.Run("leaf256/native", func(b *testing.B) {
		b.ReportAllocs()
		out := make([]byte, 0, 8)
		for b.Loop() {
			out = nativeLeaf(input256, out[:0])
		}
	})

	// The issue 17 ratios, measured alternating: guarded, trusted and bare calls take turns
	// in blocks inside one timed loop, so the machine's drift (CPU steal, frequency, a
	// neighbour's burst) falls on all three alike instead of on whichever ran in its moment.
	b.Run("noop/alternating", alternatingCalls(guarded, trusted, bare, runtime.RoleHandle, nil, bare.noop))
	b.Run("leaf256/alternating", alternatingCalls(guarded, trusted, bare, runtime.RoleLeaf, input256, bare.leaf))
}

// altBlock is how many calls one side makes in a turn: long enough that reading the clock
// around a turn costs nothing next to it, short enough that drift within a round is small.
const altBlock = 200

// alternatingCalls measures wasmpod guarded, wasmpod trusted and bare wazero in turns of
// altBlock calls (one op is one turn of each, starting with a different side each round so no
// side always follows the same one) and reports each one's ns per call and the two ratios.
func alternatingCalls(guarded, trusted *runtime.Module, bare *rawGuest, role runtime.Role, in []byte, f api.Function) func(*testing.B) {
	return func(b *testing.B) {
		ctx := context.Background()
		dst := make([]byte, 0, 64)
		wasmpod := func(m *runtime.Module) func() {
			return func() {
				for range altBlock {
					out, err := m.Call(ctx, role, in, dst[:0])
					if err != nil {
						b.Fatal(err)
					}
					dst = out
				}
			}
		}
		sides := [3]func(){wasmpod(guarded), wasmpod(trusted), func() {
			for range altBlock {
				bare.call(b, f, in)
			}
		}}
		var took [3]time.Duration
		round := 0
		for b.Loop() {
			for k := range sides {
				s := (round + k) % len(sides)
				t0 := time.Now()
				sides[s]()
				took[s] += time.Since(t0)
			}
			round++
		}
		per := func(s int) float64 { return float64(took[s].Nanoseconds()) / float64(round*altBlock) }
		b.ReportMetric(per(0), "guarded-ns/call")
		b.ReportMetric(per(1), "trusted-ns/call")
		b.ReportMetric(per(2), "wazero-ns/call")
		b.ReportMetric(per(0)/per(2), "guarded/wazero")
		b.ReportMetric(per(1)/per(2), "trusted/wazero")
	}
}
