package runtime

import (
	"fmt"
	"strings"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/wasmpod/wasmpod/runtime/internal/instrument"
)

// Role is a handler export of the native ABI.
type Role int

// Roles, one handler export each (guest-sdk/ABI.md section 2).
const (
	RoleHandle Role = iota // wasmpod_handle: request handler
	RoleLeaf               // wasmpod_leaf: scatter/gather leaf
	RoleMerge              // wasmpod_merge: scatter/gather merge
	RoleHTTP               // wasmpod_http: HTTP handler
	RoleStage              // wasmpod_stage: work-queue stage
	numRoles
)

// String returns the role's short name (handle, leaf, merge, http, stage).
func (r Role) String() string {
	if r < 0 || r >= numRoles {
		return fmt.Sprintf("role(%d)", int(r))
	}
	return exportTable[r].short
}

// ParseRole is the inverse of Role.String.
func ParseRole(s string) (Role, error) {
	for r := Role(0); r < numRoles; r++ {
		if exportTable[r].short == s {
			return r, nil
		}
	}
	return 0, fmt.Errorf("unknown role %q (want handle, leaf, merge, http or stage)", s)
}

// export indexes: the roles first (so a Role is its own index), then the rest.
const (
	expStart = int(numRoles) + iota
	expStop
	expHealth
	expTick
	expSnapshot
	expRestore
	expBuffer
	expVersion
	expInitialize
	numExports
)

type exportSpec struct {
	name, short string
	params      []api.ValueType
	results     []api.ValueType
	required    bool
	oneShot     bool // called at most once per instance: its handle is not kept (callRaw)
}

var (
	i32 = api.ValueTypeI32
	i64 = api.ValueTypeI64
)

var exportTable = [numExports]exportSpec{
	int(RoleHandle): {name: "wasmpod_handle", short: "handle", params: []api.ValueType{i32}, results: []api.ValueType{i64}},
	int(RoleLeaf):   {name: "wasmpod_leaf", short: "leaf", params: []api.ValueType{i32}, results: []api.ValueType{i64}},
	int(RoleMerge):  {name: "wasmpod_merge", short: "merge", params: []api.ValueType{i32}, results: []api.ValueType{i64}},
	int(RoleHTTP):   {name: "wasmpod_http", short: "http", params: []api.ValueType{i32}, results: []api.ValueType{i64}},
	int(RoleStage):  {name: "wasmpod_stage", short: "stage", params: []api.ValueType{i32}, results: []api.ValueType{i64}},
	expStart:        {name: "wasmpod_start", short: "start", results: []api.ValueType{i32}, oneShot: true},
	expStop:         {name: "wasmpod_stop", short: "stop", params: []api.ValueType{i64}, results: []api.ValueType{i32}, oneShot: true},
	expHealth:       {name: "wasmpod_health", short: "health", results: []api.ValueType{i32}},
	expTick:         {name: "wasmpod_tick", short: "tick", params: []api.ValueType{i64}, results: []api.ValueType{i32}},
	expSnapshot:     {name: "wasmpod_snapshot", short: "snapshot", results: []api.ValueType{i64}},
	expRestore:      {name: "wasmpod_restore", short: "restore", params: []api.ValueType{i32}, results: []api.ValueType{i32}, oneShot: true},
	expBuffer:       {name: "wasmpod_buffer", short: "buffer", params: []api.ValueType{i32}, results: []api.ValueType{i32}, required: true},
	expVersion:      {name: "wasmpod_abi_version", short: "abi_version", results: []api.ValueType{i32}, required: true, oneShot: true},
	expInitialize:   {name: "_initialize", short: "_initialize", oneShot: true},
}

// ABIVersion is the native guest ABI version this runtime speaks.
const ABIVersion = 1

// Info describes a loaded module: what it exports and declares.
type Info struct {
	Name   string `json:"name"`
	SHA256 string `json:"sha256"`
	// Roles are the handler exports present (handle, leaf, merge, http, stage).
	Roles []string `json:"roles"`
	// Lifecycle are the optional lifecycle exports present (start, stop, health, tick, snapshot, restore).
	Lifecycle []string `json:"lifecycle"`
	// Imports are the host functions it imports, as "namespace.name".
	Imports []string `json:"imports"`
	// MemoryMinPages and MemoryMaxPages are what its memory declares (max 0: none encoded).
	MemoryMinPages uint32 `json:"memoryMinPages"`
	MemoryMaxPages uint32 `json:"memoryMaxPages"`
	Trusted        bool   `json:"trusted"`
	// Image says whether instances are made from a pre-initialised image ("ready: ...") or
	// why not ("refused: ...", "none: ..."); see Config.DisableImages.
	Image string `json:"image"`
}

