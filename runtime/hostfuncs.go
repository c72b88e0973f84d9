package runtime

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"
	"unicode/utf8"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/wasmpod/wasmpod/runtime/internal/instrument"
)

// errCut is the panic value __yield uses to end a call whose instance expired.
var errCut = errors.New("wasmpod: call cut by the host")

// errStackBudget is the panic value __yield uses when a guest's call depth exceeds its stack
// budget (internal/instrument); classify reports it as a stack-overflow trap.
var errStackBudget = errors.New("stack overflow: the call nesting is over the instance's wasm stack budget")

// ImportModule is the import namespace of the native ABI's host functions.
const ImportModule = "wasmpod"

// ValueType is a WebAssembly value type in a host function signature.
type ValueType byte

// Value types.
const (
	I32 ValueType = iota + 1
	I64
	F32
	F64
)

func (v ValueType) String() string {
	switch v {
	case I32:
		return "i32"
	case I64:
		return "i64"
	case F32:
		return "f32"
	case F64:
		return "f64"
	}
	return "?"
}

func (v ValueType) api() api.ValueType {
	switch v {
	case I64:
		return api.ValueTypeI64
	case F32:
		return api.ValueTypeF32
	case F64:
		return api.ValueTypeF64
	}
	return api.ValueTypeI32
}

// HostFunction is an extra host function in the "wasmpod" import namespace.
type HostFunction struct {
	Name    string
	Params  []ValueType
	Results []ValueType
	// Fn runs on the calling goroutine, during the guest's call. stack holds the parameters on
	// entry (as wasm encodes them in uint64) and must hold the results on return.
	Fn func(ctx context.Context, caller Caller, stack []uint64)
}

// Caller is the instance that called a host function. It is valid only during that call.
type Caller struct{ inst *instance }

// Module is the calling module, or nil if the caller is not a module of this engine.
func (c Caller) Module() *Module {
	if c.inst == nil {
		return nil
	}
	return c.inst.m
}

// Read returns a copy of n bytes of guest memory at ptr; false if out of range.
func (c Caller) Read(ptr, n uint32) ([]byte, bool) {
	if c.inst == nil {
		return nil, false
	}
	b, ok := c.inst.mem.Read(ptr, n)
	if !ok {
		return nil, false
	}
	return append([]byte(nil), b...), true
}

// Write copies b into guest memory at ptr; false if out of range.
func (c Caller) Write(ptr uint32, b []byte) bool {
	if c.inst == nil {
		return false
	}
	return c.inst.mem.Write(ptr, b)
}

type hostSig struct{ params, results []ValueType }

func (s hostSig) String() string { return fmt.Sprintf("%v -> %v", s.params, s.results) }

func abiImportSigs() map[string]hostSig {
	return map[string]hostSig{
		"log":           {params: []ValueType{I32, I32, I32}},
		"error":         {params: []ValueType{I32, I32}},
		"config_get":    {params: []ValueType{I32, I32, I32, I32}, results: []ValueType{I32}},
		"metric_define": {params: []ValueType{I32, I32, I32, I32, I32}, results: []ValueType{I32}},
		"metric_record": {params: []ValueType{I32, F64}},
		"scale":         {params: []ValueType{I32}, results: []ValueType{I32}},
	}
}

const maxErrorMessage = 4 << 10

