package instrument_test

import (
	"context"
	"testing"

	"github.com/tetratelabs/wazero"

	"github.com/wasmpod/wasmpod/runtime/internal/instrument"
)

const describeWAT = `(module
  (import "env" "f" (func $f (param i32 i64) (result i32)))
  (import "extism:host/env" "http_request" (func $h (param i64 i64) (result i64)))
  (import "extism:host/env" "alloc" (func $a (param i64) (result i64)))
  (memory (export "memory") 2 5)
  (global $g (mut i32) (i32.const 0))
  (export "g" (global $g))
  (func (export "run") (param i32) (result i64)
    (drop (call $f (i32.const 1) (i64.const 2)))
    (call $h (i64.const 0) (i64.const 0)))
  (func (export "noop")))`

func TestDescribe(t *testing.T) {
	d, err := instrument.Describe(watBytes(t, "", describeWAT))
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Imports) != 3 || d.Imports[1].Module != "extism:host/env" || d.Imports[1].Name != "http_request" ||
		instrument.Signature(d.Imports[0].Params, d.Imports[0].Results) != "(i32, i64) -> (i32)" {
		t.Fatalf("imports %+v", d.Imports)
	}
	sigs := map[string]string{}
	for _, e := range d.Exports {
		sigs[e.Name] = e.Kind.String() + " " + instrument.Signature(e.Params, e.Results)
	}
	for name, want := range map[string]string{"memory": "memory () -> ()", "g": "global () -> ()", "run": "func (i32) -> (i64)", "noop": "func () -> ()"} {
		if sigs[name] != want {
			t.Errorf("export %s: %q, want %q", name, sigs[name], want)
		}
	}
	if m := d.Memory; m == nil || m.Min != 2 || !m.HasMax || m.Max != 5 || !m.Exported || m.Imported {
		t.Fatalf("memory %+v", d.Memory)
	}
	for _, bad := range [][]byte{nil, []byte("\x00asm"), []byte("\x00asm\x02\x00\x00\x00"), []byte("\x00asm\x01\x00\x00\x00\x02\x05\x01\x01a")} {
		if _, err := instrument.Describe(bad); err == nil {
			t.Errorf("Describe(%q) succeeded", bad)
		}
	}
}

func TestRenameImports(t *testing.T) {
	in := watBytes(t, "", describeWAT)
	out, err := instrument.RenameImports(in, "extism:host/env", []string{"http_request", "nope"}, "wasmpod:extism")
	if err != nil {
		t.Fatal(err)
	}
	d, err := instrument.Describe(out)
	if err != nil {
		t.Fatal(err)
	}
	got := []string{}
	for _, imp := range d.Imports {
		got = append(got, imp.Module+"."+imp.Name)
	}
	want := []string{"env.f", "wasmpod:extism.http_request", "extism:host/env.alloc"}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("imports %v, want %v", got, want)
		}
	}
	ctx := context.Background()
	rt := wazero.NewRuntime(ctx)
	defer rt.Close(ctx)
	if _, err := rt.CompileModule(ctx, out); err != nil {
		t.Fatalf("renamed module does not compile: %v", err)
	}
}

// FuzzDescribe: any input is described or refused with an error, never a panic; a module that
// wazero compiles is always described, with the same exports.
func FuzzDescribe(f *testing.F) {
	f.Add(watBytes(f, "", describeWAT))
	f.Add(watBytes(f, "testdata/indices.wat", ""))
	f.Add([]byte("\x00asm\x01\x00\x00\x00"))
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	f.Cleanup(func() { rt.Close(ctx) })
	f.Fuzz(func(t *testing.T, wasm []byte) {
		d, err := instrument.Describe(wasm)
		renamed, rerr := instrument.RenameImports(wasm, "env", []string{"f"}, "other")
		if err != nil {
			return
		}
		cm, cerr := rt.CompileModule(ctx, wasm)
		if cerr != nil {
			return
		}
		defer cm.Close(ctx)
		if n := len(cm.ExportedFunctions()); n > len(d.Exports) {
			t.Fatalf("wazero sees %d function exports, Describe %d exports", n, len(d.Exports))
		}
		if rerr != nil {
			t.Fatalf("a module wazero compiles could not be renamed: %v", rerr)
		}
		cm2, err := rt.CompileModule(ctx, renamed)
		if err != nil {
			t.Fatalf("the original compiles but the renamed module does not: %v", err)
		}
		cm2.Close(ctx)
	})
}
