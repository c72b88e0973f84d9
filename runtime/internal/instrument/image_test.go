package instrument_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/tetratelabs/wazero"

	"github.com/wasmpod/wasmpod/runtime/internal/instrument"
)

const imageWAT = `(module
  (memory (export "memory") 1 10)
  (global $a (mut i32) (i32.const 1))
  (global $b (mut i64) (i64.const 2))
  (global $c f64 (f64.const 3))
  (data (i32.const 16) "hello")
  (func $init (global.set $a (i32.const 41)))
  (start $init)
  (func (export "a") (result i32) (global.get $a))
  (func (export "b") (result i64) (global.get $b))
  (func (export "size") (result i32) (memory.size))
  (func (export "byte") (result i32) (i32.load8_u (i32.const 16))))`

// TestImageModule: the prepared module exports the mutable globals; the image's module starts
// them at the given values, its memory at the given size, without data or start.
func TestImageModule(t *testing.T) {
	ctx := context.Background()
	wasm := watBytes(t, "", imageWAT)
	prepared, facts, err := instrument.PrepareImage(wasm, false)
	if err != nil || facts.Refusal != "" {
		t.Fatalf("prepare: %v %q", err, facts.Refusal)
	}
	if len(facts.Globals) != 2 || facts.Globals[0].Export != instrument.ImageGlobalPrefix+"0" {
		t.Fatalf("globals %+v", facts.Globals)
	}
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	defer rt.Close(ctx)
	mod, err := rt.Instantiate(ctx, prepared)
	if err != nil {
		t.Fatal(err)
	}
	if v := mod.ExportedGlobal(facts.Globals[0].Export).Get(); v != 41 {
		t.Fatalf("captured global after start = %d, want 41", v)
	}
	image, err := instrument.ImageModule(prepared, 3, map[uint32]uint64{0: 7, 1: 1 << 40})
	if err != nil {
		t.Fatal(err)
	}
	im, err := rt.InstantiateWithConfig(ctx, image, wazero.NewModuleConfig().WithName("image"))
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]uint64{"a": 7, "b": 1 << 40, "size": 3, "byte": 0} {
		r, err := im.ExportedFunction(name).Call(ctx)
		if err != nil || r[0] != want {
			t.Fatalf("%s() = %v %v, want %d", name, r, err, want)
		}
	}
}

func TestPrepareImageRefuses(t *testing.T) {
	for _, tc := range []struct{ wat, why string }{
		{`(module (memory (import "env" "m") 1))`, "imports its memory"},
		{`(module (global (import "env" "g") (mut i32)) (memory 1))`, "mutable global"},
		{`(module (memory 1) (table 1 funcref) (func (drop (table.grow 0 (ref.null func) (i32.const 1)))))`, "changes a table"},
		{`(module (memory 1) (data "x") (func (memory.init 0 (i32.const 0) (i32.const 0) (i32.const 1))))`, "memory.init"},
		{`(module (func))`, "no memory"},
	} {
		_, facts, err := instrument.PrepareImage(watBytes(t, "", tc.wat), false)
		if err != nil || !strings.Contains(facts.Refusal, tc.why) {
			t.Errorf("%s: refusal %q (%v), want %q", tc.wat, facts.Refusal, err, tc.why)
		}
	}
}

// TestPrepareImageInstrumented: in an instrumented module, the image captures the guest's own
// mutable globals and none of the instrumentation's (the fuel, the stack budget, the retry
// heads' spill globals), which every instance starts afresh; a module said to be instrumented
// without the fuel's export is an error, not a guess.
func TestPrepareImageInstrumented(t *testing.T) {
	src := `(module (memory 1)
		(global $g (mut i32) (i32.const 1))
		(global $h (mut f64) (f64.const 2))
		(func (export "f") (param $n i32) (result i32) (local $a i64) (local $x f32)
			(loop $l
				(local.set $a (i64.add (local.get $a) (i64.const 1)))
				(local.set $x (f32.add (local.get $x) (f32.const 1)))
				(global.set $g (i32.add (global.get $g) (i32.const 1)))
				(br_if $l (local.tee $n (i32.sub (local.get $n) (i32.const 1)))))
			(global.get $g)))`
	out := mustInstrument(t, src, instrument.Options{Fuel: 10})
	spills, err := instrument.SpillGlobals(watBytes(t, "", src), instrument.Options{Fuel: 10})
	if err != nil || spills != [4]uint32{1, 1, 1, 0} {
		t.Fatalf("spill globals %v %v, want [1 1 1 0]", spills, err)
	}
	_, facts, err := instrument.PrepareImage(out, true)
	if err != nil || facts.Refusal != "" {
		t.Fatalf("prepare: %v %q", err, facts.Refusal)
	}
	var got []uint32
	for _, g := range facts.Globals {
		got = append(got, g.Index)
	}
	if fmt.Sprint(got) != "[0 1]" {
		t.Errorf("captured globals %v, want [0 1] (the guest's own)", got)
	}
	// Not instrumented, every mutable global is the guest's.
	_, facts, err = instrument.PrepareImage(out, false)
	if err != nil || len(facts.Globals) != 2+2+3 {
		t.Errorf("prepare as not instrumented: %d globals, %v; want 7", len(facts.Globals), err)
	}
	if _, _, err := instrument.PrepareImage(watBytes(t, "", src), true); !errors.Is(err, instrument.ErrMalformed) {
		t.Errorf("instrumented without %q: %v, want ErrMalformed", instrument.FuelName, err)
	}
}

// FuzzPrepareImage: any input either fails to parse or yields a module wazero accepts exactly
// when it accepts the input, and ImageModule of it compiles too.
func FuzzPrepareImage(f *testing.F) {
	f.Add(watBytes(f, "", imageWAT))
	f.Add([]byte("\x00asm\x01\x00\x00\x00"))
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	f.Cleanup(func() { rt.Close(ctx) })
	f.Fuzz(func(t *testing.T, wasm []byte) {
		prepared, facts, err := instrument.PrepareImage(wasm, false)
		if err != nil || facts.Refusal != "" {
			return
		}
		cm, err := rt.CompileModule(ctx, wasm)
		if err != nil {
			return
		}
		cm.Close(ctx)
		cm2, err := rt.CompileModule(ctx, prepared)
		if err != nil {
			t.Fatalf("the original compiles, the prepared module does not: %v", err)
		}
		cm2.Close(ctx)
		image, err := instrument.ImageModule(prepared, 1, nil)
		if err != nil {
			t.Fatalf("image module: %v", err)
		}
		if cm3, err := rt.CompileModule(ctx, image); err == nil {
			cm3.Close(ctx)
		}
	})
}
