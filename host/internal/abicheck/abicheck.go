// Package abicheck checks a WebAssembly module against the ABI it claims to speak and prints a
// report: `wasmpod abi-check PLUGIN.wasm`.
//
// It reads the module's boundary (imports, exports with signatures, memory), tells which ABI
// it speaks (native wasmpod ABI version N, Extism, or neither), loads it through the runtime
// the host uses, and exercises every role it exports with valid and invalid input: empty, large
// (1 MiB) and malformed (bad merge or HTTP framing, non-UTF-8 bytes), or only the function
// Options.Function names (any function of an Extism plugin, as a pod's extism.function). A guest that refuses
// input with an error is behaving correctly (the input may be content its application does not
// accept); a trap, a deadline, an output outside its memory or over the limits, or a malformed
// HTTP response is a violation; a merge that answers malformed framing instead of refusing it
// (ABI 2.1) is warned about. For native modules it also runs
// the lifecycle exports: start, health, tick, a snapshot on stop restored into a new module,
// a restore of a malformed state (which must be refused, not trap) and stop.
package abicheck

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/wasmpod/wasmpod/host/internal/capability"
	"github.com/wasmpod/wasmpod/runtime"
)

// Options tune a check. The zero value is the defaults.
type Options struct {
	// CallTimeout is the deadline of each exercised call (default 5 s, the ABI's default).
	CallTimeout time.Duration
	// LargeInput is the size of the large input (default 1 MiB).
	LargeInput int
	// ABI is the ABI the module is checked against, as a pod spec's abi field states it:
	// "native", "extism", or "" / "auto" (the default) to detect it the way DetectABI does,
	// taking a module with neither mark but with Extism functions for an Extism plugin that
	// imports no host function, which is how `wasmpod run` loads it with abi: extism.
	ABI string
	// Function, if set, is the one function exercised: for an Extism module any exported
	// function (what a pod's extism.function names), for a native module a role (leaf) or its
	// export (wasmpod_leaf). Without it every role the module serves is exercised; an Extism
	// module that serves no role name gets each of its functions exercised.
	Function string
}

// Run checks wasm and writes the report to w. ok is false when the module violates its ABI;
// err is set only when the check itself could not run (e.g. the runtime failed to start or w
// failed).
func Run(ctx context.Context, wasm []byte, w io.Writer) (ok bool, err error) {
	return RunWith(ctx, wasm, w, Options{})
}

// RunWith is Run with options.
func RunWith(ctx context.Context, wasm []byte, w io.Writer, opts Options) (ok bool, err error) {
	if opts.CallTimeout <= 0 {
		opts.CallTimeout = 5 * time.Second
	}
	if opts.LargeInput <= 0 {
		opts.LargeInput = 1 << 20
	}
	stated := runtime.ABIAuto
	if opts.ABI != "" {
		a, err := runtime.ParseABI(opts.ABI)
		if err != nil {
			return false, fmt.Errorf("abicheck: %w", err)
		}
		stated = a
	}
	c := &checker{w: w, opts: opts, abi: stated}
	if err := c.run(ctx, wasm); err != nil {
		return false, err
	}
	c.printf("\n%d checks, %d violations, %d warnings: ", c.checks, c.violations, c.warnings)
	if c.violations == 0 {
		c.printf("OK\n")
	} else {
		c.printf("FAIL\n")
	}
	return c.violations == 0 && c.werr == nil, c.werr
}

type checker struct {
	w                            io.Writer
	werr                         error
	opts                         Options
	abi                          runtime.ABI // as stated (ABIAuto to detect)
	checks, violations, warnings int
}

func (c *checker) printf(format string, args ...any) {
	if c.werr == nil {
		_, c.werr = fmt.Fprintf(c.w, format, args...)
	}
}

func (c *checker) pass(format string, args ...any) {
	c.checks++
	c.printf("  ok    "+format+"\n", args...)
}

func (c *checker) fail(format string, args ...any) {
	c.checks++
	c.violations++
	c.printf("  FAIL  "+format+"\n", args...)
}

// warn reports what works but is likely not what the author meant.
func (c *checker) warn(format string, args ...any) {
	c.warnings++
	c.printf("  WARN  "+format+"\n", args...)
}

func (c *checker) note(format string, args ...any) {
	c.printf("  note  "+format+"\n", args...)
}

