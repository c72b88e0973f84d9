package abicheck_test

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/host/internal/abicheck"
	"github.com/wasmpod/wasmpod/host/internal/podspec"
	"github.com/wasmpod/wasmpod/internal/wasmbuild"
	"github.com/wasmpod/wasmpod/runtime"
)

const root = "../../../"

// TestEveryPlugin runs the check on every plugin in the repository: each must pass.
func TestEveryPlugin(t *testing.T) {
	if testing.Short() {
		t.Skip("builds every plugin")
	}
	plugins := []struct {
		name  string
		build func(testing.TB) string
		abi   string
	}{
		{"go/kit", func(tb testing.TB) string { return wasmbuild.Go(tb, root+"runtime/testdata/kit") }, "ABI: native"},
		{"go/echo", func(tb testing.TB) string { return wasmbuild.Go(tb, root+"plugins/echo") }, "ABI: native"},
		{"go/benchleaf", func(tb testing.TB) string { return wasmbuild.Go(tb, root+"plugins/benchleaf") }, "ABI: native"},
		{"wat/smallest-leaf", func(tb testing.TB) string { return wasmbuild.WAT(tb, root+"guest-sdk/examples/smallest-leaf.wat") }, "ABI: native"},
		{"extism/go-pdk", func(tb testing.TB) string { return wasmbuild.Go(tb, root+"plugins/extism-go") }, "ABI: Extism"},
		{"extism/bench-leaf", func(tb testing.TB) string { return wasmbuild.Go(tb, root+"bench/guests/extismleaf") }, "ABI: Extism"},
		{"extism/as-pdk", func(tb testing.TB) string { return wasmbuild.ExtismAssemblyScript(tb, root+"plugins/extism-as") }, "ABI: Extism"},
		{"extism/count-vowels", func(tb testing.TB) string { return wasmbuild.Go(tb, root+"plugins/extism-count-vowels") }, "function count_vowels: large input"},
		// The pod plumbing (ABI 4.1): a main that makes pod-local calls; a module that also dials.
		{"go/cache-main", func(tb testing.TB) string { return wasmbuild.Go(tb, root+"plugins/cache-main") }, "ABI: native"},
		{"go/capguest", func(tb testing.TB) string { return wasmbuild.Go(tb, root+"host/internal/capability/testdata/capguest") }, "ABI: native"},
	}
	for _, lang := range []struct {
		prefix string
		build  func(testing.TB, string) string
	}{{"c", wasmbuild.C}, {"rust", wasmbuild.Rust}, {"as", wasmbuild.AssemblyScript}} {
		for _, kind := range []string{"leaf", "merge", "lifecycle"} {
			dir := root + "plugins/" + lang.prefix + "-" + kind
			build := lang.build
			plugins = append(plugins, struct {
				name  string
				build func(testing.TB) string
				abi   string
			}{lang.prefix + "/" + kind, func(tb testing.TB) string { return build(tb, dir) }, "ABI: native"})
		}
	}
	for _, p := range plugins {
		t.Run(p.name, func(t *testing.T) {
			wasm, err := os.ReadFile(p.build(t))
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			// A generous deadline: go-pdk reads a 1 MiB input a word per host call (~0.5 s
			// here), and a loaded CI machine must not turn a slow, correct call into a violation.
			ok, err := abicheck.RunWith(context.Background(), wasm, &out, abicheck.Options{CallTimeout: 30 * time.Second})
			if err != nil || !ok {
				t.Fatalf("ok=%t err=%v\n%s", ok, err, out.String())
			}
			if !strings.Contains(out.String(), p.abi) {
				t.Fatalf("report does not say %q:\n%s", p.abi, out.String())
			}
			t.Logf("\n%s", out.String())
		})
	}
}

