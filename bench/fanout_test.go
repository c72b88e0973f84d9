package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	goruntime "runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/wasmpod/wasmpod/cluster/scatter"
	"github.com/wasmpod/wasmpod/internal/wasmbuild"
	"github.com/wasmpod/wasmpod/runtime"
)

// fanoutDeadline is the one deadline each fan-out request gets, shared by all its calls.
const fanoutDeadline = 5 * time.Second

var input1K = func() []byte {
	b := make([]byte, 1024)
	for i := range b {
		b[i] = byte(i * 7)
	}
	return b
}()

// nativeMerge is benchleaf's merge as a Go function: the sum of the 8-byte parts.
func nativeMerge(parts [][]byte, out []byte) []byte {
	var s uint64
	for _, p := range parts {
		s += binary.LittleEndian.Uint64(p)
	}
	return binary.LittleEndian.AppendUint64(out, s)
}

// BenchmarkFanout measures one scatter/gather request in process: n leaves (one module per
// shard, 1 KiB input each) and one merge.
//
//   - wasmpod: scatter.Gather over local shards (runtime.Module per shard, guarded).
//   - wazero: the same fan-out written by hand on raw wazero with its termination guard
//     (WithCloseOnContextDone) and one deadline context per request shared by every call, on
//     the same modules, with the same worker scheme (GOMAXPROCS goroutines taking shard indexes
//     from an atomic counter while the caller waits).
//   - wasmpod-cleaf: the same with plugins/c-leaf (benchleaf's C twin) as the leaves: how close
//     the runtime gets to native when the guest's compiled code is close to it.
//   - wazero-bare: the same hand-written fan-out with no termination guard and no deadline:
//     what the guest's own code and wazero's call cost, the floor of any guarded runtime.
//   - native: the same worker scheme and logic as Go functions.
func BenchmarkFanout(b *testing.B) {
	path := wasmbuild.Go(b, "../plugins/benchleaf")
	wasm, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	cleaf, err := os.ReadFile(wasmbuild.C(b, "../plugins/c-leaf"))
	if err != nil {
		b.Fatal(err)
	}
	for _, n := range []int{8, 64, 256} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			want := nativeFanout(n, goruntime.GOMAXPROCS(0))
			b.Run("wasmpod", func(b *testing.B) { runWasmpodFanout(b, newWasmpodFanout(b, wasm, wasm, n), want) })
			b.Run("wasmpod-cleaf", func(b *testing.B) { runWasmpodFanout(b, newWasmpodFanout(b, cleaf, wasm, n), want) })
			b.Run("wazero", func(b *testing.B) { benchWazeroFanout(b, wasm, n, want, true) })
			b.Run("wazero-bare", func(b *testing.B) { benchWazeroFanout(b, wasm, n, want, false) })
			// The issue 17 ratios, measured alternating (see alternatingFanout).
			b.Run("alternating", func(b *testing.B) {
				alternatingFanout(b, newWasmpodFanout(b, wasm, wasm, n), newRawFanout(b, wasm, n, false), n, want)
			})
			b.Run("native", func(b *testing.B) {
				b.ReportAllocs()
				w := goruntime.GOMAXPROCS(0)
				for b.Loop() {
					nativeFanout(n, w)
				}
			})
		})
	}
}

// newWasmpodFanout is a Gather over n local shards of the leaf module (a module each) and a
// merge module, closed when b's test ends.
func newWasmpodFanout(b *testing.B, leaf, merge []byte, n int) *scatter.Gather {
	ctx := context.Background()
	e := newEngine(b)
	shards := make([]scatter.Shard, n)
	for i := range shards {
		cfg := runtime.DefaultModuleConfig(fmt.Sprintf("leaf-%d", i))
		cfg.MaxMemoryPages = 1024
		m, err := e.Load(ctx, leaf, cfg)
		if err != nil {
			b.Fatal(err)
		}
		if err := m.Start(ctx, runtime.StartOptions{}); err != nil {
			b.Fatal(err)
		}
		shards[i] = scatter.Shard{Name: cfg.Name, Replicas: []scatter.Replica{{Leaf: scatter.NewModuleLeaf(m)}}}
	}
	mm := loadWasmpod(b, e, merge, false)
	cfg := scatter.DefaultConfig()
	cfg.Deadline = fanoutDeadline
	g, err := scatter.New(shards, mm, cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { g.Close() })
	return g
}