func (c *checker) run(ctx context.Context, wasm []byte) error {
	c.printf("module: %d bytes\n", len(wasm))
	desc, err := runtime.Describe(wasm)
	if err != nil {
		c.printf("ABI: unknown\n")
		c.fail("decode: %v", err)
		return nil
	}
	abi, abiErr := runtime.DetectABI(wasm)
	mismatch := ""
	switch {
	case c.abi == runtime.ABIExtism && abiErr == nil && abi == runtime.ABINative:
		mismatch = "abi extism: this is a native wasmpod module (it exports wasmpod_abi_version), not an Extism plugin"
		c.printf("ABI: native, stated extism\n")
	case c.abi == runtime.ABIExtism && (abiErr != nil || abi == runtime.ABIExtism):
		abi, abiErr = runtime.ABIExtism, nil
		c.printf("ABI: Extism (as stated: abi extism)\n")
	case c.abi == runtime.ABINative && abiErr != nil && !errors.Is(abiErr, runtime.ErrUnknownABI):
		c.printf("ABI: unknown\n")
	case c.abi == runtime.ABINative:
		// What a pod with abi: native loads: the runtime says why an Extism plugin or a
		// module without the version export is refused.
		abi, abiErr = runtime.ABINative, nil
		c.printf("ABI: native (as stated: abi native)\n")
	case abiErr != nil && errors.Is(abiErr, runtime.ErrUnknownABI) && len(desc.ExtismFunctions()) > 0 && !hasPrefix(desc.ExtismFunctions(), "wasmpod_"):
		abi, abiErr = runtime.ABIExtism, nil
		c.printf("ABI: Extism (no wasmpod_abi_version; no Extism imports either, so an Extism plugin that uses no host function: a pod runs it with abi: extism)\n")
	case abiErr != nil:
		c.printf("ABI: neither (%v)\n", abiErr)
	case abi == runtime.ABINative:
		c.printf("ABI: native (wasmpod ABI; this host speaks version %d)\n", runtime.ABIVersion)
	default:
		c.printf("ABI: Extism (imports from %s)\n", runtime.ExtismImportModule)
	}
	c.printf("\nimports:\n")
	if len(desc.Imports) == 0 {
		c.printf("  (none)\n")
	}
	for _, s := range desc.Imports {
		c.printf("  %s.%s %s %s\n", s.Module, s.Name, s.Kind, s.Signature)
	}
	c.printf("\nmemory: ")
	if m := desc.Memory; m == nil {
		c.printf("none\n")
	} else {
		max := "no maximum"
		if m.HasMax {
			max = fmt.Sprintf("maximum %d pages", m.MaxPages)
		}
		c.printf("minimum %d pages (%d KiB), %s, exported=%t\n", m.MinPages, m.MinPages*64, max, m.Exported)
	}
	c.printf("\nexports:\n")
	for _, s := range desc.Exports {
		c.printf("  %s %s %s\n", s.Name, s.Kind, s.Signature)
	}
	c.printf("\nchecks:\n")
	if mismatch != "" {
		c.fail("%s", mismatch)
		return nil
	}
	if abiErr != nil {
		c.fail("ABI: %v", abiErr)
		return nil
	}
	if abi == runtime.ABINative {
		c.staticNative(desc)
	} else {
		c.staticExtism(desc)
	}
	c.command(desc, abi, wasm)
	if err := runtime.CheckCompileBudget(wasm, runtime.CompileBudget{}); err != nil {
		c.fail("compile budget: %v", err)
		return nil
	}
	c.pass("compile budget: within the host's default limits")
	return c.dynamic(ctx, wasm, abi, desc)
}

// command warns about a WASI command (it exports _start) where the host never calls _start: a
// C program built without -mexec-model=reactor runs neither main nor its static constructors,
// and a Go program built without -buildmode=c-shared traps at its first export (its runtime is
// initialized only by _start). The hint is the fix for the language that built the module.
func (c *checker) command(desc runtime.Description, abi runtime.ABI, wasm []byte) {
	var start, init bool
	for _, s := range desc.Exports {
		switch s.Name {
		case "_start":
			start = s.Kind == "func"
		case "_initialize":
			init = s.Kind == "func"
		}
	}
	if !start || abi != runtime.ABINative {
		return
	}
	var hint string
	switch lang := sourceLanguage(wasm); {
	case lang == "go":
		hint = "build it as a WASI reactor: GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared (guest-sdk/go/README.md)"
	case lang == "rust":
		hint = `build it as a WASI reactor: a library with crate-type = ["cdylib"] (rustc --crate-type cdylib), not a binary (guest-sdk/rust/README.md)`
	case init:
		hint = "a module should be a reactor (_initialize) or a command (_start), not both"
	default:
		hint = "build it as a WASI reactor (clang -mexec-model=reactor, guest-sdk/ABI.md section 9)"
	}
	c.warn("exports _start: a WASI command, but the host never calls _start on a module of the native ABI (only work-queue stages run commands), so its main and whatever _start initializes never run; %s", hint)
}