// TestBrokenModules: each deliberately broken module must be reported with the violation.
func TestBrokenModules(t *testing.T) {
	const head = `(memory (export "memory") 2)
  (func (export "wasmpod_abi_version") (result i32) (i32.const 1))
  (func (export "wasmpod_buffer") (param i32) (result i32) (i32.const 65536))`
	for _, tc := range []struct {
		name, wat string
		raw       []byte // instead of wat
		want      string // in the report
	}{
		{name: "not wasm", raw: []byte("hello"), want: "decode:"},
		{name: "neither ABI", wat: `(module (memory (export "memory") 1) (func (export "leaf") (param i32) (result i32) (i32.const 0)))`, want: "ABI: neither"},
		{name: "leaf traps on empty input", wat: `(module ` + head + `
  (func (export "wasmpod_leaf") (param i32) (result i64) unreachable))`, want: "leaf: empty input: trap"},
		{name: "output outside memory", wat: `(module ` + head + `
  (func (export "wasmpod_leaf") (param i32) (result i64) (i64.const 0x0000001000FFFFF0)))`, want: "bad output"},
		{name: "wrong handler signature", wat: `(module ` + head + `
  (func (export "wasmpod_leaf") (param i32) (result i32) (i32.const 0)))`, want: "export wasmpod_leaf: signature"},
		{name: "missing buffer export", wat: `(module (memory (export "memory") 1)
  (func (export "wasmpod_abi_version") (result i32) (i32.const 1))
  (func (export "wasmpod_leaf") (param i32) (result i64) (i64.const 0)))`, want: "export wasmpod_buffer (i32) -> (i32): required, missing"},
		{name: "wrong ABI version", wat: `(module (memory (export "memory") 2)
  (func (export "wasmpod_abi_version") (result i32) (i32.const 2))
  (func (export "wasmpod_buffer") (param i32) (result i32) (i32.const 65536))
  (func (export "wasmpod_leaf") (param i32) (result i64) (i64.const 0)))`, want: "version 2"},
		{name: "merge loops on malformed framing", wat: `(module ` + head + `
  (func (export "wasmpod_merge") (param $n i32) (result i64)
    (if (i32.ne (local.get $n) (i32.add (i32.const 4) (i32.mul (i32.const 4) (i32.load (i32.const 65536)))))
      (then (loop $l (br $l))))
    (i64.const 0)))`, want: "merge: bad framing (part longer than the input): ran past its deadline"},
		{name: "merge traps on a missing part", wat: `(module ` + head + `
  (func (export "wasmpod_merge") (param $n i32) (result i64)
    (if (i32.gt_u (local.get $n) (i32.const 4)) (then unreachable))
    (i64.const 0)))`, want: "merge: two parts and a missing one: trap"},
		{name: "health traps", wat: `(module ` + head + `
  (func (export "wasmpod_leaf") (param i32) (result i64) (i64.const 0))
  (func (export "wasmpod_health") (result i32) unreachable))`, want: "lifecycle health: trap"},
		{name: "restore refuses its own snapshot", wat: `(module ` + head + `
  (func (export "wasmpod_leaf") (param i32) (result i64) (i64.const 0))
  (func (export "wasmpod_snapshot") (result i64) (i64.const 0))
  (func (export "wasmpod_restore") (param i32) (result i32) (i32.const 1)))`, want: "refused its own snapshot"},
		{name: "http response badly framed", wat: `(module ` + head + `
  (func (export "wasmpod_http") (param i32) (result i64) (i64.const 0x0000000300010000)))`, want: "malformed HTTP response"},
		{name: "reserved export", wat: `(module ` + head + `
  (func (export "wasmpod_leaf") (param i32) (result i64) (i64.const 0))
  (func (export "__wasmpod_x")))`, want: "reserved for the host"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wasm := tc.raw
			if wasm == nil {
				var err error
				if wasm, err = os.ReadFile(wasmbuild.WATString(t, tc.wat)); err != nil {
					t.Fatal(err)
				}
			}
			var out bytes.Buffer
			ok, err := abicheck.RunWith(context.Background(), wasm, &out, abicheck.Options{CallTimeout: 200 * time.Millisecond, LargeInput: 70000})
			if err != nil {
				t.Fatal(err)
			}
			if ok || !strings.Contains(out.String(), "FAIL") || !strings.Contains(out.String(), tc.want) {
				t.Fatalf("ok=%t, want a violation mentioning %q:\n%s", ok, tc.want, out.String())
			}
		})
	}
}