// runWasmpodFanout measures g.Do, checking each answer against want.
func runWasmpodFanout(b *testing.B, g *scatter.Gather, want uint64) {
	ctx := context.Background()
	dst := make([]byte, 0, 8)
	b.ReportAllocs()
	for b.Loop() {
		out, res, err := g.Do(ctx, input1K, dst[:0])
		if err != nil || res.Partial {
			b.Fatalf("Do: %v, partial %v", err, res.Missing)
		}
		if binary.LittleEndian.Uint64(out) != want {
			b.Fatalf("merge %d, want %d", binary.LittleEndian.Uint64(out), want)
		}
	}
}

// rawInstance is one benchleaf instance on raw wazero, called the careful way: cached function
// handles, a reused stack, the guest's own input buffer.
type rawInstance struct {
	mod         api.Module
	leaf, merge api.Function
	buf         uint32
	stack       []uint64
	out         []byte
}

func (r *rawInstance) call(ctx context.Context, f api.Function, in []byte) error {
	if !r.mod.Memory().Write(r.buf, in) {
		return fmt.Errorf("input does not fit")
	}
	r.stack[0] = uint64(len(in))
	if err := f.CallWithStack(ctx, r.stack); err != nil {
		return err
	}
	res := r.stack[0]
	if int64(res) < 0 {
		return fmt.Errorf("guest error %d", -int64(res))
	}
	o, ok := r.mod.Memory().Read(uint32(res), uint32(res>>32))
	if !ok {
		return fmt.Errorf("output out of range")
	}
	r.out = append(r.out[:0], o...)
	return nil
}

// rawFanout is the hand-written fan-out on raw wazero.
type rawFanout struct {
	leaves  []*rawInstance
	merge   *rawInstance
	workers int
	guarded bool // one deadline context per request (the guard's runtime closes on it)

	// per request
	ctx    context.Context
	next   atomic.Int32
	failed atomic.Bool
	wg     sync.WaitGroup
	frame  []byte
}

func (f *rawFanout) work() {
	defer f.wg.Done()
	for {
		i := int(f.next.Add(1)) - 1
		if i >= len(f.leaves) {
			return
		}
		l := f.leaves[i]
		if err := l.call(f.ctx, l.leaf, input1K); err != nil {
			f.failed.Store(true)
		}
	}
}

func (f *rawFanout) do() (uint64, error) {
	ctx := context.Background()
	if f.guarded {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, fanoutDeadline)
		defer cancel()
	}
	f.ctx = ctx
	f.next.Store(0)
	w := min(f.workers, len(f.leaves))
	f.wg.Add(w)
	for range w {
		go f.work()
	}
	f.wg.Wait()
	if f.failed.Load() {
		return 0, fmt.Errorf("a leaf failed")
	}
	// Merge framing (guest-sdk/ABI.md 2.1).
	fr := binary.LittleEndian.AppendUint32(f.frame[:0], uint32(len(f.leaves)))
	for _, l := range f.leaves {
		fr = binary.LittleEndian.AppendUint32(fr, uint32(len(l.out)))
		fr = append(fr, l.out...)
	}
	f.frame = fr
	if err := f.merge.call(ctx, f.merge.merge, fr); err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(f.merge.out), nil
}

// benchWazeroFanout runs the hand-written fan-out: guarded, with wazero's termination guard for
// every leaf call and one shared request deadline; else bare, with neither.
func benchWazeroFanout(b *testing.B, wasm []byte, n int, want uint64, guarded bool) {
	f := newRawFanout(b, wasm, n, guarded)
	b.ReportAllocs()
	for b.Loop() {
		got, err := f.do()
		if err != nil {
			b.Fatal(err)
		}
		if got != want {
			b.Fatalf("merge %d, want %d", got, want)
		}
	}
}