func hasPrefix(names []string, prefix string) bool {
	for _, n := range names {
		if strings.HasPrefix(n, prefix) {
			return true
		}
	}
	return false
}

// staticNative checks the exports' signatures against the native ABI.
func (c *checker) staticNative(desc runtime.Description) {
	want := runtime.ExportSignatures()
	exported := map[string]runtime.Symbol{}
	for _, s := range desc.Exports {
		exported[s.Name] = s
		if strings.HasPrefix(s.Name, "__wasmpod") {
			c.fail("export %s: names starting with __wasmpod are reserved for the host", s.Name)
		}
	}
	c.envImports(desc)
	if m, ok := exported["memory"]; !ok || m.Kind != "memory" {
		c.fail("export memory: missing (the host reads and writes the guest's exported \"memory\")")
	} else {
		c.pass("export memory")
	}
	names := make([]string, 0, len(want))
	for n := range want {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		s, ok := exported[n]
		required := n == "wasmpod_abi_version" || n == "wasmpod_buffer"
		switch {
		case !ok && required:
			c.fail("export %s %s: required, missing", n, want[n])
		case !ok:
		case s.Kind != "func" || s.Signature != want[n]:
			c.fail("export %s: signature %s %s, the ABI wants %s", n, s.Kind, s.Signature, want[n])
		default:
			c.pass("export %s %s", n, s.Signature)
		}
	}
}

// envImports says how to avoid the imports an AssemblyScript module built without the SDK's
// asconfig.json has (the host refuses the "env" namespace at load, naming the import only).
func (c *checker) envImports(desc runtime.Description) {
	for _, s := range desc.Imports {
		if s.Module != "env" {
			continue
		}
		switch s.Name {
		case "abort", "trace", "seed":
			c.note("import env.%s is AssemblyScript's: build with the SDK's options, asc ... --config node_modules/wasmpod-sdk/asconfig.json, which route it to the SDK (guest-sdk/assemblyscript/README.md)", s.Name)
		case "Date.now":
			c.note("import env.Date.now comes from AssemblyScript's Date.now(): use the SDK's nowUnixMs() instead (guest-sdk/assemblyscript/README.md)")
		}
	}
}

// staticExtism lists the functions that can serve a role.
func (c *checker) staticExtism(desc runtime.Description) {
	for _, s := range desc.Exports {
		if s.Kind != "func" || strings.HasPrefix(s.Name, "_") {
			continue
		}
		if s.Signature == "() -> (i32)" || s.Signature == "() -> ()" {
			c.note("Extism function %s %s", s.Name, s.Signature)
		} else {
			c.note("export %s %s is not callable as an Extism function", s.Name, s.Signature)
		}
	}
}

func (c *checker) config(desc runtime.Description, abi runtime.ABI, name string) runtime.ModuleConfig {
	cfg := runtime.DefaultModuleConfig(name)
	cfg.ABI = abi
	cfg.CallTimeout = c.opts.CallTimeout
	cfg.MaxConcurrency = 1
	cfg.StopGrace = c.opts.CallTimeout
	pages := uint64(1024) // 64 MiB: room for Go guests and the large input
	if m := desc.Memory; m != nil {
		pages = max(pages, m.MinPages)
		if m.HasMax {
			pages = max(pages, m.MaxPages)
		}
	}
	cfg.MaxMemoryPages = uint32(min(pages, 65536))
	return cfg
}

