package instrument

import (
	"fmt"
	"github.com/wasmpod/wasmpod/runtime/internal/wasmbin"
	"strings"
)

// Desc is what a module declares at its boundary: imports, exports and memory. Describe reads
// it from the binary without compiling anything, so it is cheap enough to run on every upload.
type Desc struct {
	Imports []Import
	Exports []Export
	// Memory is the module's first memory, defined or imported; nil if it has none.
	Memory *Memory
}

// Import is one import. Params and Results are set for function imports.
type Import struct {
	Module, Name string
	Kind         Kind
	Params       []ValType
	Results      []ValType
}

// Export is one export. Params and Results are set for function exports.
type Export struct {
	Name    string
	Kind    Kind
	Params  []ValType
	Results []ValType
}

// Memory is a memory's limits in 64 KiB pages.
type Memory struct {
	Min, Max     uint64
	HasMax       bool
	Imported     bool
	Exported     bool
	Is64, Shared bool
}

// Kind is an import or export kind.
type Kind byte

// Import and export kinds, numbered as in the binary format.
const (
	KindFunc   Kind = 0
	KindTable  Kind = 1
	KindMemory Kind = 2
	KindGlobal Kind = 3
	KindTag    Kind = 4
)

func (k Kind) String() string {
	switch k {
	case KindFunc:
		return "func"
	case KindTable:
		return "table"
	case KindMemory:
		return "memory"
	case KindGlobal:
		return "global"
	case KindTag:
		return "tag"
	}
	return fmt.Sprintf("kind(%d)", byte(k))
}

// ValType is a value type as encoded in the binary format (0x7F i32, 0x7E i64, ...).
type ValType byte

// Value types.
const (
	I32  ValType = 0x7F
	I64  ValType = 0x7E
	F32  ValType = 0x7D
	F64  ValType = 0x7C
	V128 ValType = 0x7B
)

func (v ValType) String() string {
	switch v {
	case I32:
		return "i32"
	case I64:
		return "i64"
	case F32:
		return "f32"
	case F64:
		return "f64"
	case V128:
		return "v128"
	case 0x70:
		return "funcref"
	case 0x6F:
		return "externref"
	}
	return fmt.Sprintf("type(0x%02x)", byte(v))
}

// Signature renders params and results as "(i32, i32) -> (i64)".
func Signature(params, results []ValType) string {
	p := make([]string, len(params))
	for i, t := range params {
		p[i] = t.String()
	}
	r := make([]string, len(results))
	for i, t := range results {
		r[i] = t.String()
	}
	return "(" + strings.Join(p, ", ") + ") -> (" + strings.Join(r, ", ") + ")"
}

type funcType struct{ params, results []ValType }

// Describe decodes the type, import, function, memory and export sections of a module. It does
// not validate code; a module it describes may still fail to compile.
func Describe(wasm []byte) (*Desc, error) {
	if err := CheckShape(wasm); err != nil {
		return nil, err
	}
	if wasm[4] != 1 || wasm[5] != 0 || wasm[6] != 0 || wasm[7] != 0 {
		return nil, fmt.Errorf("%w: unsupported binary version %x", ErrMalformed, wasm[4:8])
	}
	d := &Desc{}
	var types []funcType
	var funcs []uint32 // type index of every function, imported first
	memExportIdx := int64(-1)
	var exportFuncs []uint32
	r := &wasmbin.Reader{B: wasm, Pos: 8}
	for !r.Done() {
		id := r.Byte()
		body := r.Bytes(int(r.U32()))
		if r.Err != nil {
			return nil, fmt.Errorf("%w: section %d: %v", ErrMalformed, id, r.Err)
		}
		sr := &wasmbin.Reader{B: body}
		switch id {
		case secType:
			n := sr.U32()
			for i := uint32(0); i < n && sr.Err == nil; i++ {
				if form := sr.Byte(); form != 0x60 && sr.Err == nil {
					return nil, fmt.Errorf("%w: type %d has form 0x%02x (only function types are supported)", ErrMalformed, i, form)
				}
				var ft funcType
				ft.params = valtypes(sr)
				ft.results = valtypes(sr)
				types = append(types, ft)
			}
		case secImport:
			n := sr.U32()
			for i := uint32(0); i < n && sr.Err == nil; i++ {
				imp := Import{Module: string(sr.Bytes(int(sr.U32()))), Name: string(sr.Bytes(int(sr.U32())))}
				imp.Kind = Kind(sr.Byte())
				switch imp.Kind {
				case KindFunc:
					ti := sr.U32()
					if sr.Err == nil && int(ti) >= len(types) {
						return nil, fmt.Errorf("%w: import %s.%s uses type %d of %d", ErrMalformed, imp.Module, imp.Name, ti, len(types))
					}
					if sr.Err == nil {
						imp.Params, imp.Results = types[ti].params, types[ti].results
					}
					funcs = append(funcs, ti)
				case KindTable:
					sr.Valtype()
					sr.Limits()
				case KindMemory:
					m := memLimits(sr)
					if d.Memory == nil && sr.Err == nil {
						m.Imported = true
						d.Memory = &m
					}
				case KindGlobal:
					sr.Valtype()
					sr.Byte()
				case KindTag:
					sr.Byte()
					sr.U32()
				default:
					if sr.Err == nil {
						return nil, fmt.Errorf("%w: import %d has unknown kind %d", ErrMalformed, i, imp.Kind)
					}
				}
				d.Imports = append(d.Imports, imp)
			}
		case 3: // function
			n := sr.U32()
			for i := uint32(0); i < n && sr.Err == nil; i++ {
				ti := sr.U32()
				if sr.Err == nil && int(ti) >= len(types) {
					return nil, fmt.Errorf("%w: function %d uses type %d of %d", ErrMalformed, i, ti, len(types))
				}
				funcs = append(funcs, ti)
			}
		case 5: // memory
			n := sr.U32()
			for i := uint32(0); i < n && sr.Err == nil; i++ {
				m := memLimits(sr)
				if d.Memory == nil && sr.Err == nil {
					d.Memory = &m
				}
			}
		case secExport:
			n := sr.U32()
			for i := uint32(0); i < n && sr.Err == nil; i++ {
				e := Export{Name: string(sr.Bytes(int(sr.U32()))), Kind: Kind(sr.Byte())}
				idx := sr.U32()
				if e.Kind == KindMemory && idx == 0 {
					memExportIdx = int64(len(d.Exports))
				}
				d.Exports = append(d.Exports, e)
				exportFuncs = append(exportFuncs, idx)
			}
		default:
			continue
		}
		if sr.Err != nil || !sr.Done() {
			return nil, fmt.Errorf("%w: section %d: %v", ErrMalformed, id, orTrailing(sr))
		}
	}
	for i := range d.Exports {
		e := &d.Exports[i]
		if e.Kind != KindFunc {
			continue
		}
		fi := exportFuncs[i]
		if int(fi) >= len(funcs) {
			return nil, fmt.Errorf("%w: export %q names function %d of %d", ErrMalformed, e.Name, fi, len(funcs))
		}
		ft := types[funcs[fi]]
		e.Params, e.Results = ft.params, ft.results
	}
	if memExportIdx >= 0 && d.Memory != nil {
		d.Memory.Exported = true
	}
	return d, nil
}

