package instrument_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/wasmpod/wasmpod/internal/wasmbuild"
	"github.com/wasmpod/wasmpod/runtime/internal/instrument"
)

type yieldState struct {
	fuel      int32
	yields    int
	stop      bool
	stopAfter int // cut at this yield, if positive
	overflows int
}

// instantiate runs wasm with the imports indices.wat needs and a __yield that counts its calls
// and refills the fuel, or cuts the call once stop is set.
func instantiate(t *testing.T, wasm []byte, ys *yieldState) api.Module {
	t.Helper()
	return instantiateIn(t, wazero.NewRuntime(context.Background()), wasm, ys)
}

// instantiateIn is instantiate in the runtime rt, which it closes when the test ends.
func instantiateIn(t *testing.T, rt wazero.Runtime, wasm []byte, ys *yieldState) api.Module {
	t.Helper()
	ctx := context.Background()
	t.Cleanup(func() { rt.Close(ctx) })
	if _, err := rt.NewHostModuleBuilder("env").
		NewFunctionBuilder().WithFunc(func() int32 { return 44 }).Export("imp").
		Instantiate(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.InstantiateWithConfig(ctx, watBytes(t, "", `(module (global (export "g") i32 (i32.const 55)))`), wazero.NewModuleConfig().WithName("envg")); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.NewHostModuleBuilder(instrument.ImportModule).
		NewFunctionBuilder().WithFunc(func(reason int32) int32 {
		if reason == instrument.ReasonStack {
			ys.overflows++
			panic(errors.New("stack budget exhausted"))
		}
		ys.yields++
		if ys.stop || (ys.stopAfter > 0 && ys.yields >= ys.stopAfter) {
			panic(errors.New("cut"))
		}
		return ys.fuel
	}).Export(instrument.YieldName).Instantiate(ctx); err != nil {
		t.Fatal(err)
	}
	mod, err := rt.InstantiateWithConfig(ctx, wasm, wazero.NewModuleConfig().WithName("m"))
	if err != nil {
		t.Fatalf("instantiate: %v", err)
	}
	if f := mod.ExportedFunction(instrument.StartName); f != nil {
		if _, err := f.Call(ctx); err != nil {
			t.Fatalf("start function: %v", err)
		}
	}
	return mod
}

// watBytes assembles a file (or inline source) with names, so the name section is exercised.
func watBytes(t testing.TB, path, src string) []byte {
	t.Helper()
	tool := wasmbuild.RequireTool(t, "wat2wasm")
	dir := t.TempDir()
	if path == "" {
		path = filepath.Join(dir, "in.wat")
		if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(dir, "m.wasm")
	if b, err := exec.Command(tool, "--debug-names", path, "-o", out).CombinedOutput(); err != nil {
		t.Fatalf("wat2wasm: %v\n%s", err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func call(t *testing.T, m api.Module, name string, args ...uint64) (int32, error) {
	t.Helper()
	return callCtx(context.Background(), m, name, args...)
}

// callCtx is call with the call's context ctx.
func callCtx(ctx context.Context, m api.Module, name string, args ...uint64) (int32, error) {
	res, err := m.ExportedFunction(name).Call(ctx, args...)
	if err != nil {
		return 0, err
	}
	return api.DecodeI32(res[0]), nil
}

func TestInstrumentPreservesBehaviour(t *testing.T) {
	orig := watBytes(t, "testdata/indices.wat", "")
	inst, err := instrument.Instrument(orig, 10)
	if err != nil {
		t.Fatal(err)
	}
	plain := instantiate(t, orig, &yieldState{fuel: 10})
	ys := &yieldState{fuel: 10}
	checked := instantiate(t, inst, ys)
	cases := []struct {
		fn   string
		args []uint64
		want int32
	}{
		{"direct", nil, 22},
		{"indirect", []uint64{0}, 11},
		{"indirect", []uint64{1}, 22},
		{"via_global", nil, 33},
		{"imported", nil, 44},
		{"imported_global", nil, 55},
		{"started", nil, 7},
		{"sum", []uint64{100}, 5050},
		{"nested", []uint64{30}, 900},
	}
	for _, tc := range cases {
		for name, m := range map[string]api.Module{"original": plain, "instrumented": checked} {
			got, err := call(t, m, tc.fn, tc.args...)
			if err != nil || got != tc.want {
				t.Errorf("%s %s%v = %d, %v; want %d", name, tc.fn, tc.args, got, err, tc.want)
			}
		}
	}
	// sum(100) and nested(30) ran 101 + 930 loop heads; with 10 fuel per refill that is ~100 yields.
	if ys.yields < 90 || ys.yields > 110 {
		t.Errorf("%d yields, want about 100", ys.yields)
	}
	// The fuel global is exported and mutable; emptying it makes the next loop head yield.
	fuel, ok := checked.ExportedGlobal(instrument.FuelName).(api.MutableGlobal)
	if !ok {
		t.Fatal("fuel global not exported as mutable")
	}
	ys.stop = true
	fuel.Set(0)
	if _, err := call(t, checked, "sum", 5); err == nil || !strings.Contains(err.Error(), "cut") {
		t.Fatalf("call after the host emptied the fuel: %v", err)
	}
	// Names survive renumbering: the trap's stack trace names the right function.
	if got, want := checked.ExportedFunction("a").Definition().DebugName(), plain.ExportedFunction("a").Definition().DebugName(); got != want || !strings.HasSuffix(got, ".a") {
		t.Errorf("debug name %q, want %q", got, want)
	}
}

func TestInstrumentRefuses(t *testing.T) {
	valid := watBytes(t, "", `(module (func (export "f")))`)
	cases := []struct {
		name string
		wasm []byte
		want string
	}{
		{"empty", nil, "magic"},
		{"not wasm", []byte("hello world"), "magic"},
		{"version 2", append([]byte("\x00asm\x02\x00\x00\x00"), valid[8:]...), "version"},
		{"truncated", valid[:len(valid)-3], "malformed"},
		{"reserved import", watBytes(t, "", `(module (import "wasmpod" "__yield" (func (result i32))))`), "reserved"},
		// Binary: a text assembler refuses both. A function () -> i32, then one (i32) -> ().
		{"start with a result", []byte("\x00asm\x01\x00\x00\x00\x01\x05\x01\x60\x00\x01\x7f\x03\x02\x01\x00\x08\x01\x00\x0a\x06\x01\x04\x00\x41\x00\x0b"), "start function"},
		{"start with a parameter", []byte("\x00asm\x01\x00\x00\x00\x01\x05\x01\x60\x01\x7f\x00\x03\x02\x01\x00\x08\x01\x00\x0a\x04\x01\x02\x00\x0b"), "start function"},
		{"reserved export", watBytes(t, "", `(module (global (export "__wasmpod_fuel") i32 (i32.const 0)))`), "reserved"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := instrument.Instrument(tc.wasm, 10)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want an error containing %q, got %v", tc.want, err)
			}
		})
	}
}

// FuzzInstrument: any input either is refused with an error or instruments into a module that
// wazero accepts exactly when it accepts the original. Never a panic.
func FuzzInstrument(f *testing.F) {
	f.Add(watBytes(f, "testdata/indices.wat", ""))
	f.Add([]byte("\x00asm\x01\x00\x00\x00"))
	f.Add(watBytes(f, "", `(module (func (loop (br 0))))`))
	// Loops of every block type with branches out of them (each loop gets a retry loop around
	// it, and the branches new labels).
	f.Add(watBytes(f, "", `(module (type $p (func (param i32) (result i32))) (type $two (func (result i32 i32)))
		(func (param $n i32) (result i32)
			(block $out (result i32)
				(i32.const 0)
				(loop $p (type $p)
					(loop $q (br_if $q (local.tee $n (i32.sub (local.get $n) (i32.const 1)))))
					(block $b (type $two)
						(loop $l (type $two) (br_if $b (i32.const 1) (i32.const 2) (local.get $n)) (drop) (drop) (br $l)))
					(drop) (drop)
					(br_table $p $out $p (local.get $n))))))`))
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	f.Cleanup(func() { rt.Close(ctx) })
	f.Fuzz(func(t *testing.T, wasm []byte) {
		out, err := instrument.Instrument(wasm, 100)
		if err != nil {
			return
		}
		// Only compare with wazero on inputs that passed the shape check (Instrument ran it):
		// others could make wazero's decoder allocate without bound.
		cm, origErr := rt.CompileModule(ctx, wasm)
		if cm != nil {
			cm.Close(ctx)
		}
		if origErr != nil && customSectionError(origErr) {
			// Judge both by their code, not by names: compare them without custom sections.
			wasm, out = withoutCustomSections(wasm), withoutCustomSections(out)
			if cm, origErr = rt.CompileModule(ctx, wasm); cm != nil {
				cm.Close(ctx)
			}
		}
		cm2, err := rt.CompileModule(ctx, out)
		if cm2 != nil {
			cm2.Close(ctx)
		}
		switch {
		case origErr == nil && err != nil:
			t.Fatalf("the original compiles but the instrumented module does not: %v", err)
		case origErr != nil && err == nil:
			// The added globals, locals, types and block must not give an invalid module meaning.
			t.Fatalf("the original is invalid (%v) but the instrumented module compiles", origErr)
		}
	})
}

// customSectionError tells wazero's refusals of a custom section, which the instrumentation may
// rightly turn into a module wazero accepts: a custom section that ends the file, which the
// added sections then follow (a decoder quirk), and a malformed "name" section, which the
// rewriter drops part by part (engines ignore names; wazero refuses an unreadable one, "section
// custom: failed to read a local index ..."). The fuzz target then judges the original without
// its custom sections.
func customSectionError(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "custom section") || strings.HasPrefix(msg, "section custom:")
}

// withoutCustomSections returns wasm without its custom sections (id 0), or wasm itself if its
// section framing cannot be read.
func withoutCustomSections(wasm []byte) []byte {
	if len(wasm) < 8 {
		return wasm
	}
	out := append([]byte(nil), wasm[:8]...)
	for i := 8; i < len(wasm); {
		id, start := wasm[i], i
		i++
		var size, shift uint64
		for {
			if i >= len(wasm) || shift > 28 {
				return wasm
			}
			b := wasm[i]
			i++
			size |= uint64(b&0x7F) << shift
			shift += 7
			if b < 0x80 {
				break
			}
		}
		if size > uint64(len(wasm)-i) {
			return wasm
		}
		i += int(size)
		if id != 0 {
			out = append(out, wasm[start:i]...)
		}
	}
	return out
}