func (c *checker) dynamic(ctx context.Context, wasm []byte, abi runtime.ABI, desc runtime.Description) error {
	ecfg := runtime.DefaultConfig()
	// The pod plumbing of ABI section 4.1 (pod-local calls, outbound network) is there, as in a
	// pod, but the module runs alone: a pod-local call finds no module, no address may be dialled.
	caps := capability.New(capability.Config{})
	defer caps.Close()
	ecfg.Imports = caps.Functions()
	e, err := runtime.NewEngine(ctx, ecfg)
	if err != nil {
		return fmt.Errorf("abicheck: %w", err)
	}
	defer e.Close(context.Background())
	cfg := c.config(desc, abi, "abi-check")
	only := -1 // the one role exercised, for --function
	if fn := c.opts.Function; fn != "" {
		if abi == runtime.ABIExtism {
			if err := desc.CheckExtismFunction(fn); err != nil {
				c.fail("function %s: %v", fn, err)
				return nil
			}
			cfg.ExtismFunctions = map[runtime.Role]string{runtime.RoleHandle: fn}
			only = int(runtime.RoleHandle)
		} else {
			r, err := runtime.ParseRole(strings.TrimPrefix(fn, "wasmpod_"))
			if err != nil {
				c.fail("function %s: a native module's functions are its roles (handle, leaf, merge, http, stage or their wasmpod_ exports): %v", fn, err)
				return nil
			}
			only = int(r)
		}
	}
	if abi == runtime.ABIExtism && only < 0 && !servesARole(desc) {
		fns := desc.ExtismFunctions()
		if len(fns) == 0 {
			c.fail("functions: the module exports no Extism function (() -> (i32) or () -> ())")
			return nil
		}
		c.note("no function is named after a role (handle, leaf, merge, http, stage): each function is exercised as a pod's extism.function would call it")
		for _, fn := range fns {
			fcfg := cfg
			fcfg.ExtismFunctions = map[runtime.Role]string{runtime.RoleHandle: fn}
			c.module(ctx, e, wasm, fcfg, abi, int(runtime.RoleHandle), fn)
		}
		return nil
	}
	c.module(ctx, e, wasm, cfg, abi, only, c.opts.Function)
	return nil
}

// servesARole reports whether the module exports an Extism function named after a role.
func servesARole(desc runtime.Description) bool {
	for _, fn := range desc.ExtismFunctions() {
		if _, err := runtime.ParseRole(fn); err == nil {
			return true
		}
	}
	return false
}

// module loads the module with cfg, starts it and exercises its roles (only that one when only
// >= 0; fn names the Extism function behind it, for the report), then its lifecycle.
func (c *checker) module(ctx context.Context, e *runtime.Engine, wasm []byte, cfg runtime.ModuleConfig, abi runtime.ABI, only int, fn string) {
	m, err := e.Load(ctx, wasm, cfg)
	if err != nil {
		c.fail("load: %v", err)
		return
	}
	defer m.Close(context.Background())
	info := m.Info()
	c.pass("load (roles: %s; lifecycle: %s)", list(info.Roles), list(info.Lifecycle))
	if len(info.Roles) == 0 {
		c.fail("roles: the module serves no role (native: wasmpod_handle, _leaf, _merge, _http or _stage; Extism: functions named handle, leaf, merge, http or stage, or --function NAME)")
	}
	if err := m.Start(ctx, runtime.StartOptions{}); err != nil {
		c.fail("start: %v", err)
		return
	}
	if info.Lifecycle != nil && contains(info.Lifecycle, "start") {
		c.pass("lifecycle start")
	}
	if only >= 0 {
		r := runtime.Role(only)
		if !m.HasRole(r) {
			c.fail("role %s: the module does not serve it", r)
		} else {
			c.exercise(ctx, m, r, fn)
		}
	} else {
		for _, rn := range info.Roles {
			r, err := runtime.ParseRole(rn)
			if err != nil {
				c.fail("role %s: %v", rn, err)
				continue
			}
			c.exercise(ctx, m, r, "")
		}
	}
	if abi == runtime.ABINative {
		c.lifecycle(ctx, e, m, wasm, cfg)
	} else if err := m.Stop(ctx, runtime.StopOptions{}); err != nil {
		c.fail("stop: %v", err)
	}
}

type input struct {
	what string
	data []byte
	// parts, if set, is a merge input framed by the runtime.
	parts []runtime.Part
	// valid is set for well-framed inputs; a guest error on them is reported as such.
	valid bool
}