// valtypes reads a vector of value types.
func valtypes(r *wasmbin.Reader) []ValType {
	n := r.U32()
	if r.Err != nil {
		return nil
	}
	if int64(n) > int64(len(r.B)-r.Pos) {
		r.Fail(wasmbin.ErrEOF)
		return nil
	}
	out := make([]ValType, 0, n)
	for i := uint32(0); i < n && r.Err == nil; i++ {
		start := r.Pos
		r.Valtype()
		if r.Err == nil {
			out = append(out, ValType(r.B[start]))
		}
	}
	return out
}

// memLimits reads memory limits (flags: 1 max present, 2 shared, 4 memory64).
func memLimits(r *wasmbin.Reader) Memory {
	flags := r.Byte()
	if flags > 0x07 {
		r.Fail(fmt.Errorf("unknown limits flags 0x%02x", flags))
		return Memory{}
	}
	m := Memory{Min: r.U64(), Shared: flags&2 != 0, Is64: flags&4 != 0}
	if flags&1 != 0 {
		m.Max, m.HasMax = r.U64(), true
	}
	return m
}

// RenameImports returns a copy of wasm in which every function import fromModule.name, for
// each name in names, is imported from toModule instead. Nothing else changes (indices stay
// the same), so the module behaves identically once toModule provides the same functions.
func RenameImports(wasm []byte, fromModule string, names []string, toModule string) ([]byte, error) {
	if err := CheckShape(wasm); err != nil {
		return nil, err
	}
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	out := make([]byte, 0, len(wasm)+64)
	out = append(out, wasm[:8]...)
	r := &wasmbin.Reader{B: wasm, Pos: 8}
	for !r.Done() {
		id := r.Byte()
		body := r.Bytes(int(r.U32()))
		if r.Err != nil {
			return nil, fmt.Errorf("%w: section %d: %v", ErrMalformed, id, r.Err)
		}
		if id == secImport {
			nb, err := renameInImportSection(body, fromModule, want, toModule)
			if err != nil {
				return nil, err
			}
			body = nb
		}
		out = append(out, id)
		out = appendU32(out, uint32(len(body)))
		out = append(out, body...)
	}
	return out, nil
}

func renameInImportSection(body []byte, fromModule string, want map[string]bool, toModule string) ([]byte, error) {
	r := &wasmbin.Reader{B: body}
	n := r.U32()
	out := appendU32(nil, n)
	for i := uint32(0); i < n && r.Err == nil; i++ {
		mod := r.Bytes(int(r.U32()))
		name := r.Bytes(int(r.U32()))
		descStart := r.Pos
		kind := r.Byte()
		switch kind {
		case 0:
			r.U32()
		case 1:
			r.Valtype()
			r.Limits()
		case 2:
			r.Limits()
		case 3:
			r.Valtype()
			r.Byte()
		case 4:
			r.Byte()
			r.U32()
		default:
			if r.Err == nil {
				return nil, fmt.Errorf("%w: import %d has unknown kind %d", ErrMalformed, i, kind)
			}
		}
		if r.Err != nil {
			break
		}
		if kind == 0 && string(mod) == fromModule && want[string(name)] {
			mod = []byte(toModule)
		}
		out = appendName(out, string(mod))
		out = appendName(out, string(name))
		out = append(out, r.B[descStart:r.Pos]...)
	}
	if r.Err != nil || !r.Done() {
		return nil, fmt.Errorf("%w: import section: %v", ErrMalformed, orTrailing(r))
	}
	return out, nil
}
