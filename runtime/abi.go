package runtime

import (
	"errors"
	"fmt"
	"strings"

	"github.com/wasmpod/wasmpod/runtime/internal/instrument"
)

// ABI is the calling convention a module is loaded with.
type ABI int

// ABIs. The zero value is the native ABI.
const (
	// ABINative is wasmpod's own guest ABI (guest-sdk/ABI.md): one wasm call per request, no
	// host-side allocation.
	ABINative ABI = iota
	// ABIExtism runs a plugin built for the Extism ABI (it imports from "extism:host/env")
	// through extism go-sdk. Every role is bytes in, bytes out through Extism's input and
	// output; see [ModuleConfig.ExtismFunctions] for which function serves a role.
	ABIExtism
	// ABIAuto picks the ABI with [DetectABI] when the module is loaded.
	ABIAuto
)

// ExtismImportModule is the import namespace of Extism's host functions.
const ExtismImportModule = "extism:host/env"

// ErrUnknownABI is wrapped by DetectABI's error for a module that speaks neither ABI.
var ErrUnknownABI = errors.New("module speaks neither the wasmpod nor the Extism ABI")

// String returns "native", "extism" or "auto".
func (a ABI) String() string {
	switch a {
	case ABINative:
		return "native"
	case ABIExtism:
		return "extism"
	case ABIAuto:
		return "auto"
	}
	return fmt.Sprintf("abi(%d)", int(a))
}

// ParseABI is the inverse of ABI.String; "" is native (the pod spec's default).
func ParseABI(s string) (ABI, error) {
	switch s {
	case "", "native":
		return ABINative, nil
	case "extism":
		return ABIExtism, nil
	case "auto":
		return ABIAuto, nil
	}
	return 0, fmt.Errorf("unknown ABI %q (want native, extism or auto)", s)
}

// DetectABI reads a module's imports and exports (without compiling it) and tells which ABI it
// speaks: native if it exports wasmpod_abi_version, Extism if it imports from
// "extism:host/env". A module that does both is native (the export is the stronger claim). A
// malformed module fails with ErrInvalidModule; one with neither mark with ErrUnknownABI.
func DetectABI(wasm []byte) (ABI, error) {
	d, err := instrument.Describe(wasm)
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrInvalidModule, err)
	}
	return detectABI(d)
}

func detectABI(d *instrument.Desc) (ABI, error) {
	for _, e := range d.Exports {
		if e.Kind == instrument.KindFunc && e.Name == exportTable[expVersion].name {
			return ABINative, nil
		}
	}
	for _, imp := range d.Imports {
		if imp.Module == ExtismImportModule {
			return ABIExtism, nil
		}
	}
	return 0, fmt.Errorf("%w: it neither exports %s nor imports from %q", ErrUnknownABI, exportTable[expVersion].name, ExtismImportModule)
}

// Description is what a module declares at its boundary, read from its bytes without
// compiling or running it (see [Describe]).
type Description struct {
	Imports []Symbol `json:"imports"`
	Exports []Symbol `json:"exports"`
	// Memory is the module's first memory; nil if it has none.
	Memory *MemoryDecl `json:"memory,omitempty"`
}

// Symbol is one import or export. Signature is set for functions, e.g. "(i32) -> (i64)".
type Symbol struct {
	// Module is the import namespace (empty for exports).
	Module    string `json:"module,omitempty"`
	Name      string `json:"name"`
	Kind      string `json:"kind"` // func, table, memory, global or tag
	Signature string `json:"signature,omitempty"`
}

// MemoryDecl is a memory's declaration, in 64 KiB pages.
type MemoryDecl struct {
	MinPages uint64 `json:"minPages"`
	MaxPages uint64 `json:"maxPages,omitempty"`
	HasMax   bool   `json:"hasMax"`
	Imported bool   `json:"imported,omitempty"`
	Exported bool   `json:"exported"`
	Shared   bool   `json:"shared,omitempty"`
	Memory64 bool   `json:"memory64,omitempty"`
}

// Describe decodes a module's imports, exports and memory without compiling it. A malformed
// module fails with ErrInvalidModule.
func Describe(wasm []byte) (Description, error) {
	d, err := instrument.Describe(wasm)
	if err != nil {
		return Description{}, fmt.Errorf("%w: %v", ErrInvalidModule, err)
	}
	var out Description
	for _, imp := range d.Imports {
		s := Symbol{Module: imp.Module, Name: imp.Name, Kind: imp.Kind.String()}
		if imp.Kind == instrument.KindFunc {
			s.Signature = instrument.Signature(imp.Params, imp.Results)
		}
		out.Imports = append(out.Imports, s)
	}
	for _, e := range d.Exports {
		s := Symbol{Name: e.Name, Kind: e.Kind.String()}
		if e.Kind == instrument.KindFunc {
			s.Signature = instrument.Signature(e.Params, e.Results)
		}
		out.Exports = append(out.Exports, s)
	}
	if m := d.Memory; m != nil {
		out.Memory = &MemoryDecl{MinPages: m.Min, MaxPages: m.Max, HasMax: m.HasMax, Imported: m.Imported, Exported: m.Exported, Shared: m.Shared, Memory64: m.Is64}
	}
	return out, nil
}

// ExportSignatures returns the signature the native ABI requires of each export it defines
// (roles, lifecycle, wasmpod_buffer, wasmpod_abi_version, _initialize), as Describe renders
// signatures. Conformance checkers compare a module against it.
func ExportSignatures() map[string]string {
	out := make(map[string]string, len(exportTable))
	for _, s := range exportTable {
		out[s.name] = sigString(s.params, s.results)
	}
	return out
}

// ExtismFunctions lists the exported functions an Extism host can call: () -> (i32) or
// () -> (), except names starting with "_" (_start, _initialize and toolchain internals).
func (d Description) ExtismFunctions() []string {
	var out []string
	for _, s := range d.Exports {
		if s.Kind == "func" && !strings.HasPrefix(s.Name, "_") && (s.Signature == "() -> (i32)" || s.Signature == "() -> ()") {
			out = append(out, s.Name)
		}
	}
	return out
}

// CheckExtismFunction reports whether the module exports name as an Extism function (see
// ExtismFunctions). The error wraps ErrNoExport and names the functions it does export.
func (d Description) CheckExtismFunction(name string) error {
	for _, s := range d.Exports {
		if s.Name != name {
			continue
		}
		if s.Kind != "func" {
			return fmt.Errorf("%w: %q is a %s, not a function", ErrNoExport, name, s.Kind)
		}
		if s.Signature != "() -> (i32)" && s.Signature != "() -> ()" {
			return fmt.Errorf("%w: function %q has signature %s; an Extism function is () -> (i32) or () -> ()", ErrNoExport, name, s.Signature)
		}
		return nil
	}
	fns := d.ExtismFunctions()
	if len(fns) == 0 {
		return fmt.Errorf("%w: no function %q (the module exports no Extism function)", ErrNoExport, name)
	}
	return fmt.Errorf("%w: no function %q (Extism functions: %s)", ErrNoExport, name, strings.Join(fns, ", "))
}