func (c *checker) inputs(r runtime.Role) []input {
	large := make([]byte, c.opts.LargeInput)
	for i := range large {
		large[i] = byte(i*7 + i>>8)
	}
	junk := []byte{0xff, 0xfe, 0x00, 0xc3, 0x28, 0x80, 0x01, 0x02, 0xff, 0xff, 0xff, 0xff, 0x7f}
	switch r {
	case runtime.RoleMerge:
		return []input{
			{what: "two parts and a missing one", parts: []runtime.Part{{Data: []byte("a")}, {Missing: true}, {Data: []byte("b")}}, valid: true},
			{what: "no parts", parts: []runtime.Part{}, valid: true},
			{what: "a large part", parts: []runtime.Part{{Data: large}}},
			{what: "empty input (no part count)", data: []byte{}},
			{what: "bad framing (part longer than the input)", data: []byte{1, 0, 0, 0, 9, 0, 0, 0, 'x'}},
			{what: "bad framing (truncated count)", data: []byte{2, 0}},
			{what: "bad framing (trailing bytes)", data: []byte{0, 0, 0, 0, 'x'}},
			{what: "bad framing (huge count)", data: []byte{0xff, 0xff, 0xff, 0x7f}},
		}
	case runtime.RoleHTTP:
		return []input{
			{what: "GET / framed request", data: httpRequest("GET", "/", nil, nil), valid: true},
			{what: "POST with a large body", data: httpRequest("POST", "/upload", [][2]string{{"Content-Type", "application/octet-stream"}}, large)},
			{what: "empty input", data: []byte{}},
			{what: "bad framing (length past the end)", data: []byte{3, 0, 0, 0, 'G', 'E'}},
			{what: "bad framing (junk)", data: junk},
		}
	}
	return []input{
		{what: "empty input", data: []byte{}},
		{what: fmt.Sprintf("large input (%d bytes)", len(large)), data: large},
		{what: "malformed input (non-UTF-8 bytes)", data: junk},
	}
}

func (c *checker) exercise(ctx context.Context, m *runtime.Module, r runtime.Role, fn string) {
	name := r.String()
	if fn != "" {
		name = "function " + fn
	}
	for _, in := range c.inputs(r) {
		var out []byte
		var err error
		if in.parts != nil {
			out, err = m.Merge(ctx, in.parts, nil)
		} else {
			out, err = m.Call(ctx, r, in.data, nil)
		}
		label := fmt.Sprintf("%s: %s", name, in.what)
		switch {
		case err == nil && r == runtime.RoleHTTP:
			if ferr := checkHTTPResponse(out); ferr != nil {
				c.fail("%s: malformed HTTP response (%v)", label, ferr)
			} else {
				c.pass("%s -> framed response, %d bytes", label, len(out))
			}
		case err == nil && r == runtime.RoleMerge && in.parts == nil:
			// Framing the host never sends; ABI 2.1 asks a merge to refuse it rather than
			// merge what it guessed.
			c.warn("%s: accepted (%d bytes); a merge should refuse malformed framing with an error (guest-sdk/ABI.md section 2.1)", label, len(out))
		case err == nil:
			c.pass("%s -> %d bytes", label, len(out))
		case errors.Is(err, runtime.ErrGuest) && !in.valid:
			c.pass("%s -> refused by the guest (%v)", label, shorten(err))
		case errors.Is(err, runtime.ErrTooLarge) && !in.valid:
			c.pass("%s -> the guest has no buffer that large (allowed)", label)
		case errors.Is(err, runtime.ErrGuest):
			// Well-framed input may still be content the application refuses: not a violation.
			c.pass("%s -> refused by the guest although well framed (%v)", label, shorten(err))
		case errors.Is(err, runtime.ErrNotAllowed):
			// abi-check grants no network: a plugin that reaches out is refused, as in a pod
			// without network.allow.
			c.pass("%s -> asked for a capability abi-check does not grant (%v)", label, shorten(err))
		default:
			c.fail("%s: %s", label, violation(err))
		}
	}
}

// violation names what went wrong in a failed call that is not a guest error.
func violation(err error) string {
	switch {
	case errors.Is(err, runtime.ErrTrap):
		return "trap: " + shorten(err)
	case errors.Is(err, runtime.ErrDeadline):
		return "ran past its deadline: " + shorten(err)
	case errors.Is(err, runtime.ErrInput), errors.Is(err, runtime.ErrOutput), errors.Is(err, runtime.ErrInvalidModule):
		return "bad output: " + shorten(err)
	}
	return shorten(err)
}

