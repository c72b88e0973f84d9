package podspec

import (
	"fmt"
	"slices"
	"strings"

	"github.com/wasmpod/wasmpod/runtime"
)

// CheckWasm checks that wasm, the bytes of the module's file, can play the module's part: it
// speaks the module's ABI and exports what its role calls (for an Extism module, the function
// extism.function names, or the one named like the role). It reads the module's boundary
// without compiling it, so `wasmpod validate` and a pod reload give the same answer `wasmpod
// run` would. A missing export wraps runtime.ErrNoExport.
func (m *Module) CheckWasm(wasm []byte) error {
	desc, err := runtime.Describe(wasm)
	if err != nil {
		return fmt.Errorf("not a WebAssembly module: %w", err)
	}
	abi, abiErr := runtime.DetectABI(wasm)
	exports := map[string]string{} // name -> signature, functions only
	for _, s := range desc.Exports {
		if s.Kind == "func" {
			exports[s.Name] = s.Signature
		}
	}
	if m.ABI == ABIExtism {
		if abiErr == nil && abi == runtime.ABINative {
			return fmt.Errorf("this is a native wasmpod module (it exports wasmpod_abi_version), not an Extism plugin: remove abi: extism")
		}
		fn := m.ExtismFunction()
		if fn != "" {
			return desc.CheckExtismFunction(fn)
		}
		want := extismDefaultFunctions(m.Role)
		for _, f := range want {
			if desc.CheckExtismFunction(f) == nil {
				return nil
			}
		}
		if len(want) == 0 {
			return nil
		}
		have := desc.ExtismFunctions()
		hint := "it exports no Extism function"
		if len(have) > 0 {
			hint = "its functions are " + strings.Join(have, ", ")
		}
		return fmt.Errorf("%w: an Extism module of role %s is served by its function %s, or the one extism.function names; %s (e.g. extism: {function: %s})",
			runtime.ErrNoExport, m.Role, orList(want), hint, firstOr(have, "NAME"))
	}
	if abiErr == nil && abi == runtime.ABIExtism {
		return fmt.Errorf("this is an Extism plugin (it imports from %s): set abi: extism", runtime.ExtismImportModule)
	}
	_, isCommand := exports["_start"]
	if abiErr != nil {
		if m.Role == RoleStage && isCommand {
			return nil // a WASI command stage speaks no ABI of ours
		}
		if fns := desc.ExtismFunctions(); len(fns) > 0 && !slices.ContainsFunc(fns, func(f string) bool { return strings.HasPrefix(f, "wasmpod_") }) {
			return fmt.Errorf("this is not a native wasmpod module (it exports no wasmpod_abi_version); if it is an Extism plugin that uses no host function, set abi: extism (functions: %s)", strings.Join(fns, ", "))
		}
		return fmt.Errorf("this is not a native wasmpod module: it exports no wasmpod_abi_version (guest-sdk/ABI.md section 1)")
	}
	want := nativeExports(m.Role)
	for _, e := range want {
		if _, ok := exports[e]; ok {
			return nil
		}
	}
	if len(want) == 0 {
		return nil
	}
	alt := ""
	if m.Role == RoleStage {
		alt = " (or be a WASI command exporting _start)"
	}
	return fmt.Errorf("%w: role %s needs export %s%s", runtime.ErrNoExport, m.Role, orList(want), alt)
}

// ExtismFunction returns extism.function, or "" when the module names none.
func (m *Module) ExtismFunction() string {
	if m.Extism == nil {
		return ""
	}
	return m.Extism.Function
}

// CallRole returns the runtime role the host calls for the module's role, given which the
// loaded module serves (has): main takes http when it is served, else handle; an Extism module
// whose extism.function is set takes the role that function was mapped to (handle for main).
// ok is false when the module serves nothing its role needs; helpers need nothing (they may
// only tick) and get handle.
func (m *Module) CallRole(has func(runtime.Role) bool) (r runtime.Role, ok bool) {
	switch m.Role {
	case RoleMain:
		if m.ExtismFunction() != "" {
			return runtime.RoleHandle, has(runtime.RoleHandle)
		}
		if has(runtime.RoleHTTP) {
			return runtime.RoleHTTP, true
		}
		return runtime.RoleHandle, has(runtime.RoleHandle)
	case RoleLeaf:
		return runtime.RoleLeaf, has(runtime.RoleLeaf)
	case RoleMerge:
		return runtime.RoleMerge, has(runtime.RoleMerge)
	case RoleStage:
		return runtime.RoleStage, has(runtime.RoleStage)
	}
	return runtime.RoleHandle, true
}

// ExtismFunctions maps the role the host calls to extism.function, for the runtime's
// ModuleConfig.ExtismFunctions; nil when the module names no function.
func (m *Module) ExtismFunctions() map[runtime.Role]string {
	fn := m.ExtismFunction()
	if fn == "" {
		return nil
	}
	r, _ := m.CallRole(func(runtime.Role) bool { return true })
	if m.Role == RoleMain {
		r = runtime.RoleHandle
	}
	return map[runtime.Role]string{r: fn}
}

// extismDefaultFunctions are the function names that serve a role when extism.function is not
// set, in the order the host prefers them.
func extismDefaultFunctions(r Role) []string {
	switch r {
	case RoleMain:
		return []string{"http", "handle"}
	case RoleLeaf, RoleMerge, RoleStage:
		return []string{string(r)}
	}
	return nil
}

// nativeExports are the exports that serve a role in the native ABI, any one of which will do.
func nativeExports(r Role) []string {
	switch r {
	case RoleMain:
		return []string{"wasmpod_http", "wasmpod_handle"}
	case RoleLeaf, RoleMerge, RoleStage:
		return []string{"wasmpod_" + string(r)}
	}
	return nil
}

func orList(s []string) string {
	if len(s) == 1 {
		return s[0]
	}
	return strings.Join(s[:len(s)-1], ", ") + " or " + s[len(s)-1]
}

func firstOr(s []string, def string) string {
	if len(s) > 0 {
		return s[0]
	}
	return def
}