// newRawFanout is the fan-out over n instances of wasm on raw wazero (guarded: with wazero's
// own termination guard and a deadline per call).
func newRawFanout(b *testing.B, wasm []byte, n int, guarded bool) *rawFanout {
	ctx := context.Background()
	rt := newRawRuntime(b, guarded)
	compiled, err := rt.CompileModule(ctx, wasm)
	if err != nil {
		b.Fatal(err)
	}
	newInstance := func(name string) *rawInstance {
		mod, err := rt.InstantiateModule(ctx, compiled, wazero.NewModuleConfig().WithStartFunctions("_initialize").WithName(name))
		if err != nil {
			b.Fatal(err)
		}
		res, err := mod.ExportedFunction("wasmpod_buffer").Call(ctx, 64<<10)
		if err != nil || res[0] == 0 {
			b.Fatalf("wasmpod_buffer: %v", err)
		}
		return &rawInstance{mod: mod, leaf: mod.ExportedFunction("wasmpod_leaf"), merge: mod.ExportedFunction("wasmpod_merge"), buf: uint32(res[0]), stack: make([]uint64, 1), out: make([]byte, 0, 8)}
	}
	f := &rawFanout{workers: goruntime.GOMAXPROCS(0), merge: newInstance("merge"), guarded: guarded}
	for i := range n {
		f.leaves = append(f.leaves, newInstance(fmt.Sprintf("leaf-%d", i)))
	}
	return f
}

// fanoutTurn is how many requests one side of the alternating fan-out makes in a turn.
const fanoutTurn = 10

// alternatingFanout measures wasmpod (g), the same fan-out on bare wazero (raw: no guard, no
// deadline; the Go guest's floor) and native Go in turns of fanoutTurn requests inside one timed
// loop, each round starting with another side, so that drift of the machine (this kind's
// native fan-out ran 50 us in one process and 130 us in another) falls on all three alike. It
// reports each side's time per request and the ratios to native and to bare wazero.
func alternatingFanout(b *testing.B, g *scatter.Gather, raw *rawFanout, n int, want uint64) {
	ctx := context.Background()
	dst := make([]byte, 0, 8)
	w := goruntime.GOMAXPROCS(0)
	sides := []func(){
		func() {
			out, res, err := g.Do(ctx, input1K, dst[:0])
			if err != nil || res.Partial || binary.LittleEndian.Uint64(out) != want {
				b.Fatalf("wasmpod: %v, partial %v", err, res.Missing)
			}
		},
		func() {
			if got, err := raw.do(); err != nil || got != want {
				b.Fatalf("bare wazero: %d, %v", got, err)
			}
		},
		func() {
			if got := nativeFanout(n, w); got != want {
				b.Fatalf("native: %d", got)
			}
		},
	}
	var spent [3]time.Duration
	round := 0
	for b.Loop() {
		for k := range sides {
			i := (round + k) % len(sides)
			start := time.Now()
			for range fanoutTurn {
				sides[i]()
			}
			spent[i] += time.Since(start)
		}
		round++
	}
	per := func(i int) float64 { return float64(spent[i].Nanoseconds()) / float64(round*fanoutTurn) / 1e3 }
	b.ReportMetric(per(0), "wasmpod-us/req")
	b.ReportMetric(per(1), "wazero-bare-us/req")
	b.ReportMetric(per(2), "native-us/req")
	b.ReportMetric(per(0)/per(2), "wasmpod/native")
	b.ReportMetric(per(1)/per(2), "wazero-bare/native")
	b.ReportMetric(per(0)/per(1), "wasmpod/wazero-bare")
}

// nativeState is the native fan-out's reused state.
type nativeState struct {
	next  atomic.Int32
	wg    sync.WaitGroup
	parts [][]byte
	out   []byte
}

var nativePool = map[int]*nativeState{}

// nativeFanout is the fan-out as Go functions: the same workers, leaf and merge logic.
func nativeFanout(n, workers int) uint64 {
	st := nativePool[n]
	if st == nil {
		st = &nativeState{parts: make([][]byte, n)}
		for i := range st.parts {
			st.parts[i] = make([]byte, 0, 8)
		}
		nativePool[n] = st
	}
	st.next.Store(0)
	w := min(workers, n)
	st.wg.Add(w)
	for range w {
		go func() {
			defer st.wg.Done()
			for {
				i := int(st.next.Add(1)) - 1
				if i >= n {
					return
				}
				st.parts[i] = nativeLeaf(input1K, st.parts[i][:0])
			}
		}()
	}
	st.wg.Wait()
	st.out = nativeMerge(st.parts, st.out[:0])
	return binary.LittleEndian.Uint64(st.out)
}