func (c *checker) lifecycle(ctx context.Context, e *runtime.Engine, m *runtime.Module, wasm []byte, cfg runtime.ModuleConfig) {
	lc := m.Info().Lifecycle
	if contains(lc, "health") {
		if h, err := m.Health(ctx); err != nil {
			c.fail("lifecycle health: %s", violation(err))
		} else {
			c.pass("lifecycle health -> %s", h)
		}
	}
	if contains(lc, "tick") {
		if err := m.Tick(ctx); err != nil && (errors.Is(err, runtime.ErrTrap) || errors.Is(err, runtime.ErrDeadline)) {
			c.fail("lifecycle tick: %s", violation(err))
		} else if err != nil {
			c.pass("lifecycle tick -> failed tick reported (%v)", shorten(err))
		} else {
			c.pass("lifecycle tick")
		}
	}
	var state []byte
	snap := func(b []byte) error { state = b; return nil }
	err := m.Stop(ctx, runtime.StopOptions{Snapshot: snap})
	switch {
	case err != nil:
		c.fail("lifecycle stop: %v", shorten(err))
	case contains(lc, "stop") && contains(lc, "snapshot"):
		c.pass("lifecycle snapshot (%d bytes) and stop", len(state))
	case contains(lc, "snapshot"):
		c.pass("lifecycle snapshot (%d bytes)", len(state))
	case contains(lc, "stop"):
		c.pass("lifecycle stop")
	}
	if !contains(lc, "restore") {
		if state != nil {
			c.note("the module saves a snapshot but exports no wasmpod_restore to load it")
		}
		return
	}
	restore := func(what string, st []byte, mustAccept bool) {
		m2, err := e.Load(ctx, wasm, cfg)
		if err != nil {
			c.fail("lifecycle restore %s: load: %v", what, err)
			return
		}
		defer m2.Close(context.Background())
		err = m2.Start(ctx, runtime.StartOptions{State: st})
		switch {
		case err == nil:
			c.pass("lifecycle restore %s", what)
		case errors.Is(err, runtime.ErrTrap) || errors.Is(err, runtime.ErrDeadline):
			c.fail("lifecycle restore %s: %s", what, violation(err))
		case mustAccept:
			c.fail("lifecycle restore %s: refused its own snapshot: %v", what, shorten(err))
		default:
			c.pass("lifecycle restore %s -> refused (%v)", what, shorten(err))
		}
	}
	if state != nil {
		restore("of its own snapshot", state, true)
	}
	restore("of a malformed state", []byte{0xff, 0x00, 0xfe, 0x01, 0x02}, false)
}

// httpRequest frames a request as guest-sdk/ABI.md section 2.2 describes.
func httpRequest(method, uri string, headers [][2]string, body []byte) []byte {
	var b []byte
	str := func(s []byte) {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(s)))
		b = append(b, s...)
	}
	str([]byte(method))
	str([]byte(uri))
	b = binary.LittleEndian.AppendUint32(b, uint32(len(headers)))
	for _, h := range headers {
		str([]byte(h[0]))
		str([]byte(h[1]))
	}
	str(body)
	return b
}

// checkHTTPResponse validates a response framed as in guest-sdk/ABI.md section 2.2: u32
// status, u32 header count, that many (name, value) strings, body; exactly filling b.
func checkHTTPResponse(b []byte) error {
	u32 := func() (uint32, error) {
		if len(b) < 4 {
			return 0, errors.New("truncated")
		}
		v := binary.LittleEndian.Uint32(b)
		b = b[4:]
		return v, nil
	}
	str := func() error {
		n, err := u32()
		if err != nil {
			return err
		}
		if uint64(n) > uint64(len(b)) {
			return fmt.Errorf("a field of %d bytes with %d left", n, len(b))
		}
		b = b[n:]
		return nil
	}
	status, err := u32()
	if err != nil {
		return fmt.Errorf("status: %w", err)
	}
	if status < 100 || status > 999 {
		return fmt.Errorf("status %d out of range 100..999", status)
	}
	n, err := u32()
	if err != nil {
		return fmt.Errorf("header count: %w", err)
	}
	if uint64(n)*8 > uint64(len(b)) {
		return fmt.Errorf("%d headers cannot fit in %d bytes", n, len(b))
	}
	for i := uint32(0); i < n; i++ {
		if err := str(); err != nil {
			return fmt.Errorf("header %d name: %w", i, err)
		}
		if err := str(); err != nil {
			return fmt.Errorf("header %d value: %w", i, err)
		}
	}
	if err := str(); err != nil {
		return fmt.Errorf("body: %w", err)
	}
	if len(b) != 0 {
		return fmt.Errorf("%d trailing bytes", len(b))
	}
	return nil
}

func shorten(err error) string {
	s := err.Error()
	if i := strings.Index(s, "\nwasm stack trace"); i >= 0 {
		s = s[:i]
	}
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}

func list(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
