package instrument_test

import (
	"context"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/wasmpod/wasmpod/runtime/internal/instrument"
)

// BenchmarkChecks measures what the checks cost on the code that pays most for them, next to
// the same code uninstrumented in the same run: fib is almost nothing but function entries and
// exits (each pays a fuel check and the stack budget), sum is a tight loop (a fuel check per
// iteration, as before issue 14).
func BenchmarkChecks(b *testing.B) {
	src := `(module
		(func $fib (export "fib") (param i32) (result i32)
			(if (result i32) (i32.lt_u (local.get 0) (i32.const 2)) (then (local.get 0))
				(else (i32.add (call $fib (i32.sub (local.get 0) (i32.const 1)))
				               (call $fib (i32.sub (local.get 0) (i32.const 2)))))))
		(func (export "sum") (param $n i32) (result i32) (local $s i32)
			(loop $l
				(local.set $s (i32.add (local.get $s) (local.get $n)))
				(br_if $l (local.tee $n (i32.sub (local.get $n) (i32.const 1)))))
			(local.get $s)))`
	orig := watBytes(b, "", src)
	guarded, err := instrument.Instrument(orig, 1<<15)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	for _, v := range []struct {
		name string
		wasm []byte
	}{{"bare", orig}, {"checked", guarded}} {
		rt := wazero.NewRuntime(ctx)
		b.Cleanup(func() { rt.Close(ctx) })
		if _, err := rt.NewHostModuleBuilder(instrument.ImportModule).NewFunctionBuilder().
			WithFunc(func(int32) int32 { return 1 << 15 }).Export(instrument.YieldName).Instantiate(ctx); err != nil {
			b.Fatal(err)
		}
		m, err := rt.Instantiate(ctx, v.wasm)
		if err != nil {
			b.Fatal(err)
		}
		for _, fn := range []struct {
			name string
			arg  uint64
		}{{"fib20", 20}, {"sum1000", 1000}} {
			f := m.ExportedFunction(fn.name[:3])
			stack := []uint64{fn.arg}
			b.Run(fn.name+"/"+v.name, func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					stack[0] = fn.arg
					if err := f.CallWithStack(ctx, stack); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
		_ = api.ValueTypeI32
	}
}