func (e *Engine) instantiateHostModule(ctx context.Context, rt wazero.Runtime) error {
	b := rt.NewHostModuleBuilder(ImportModule)
	sigs := abiImportSigs()
	def := func(name string, fn api.GoModuleFunc) {
		s := sigs[name]
		b.NewFunctionBuilder().WithGoModuleFunction(fn, apiTypes(s.params), apiTypes(s.results)).Export(name)
	}
	def("log", func(ctx context.Context, mod api.Module, stack []uint64) {
		inst := e.instanceOf(mod)
		if inst != nil {
			inst.noteHostCall("log")
		}
		if inst == nil {
			return
		}
		level := Level(int32(stack[0]))
		if level < LevelDebug || level > LevelError {
			level = LevelInfo
		}
		msg, ok := mod.Memory().Read(uint32(stack[1]), uint32(stack[2]))
		if !ok {
			return
		}
		if len(msg) > maxLogLine {
			msg = msg[:maxLogLine]
		}
		inst.m.logBytes(level, "guest", msg)
	})
	def("error", func(ctx context.Context, mod api.Module, stack []uint64) {
		inst := e.instanceOf(mod)
		if inst != nil {
			inst.noteHostCall("error")
		}
		if inst == nil {
			return
		}
		n := uint32(stack[1])
		if n > maxErrorMessage {
			n = maxErrorMessage + 1 // the byte after the cut tells whether it splits a character
		}
		msg, ok := mod.Memory().Read(uint32(stack[0]), n)
		if !ok {
			return
		}
		inst.errMsg = append(inst.errMsg[:0], cutAtRune(msg, maxErrorMessage)...)
		inst.hasErrMsg = true
	})
	def("config_get", func(ctx context.Context, mod api.Module, stack []uint64) {
		inst := e.instanceOf(mod)
		key, ok := mod.Memory().Read(uint32(stack[0]), uint32(stack[1]))
		if inst == nil || !ok {
			stack[0] = api.EncodeI32(-1)
			return
		}
		v, found := inst.m.cfg.Config[string(key)]
		if !found {
			stack[0] = api.EncodeI32(-1)
			return
		}
		if uint64(len(v)) <= uint64(uint32(stack[3])) {
			mod.Memory().Write(uint32(stack[2]), []byte(v))
		}
		stack[0] = api.EncodeI32(int32(len(v)))
	})
	def("metric_define", func(ctx context.Context, mod api.Module, stack []uint64) {
		inst := e.instanceOf(mod)
		if inst != nil {
			inst.noteHostCall("metric_define")
		}
		name, ok1 := mod.Memory().Read(uint32(stack[1]), uint32(stack[2]))
		help, ok2 := mod.Memory().Read(uint32(stack[3]), uint32(stack[4]))
		if inst == nil || !ok1 || !ok2 {
			stack[0] = api.EncodeI32(-1)
			return
		}
		stack[0] = api.EncodeI32(inst.m.metrics.define(MetricKind(int32(stack[0])), string(name), metricHelp(help)))
	})
	def("metric_record", func(ctx context.Context, mod api.Module, stack []uint64) {
		inst := e.instanceOf(mod)
		if inst != nil {
			inst.noteHostCall("metric_record")
		}
		if inst == nil {
			return
		}
		inst.m.metrics.record(int32(stack[0]), math.Float64frombits(stack[1]))
	})
	def("scale", func(ctx context.Context, mod api.Module, stack []uint64) {
		inst := e.instanceOf(mod)
		if inst != nil {
			inst.noteHostCall("scale")
		}
		if inst == nil {
			stack[0] = api.EncodeI32(-1)
			return
		}
		stack[0] = api.EncodeI32(int32(inst.m.scaleBy(int(int32(stack[0])))))
	})
	// __yield is called by instrumented guests when their fuel runs out (about every
	// YieldInterval function entries, exits, loop iterations or 16-byte units of bulk memory
	// work): it gives the Go scheduler a safe point, lets a host scheduler hold low-priority work
	// back (Yield), and cuts the call once the instance has expired. With ReasonStack the guest's
	// stack budget ran out: the call traps with a stack overflow.
	b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(ctx context.Context, mod api.Module, stack []uint64) {
		inst := e.instanceOf(mod)
		if inst == nil {
			if api.DecodeI32(stack[0]) == instrument.ReasonStack {
				panic(errStackBudget)
			}
			stack[0] = api.EncodeI32(yieldEvery)
			return
		}
		if inst.yielded() {
			panic(errCut)
		}
		if api.DecodeI32(stack[0]) == instrument.ReasonStack {
			panic(errStackBudget)
		}
		if y := inst.m.cfg.Yield; y != nil {
			y(ctx, inst.done)
			if inst.expired.Load() {
				panic(errCut)
			}
		}
		stack[0] = api.EncodeI32(inst.m.yieldInterval)
	}), []api.ValueType{api.ValueTypeI32}, []api.ValueType{api.ValueTypeI32}).Export(instrument.YieldName)
	for _, f := range e.cfg.Imports {
		f := f
		b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(ctx context.Context, mod api.Module, stack []uint64) {
			inst := e.instanceOf(mod)
			if inst != nil {
				// A host import may block: the call's deadline is fixed before it runs, so
				// the time it takes counts (see armLazy).
				inst.stamp()
				inst.noteHostCall(f.Name)
			}
			f.Fn(ctx, Caller{inst: inst}, stack)
		}), apiTypes(f.Params), apiTypes(f.Results)).Export(f.Name)
	}
	if _, err := b.Instantiate(ctx); err != nil {
		return fmt.Errorf("runtime: host module: %w", err)
	}
	return nil
}

func apiTypes(ts []ValueType) []api.ValueType {
	out := make([]api.ValueType, len(ts))
	for i, t := range ts {
		out[i] = t.api()
	}
	return out
}

func fromAPI(t api.ValueType) ValueType {
	switch t {
	case api.ValueTypeI32:
		return I32
	case api.ValueTypeI64:
		return I64
	case api.ValueTypeF32:
		return F32
	case api.ValueTypeF64:
		return F64
	}
	return 0
}

func sameTypes(a []ValueType, b []api.ValueType) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if fromAPI(b[i]) != a[i] {
			return false
		}
	}
	return true
}

// log emits a runtime or guest log line for the module, within its log rate limit (a runtime
// line about a module is mostly one its guest caused: a trap, a scale request).
func (m *Module) log(level Level, source, msg string) { logLine(m, level, source, msg) }

// logBytes is log for a line in guest memory: a dropped line is not copied.
func (m *Module) logBytes(level Level, source string, msg []byte) { logLine(m, level, source, msg) }

// logLine sends one of m's lines to the engine's sink if its log rate limit admits it.
func logLine[T string | []byte](m *Module, level Level, source string, msg T) {
	sink := m.e.cfg.Logs
	if sink == nil {
		return
	}
	now := time.Now()
	if !m.admitLog(sink, now, len(msg)) {
		return
	}
	sink.Log(LogEntry{Time: now, Module: m.cfg.Name, Level: level, Source: source, Message: string(msg)})
}

// cutAtRune returns b, or its longest prefix of at most n bytes that does not end inside a
// UTF-8 sequence (within the last three bytes: a longer run of continuation bytes is not UTF-8
// and is cut at n).
func cutAtRune(b []byte, n int) []byte {
	if len(b) <= n {
		return b
	}
	for k := n; k > 0 && k > n-utf8.UTFMax; k-- {
		if utf8.RuneStart(b[k]) {
			return b[:k]
		}
	}
	return b[:n]
}