// TestAgreesWithRun: abi-check and `wasmpod run` (the pod spec's check of the file, then the
// runtime's load) give the same verdict on every module, for the ABI and function a pod states.
func TestAgreesWithRun(t *testing.T) {
	if testing.Short() {
		t.Skip("builds plugins")
	}
	watFile := func(src string) func(testing.TB) string {
		return func(tb testing.TB) string { return wasmbuild.WATString(tb, src) }
	}
	noImports := watFile(`(module (memory (export "memory") 1) (func (export "handle") (result i32) (i32.const 0)) (func (export "count_vowels") (result i32) (i32.const 0)))`)
	extismGo := func(tb testing.TB) string { return wasmbuild.Go(tb, root+"plugins/extism-go") }
	echo := func(tb testing.TB) string { return wasmbuild.Go(tb, root+"plugins/echo") }
	command := watFile(`(module (memory (export "memory") 4)
  (func (export "wasmpod_abi_version") (result i32) (i32.const 1))
  (func (export "wasmpod_buffer") (param i32) (result i32) (i32.const 65536))
  (func (export "wasmpod_handle") (param i32) (result i64) (i64.const 0))
  (func (export "_start")))`)
	for _, tc := range []struct {
		name     string
		build    func(testing.TB) string
		abi, fn  string
		role     podspec.Role
		want     bool
		contains string
	}{
		{"Extism without imports, abi extism", noImports, "extism", "", podspec.RoleMain, true, "ABI: Extism"},
		{"Extism without imports, abi native", noImports, "native", "", podspec.RoleMain, false, "wasmpod_abi_version"},
		{"Extism without imports, count_vowels", noImports, "extism", "count_vowels", podspec.RoleMain, true, "function count_vowels"},
		{"go-pdk, odd name", extismGo, "extism", "run_test", podspec.RoleLeaf, true, "function run_test: empty input"},
		{"go-pdk, missing function", extismGo, "extism", "nope", podspec.RoleMain, false, `no function "nope"`},
		{"go-pdk, abi native", extismGo, "native", "", podspec.RoleMain, false, "Extism plugin"},
		{"native, abi extism", echo, "extism", "", podspec.RoleMain, false, "not an Extism plugin"},
		{"native", echo, "native", "", podspec.RoleMain, true, "0 violations"},
		{"native command with _start", command, "native", "", podspec.RoleMain, true, "WARN  exports _start"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wasm, err := os.ReadFile(tc.build(t))
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			ok, err := abicheck.RunWith(context.Background(), wasm, &out, abicheck.Options{ABI: tc.abi, Function: tc.fn, LargeInput: 70000})
			if err != nil {
				t.Fatal(err)
			}
			m := podspec.Module{Name: "m", Role: tc.role, ABI: podspec.ABI(tc.abi)}
			if tc.fn != "" {
				m.Extism = &podspec.ExtismOptions{Function: tc.fn}
			}
			runErr := m.CheckWasm(wasm)
			if runErr == nil {
				runErr = loads(wasm, &m)
			}
			if ok != tc.want || (runErr == nil) != tc.want {
				t.Fatalf("abi-check ok=%t, run err=%v; want both %t\n%s", ok, runErr, tc.want, out.String())
			}
			if !strings.Contains(out.String(), tc.contains) {
				t.Fatalf("report lacks %q:\n%s", tc.contains, out.String())
			}
		})
	}
}

// loads loads wasm as the supervisor does for module m and checks the role's export.
func loads(wasm []byte, m *podspec.Module) error {
	ctx := context.Background()
	e, err := runtime.NewEngine(ctx, runtime.DefaultConfig())
	if err != nil {
		return err
	}
	defer e.Close(ctx)
	cfg := runtime.DefaultModuleConfig(m.Name)
	cfg.MaxMemoryPages = 1024
	if m.ABI == podspec.ABIExtism {
		cfg.ABI = runtime.ABIExtism
		cfg.ExtismFunctions = m.ExtismFunctions()
	}
	mod, err := e.Load(ctx, wasm, cfg)
	if err != nil {
		return err
	}
	defer mod.Close(ctx)
	if _, ok := m.CallRole(mod.HasRole); !ok {
		return runtime.ErrNoExport
	}
	return nil
}