func sigString(params, results []api.ValueType) string {
	p := make([]string, len(params))
	for i, t := range params {
		p[i] = api.ValueTypeName(t)
	}
	r := make([]string, len(results))
	for i, t := range results {
		r[i] = api.ValueTypeName(t)
	}
	return "(" + strings.Join(p, ", ") + ") -> (" + strings.Join(r, ", ") + ")"
}

func sameAPITypes(a, b []api.ValueType) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// inspect checks a compiled module against the ABI and the module's limits.
func inspect(cm wazero.CompiledModule, cfg *ModuleConfig, hostFns map[string]hostSig) (has [numExports]bool, info Info, err error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: module %q: %s", ErrInvalidModule, cfg.Name, fmt.Sprintf(format, args...))
	}
	for _, d := range cm.ImportedFunctions() {
		ns, name, _ := d.Import()
		info.Imports = append(info.Imports, ns+"."+name)
		switch ns {
		case ImportModule:
			if name == instrument.YieldName && !cfg.Trusted {
				continue // added by the instrumentation of guarded modules
			}
			sig, ok := hostFns[name]
			if !ok {
				return has, info, bad("imports %s.%s, which this host (ABI v%d) does not provide", ns, name, ABIVersion)
			}
			if !sameTypes(sig.params, d.ParamTypes()) || !sameTypes(sig.results, d.ResultTypes()) {
				return has, info, bad("imports %s.%s with signature %s; the host provides %s", ns, name, sigString(d.ParamTypes(), d.ResultTypes()), sigString(apiTypes(sig.params), apiTypes(sig.results)))
			}
		case "wasi_snapshot_preview1":
		case "extism:host/env":
			return has, info, bad("imports %s.%s: this is an Extism plugin, not a native wasmpod module (load it with the Extism ABI)", ns, name)
		default:
			return has, info, bad("imports %s.%s; only the %q and wasi_snapshot_preview1 namespaces are provided", ns, name, ImportModule)
		}
	}
	if n := len(cm.ImportedMemories()); n > 0 {
		return has, info, bad("imports a memory; a module must define and export its own")
	}
	mems := cm.ExportedMemories()
	mem, ok := mems["memory"]
	if !ok {
		return has, info, bad("does not export its memory as \"memory\"")
	}
	info.MemoryMinPages = mem.Min()
	if max, encoded := mem.Max(); encoded {
		info.MemoryMaxPages = max
	}
	if mem.Min() > cfg.MaxMemoryPages {
		return has, info, fmt.Errorf("%w: module %q: memory declares a minimum of %d pages, over its limit of %d pages (%d MiB)", ErrMemoryLimit, cfg.Name, mem.Min(), cfg.MaxMemoryPages, cfg.MaxMemoryPages/16)
	}
	if max, encoded := mem.Max(); encoded && max > cfg.MaxMemoryPages {
		return has, info, fmt.Errorf("%w: module %q: memory declares a maximum of %d pages, over its limit of %d pages (%d MiB); raise the limit or rebuild with a lower maximum", ErrMemoryLimit, cfg.Name, max, cfg.MaxMemoryPages, cfg.MaxMemoryPages/16)
	}
	fns := cm.ExportedFunctions()
	for i := range exportTable {
		spec := &exportTable[i]
		d, ok := fns[spec.name]
		if !ok {
			if spec.required {
				return has, info, bad("does not export %s %s, required by the wasmpod ABI (is it a wasmpod plugin?)", spec.name, sigString(spec.params, spec.results))
			}
			continue
		}
		if !sameAPITypes(d.ParamTypes(), spec.params) || !sameAPITypes(d.ResultTypes(), spec.results) {
			return has, info, bad("exports %s with signature %s; the ABI wants %s", spec.name, sigString(d.ParamTypes(), d.ResultTypes()), sigString(spec.params, spec.results))
		}
		has[i] = true
		switch {
		case i < int(numRoles):
			info.Roles = append(info.Roles, spec.short)
		case i <= expRestore:
			info.Lifecycle = append(info.Lifecycle, spec.short)
		}
	}
	return has, info, nil
}
