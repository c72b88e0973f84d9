package instrument

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/wasmpod/wasmpod/runtime/internal/wasmbin"
)

// Pre-initialised instance images (runtime/image.go): the host initialises one instance, saves
// its linear memory and mutable globals, and creates further instances from that state instead
// of running the initialisation again. Two passes serve it:
//
//   - PrepareImage, before compilation, exports every mutable global the module defines (under
//     ImageGlobalPrefix + its index) so the host can read them after the initialisation, and
//     says whether the module's shape allows an image at all (ImageFacts.Refusal).
//   - ImageModule, after the capture, turns the prepared module into the image's module: the
//     memory's minimum becomes the captured size, the captured globals become the globals'
//     initial values, and the data segments and the start section go (their effect is in the
//     captured memory). The host backs that module's memory with the captured bytes.

// ImageGlobalPrefix starts the names of the exports PrepareImage adds: the prefix followed by the
// global's index in the module's global index space.
const ImageGlobalPrefix = "__wasmpod_global_"

// ImageFacts is what PrepareImage found.
type ImageFacts struct {
	// Refusal, when not empty, says why instances of this module cannot be made from an image;
	// the prepared module is then the input unchanged.
	Refusal string
	// Globals are the mutable globals the image must capture: their export names and types.
	Globals []ImageGlobal
}

// ImageGlobal is one mutable global that PrepareImage exported for the capture.
type ImageGlobal struct {
	Index  uint32
	Type   ValType
	Export string
}

// PrepareImage returns wasm with an export for every mutable global it defines except, in a
// module the instrumentation made (instrumented), its own ones (the fuel, the stack budget and
// the retry heads' spill globals, from the exported fuel on: a new instance starts them from
// their initial values, not from what the initialisation left), and the facts the image
// needs. A module whose shape makes an image inexact gets a Refusal and is returned unchanged:
// tables the code can change (table.set, table.grow, table.fill, table.copy, table.init,
// elem.drop), passive data the code can copy or drop (memory.init, data.drop), imported
// mutable globals, an imported or shared memory, globals of reference or vector type.
func PrepareImage(wasm []byte, instrumented bool) ([]byte, ImageFacts, error) {
	refuse := func(format string, args ...any) ([]byte, ImageFacts, error) {
		return wasm, ImageFacts{Refusal: fmt.Sprintf(format, args...)}, nil
	}
	secs, err := splitSections(wasm)
	if err != nil {
		return nil, ImageFacts{}, err
	}
	var importedGlobals uint32
	var globals []ImageGlobal
	hasMemory := false
	hostFrom := uint32(1<<32 - 1) // index of the first of the instrumentation's globals
	for _, s := range secs {
		r := &wasmbin.Reader{B: s.body}
		switch s.id {
		case secImport:
			n := r.U32()
			for i := uint32(0); i < n && r.Err == nil; i++ {
				r.Bytes(int(r.U32()))
				r.Bytes(int(r.U32()))
				switch kind := r.Byte(); kind {
				case 0x00:
					r.U32()
				case 0x01:
					r.Valtype()
					r.Limits()
				case 0x02:
					return refuse("the module imports its memory")
				case 0x03:
					r.Valtype()
					if r.Byte() != 0 {
						return refuse("the module imports a mutable global")
					}
					importedGlobals++
				default:
					return refuse("the module imports a %s", Kind(kind))
				}
			}
		case 5: // memory
			n := r.U32()
			if n != 1 {
				return refuse("the module defines %d memories", n)
			}
			if flags := r.Peek(); flags&0x02 != 0 || flags&0x04 != 0 {
				return refuse("the module's memory is shared or 64-bit")
			}
			hasMemory = true
		case secGlobal:
			n := r.U32()
			for i := uint32(0); i < n && r.Err == nil; i++ {
				t := ValType(r.Peek())
				r.Valtype()
				mut := r.Byte()
				r.ConstExpr()
				if mut == 1 {
					switch t {
					case I32, I64, F32, F64:
					default:
						return refuse("the module has a mutable global of type 0x%02x", byte(t))
					}
					idx := importedGlobals + i
					globals = append(globals, ImageGlobal{Index: idx, Type: t, Export: ImageGlobalPrefix + strconv.FormatUint(uint64(idx), 10)})
				}
			}
		case secExport:
			n := r.U32()
			for i := uint32(0); i < n && r.Err == nil; i++ {
				name := r.Bytes(int(r.U32()))
				kind := r.Byte()
				idx := r.U32()
				if instrumented && kind == 0x03 && string(name) == FuelName {
					hostFrom = idx
				}
				if strings.HasPrefix(string(name), ImageGlobalPrefix) {
					return refuse("the module exports %q, a name reserved for the host", name)
				}
			}
		case secCode:
			if why := scanImageCode(s.body); why != "" {
				return refuse("%s", why)
			}
		}
		if r.Err != nil {
			return nil, ImageFacts{}, fmt.Errorf("%w: section %d: %v", ErrMalformed, s.id, r.Err)
		}
	}
	if !hasMemory {
		return refuse("the module defines no memory")
	}
	if instrumented && hostFrom == 1<<32-1 {
		return nil, ImageFacts{}, fmt.Errorf("%w: an instrumented module without the %q export", ErrMalformed, FuelName)
	}
	// Leave the instrumentation's own globals at their initial values.
	keep := globals[:0]
	for _, g := range globals {
		if g.Index < hostFrom {
			keep = append(keep, g)
		}
	}
	globals = keep
	out := make([]byte, 0, len(wasm)+32*len(globals))
	out = append(out, wasm[:8]...)
	added := false
	for _, s := range secs {
		body := s.body
		if s.id == secExport {
			body = addGlobalExports(body, globals)
			added = true
		}
		if !added && sectionOrder[s.id] > sectionOrder[secExport] && s.id != secCustom {
			out = appendSection(out, secExport, addGlobalExports([]byte{0}, globals))
			added = true
		}
		out = appendSection(out, s.id, body)
	}
	if !added {
		out = appendSection(out, secExport, addGlobalExports([]byte{0}, globals))
	}
	return out, ImageFacts{Globals: globals}, nil
}

// ImageModule returns the image's module made from a module PrepareImage returned: its memory's
// minimum is pages, the globals in values (by global index) get those bit patterns as their
// initial values, and the data segments, the data count and the start section are gone.
func ImageModule(prepared []byte, pages uint32, values map[uint32]uint64) ([]byte, error) {
	secs, err := splitSections(prepared)
	if err != nil {
		return nil, err
	}
	var importedGlobals uint32
	out := make([]byte, 0, len(prepared))
	out = append(out, prepared[:8]...)
	for _, s := range secs {
		body := s.body
		r := &wasmbin.Reader{B: body}
		switch s.id {
		case secImport:
			n := r.U32()
			for i := uint32(0); i < n && r.Err == nil; i++ {
				r.Bytes(int(r.U32()))
				r.Bytes(int(r.U32()))
				switch r.Byte() {
				case 0x00:
					r.U32()
				case 0x01:
					r.Valtype()
					r.Limits()
				case 0x03:
					r.Valtype()
					r.Byte()
					importedGlobals++
				}
			}
		case 5: // the one memory: same flags and maximum, the captured size as minimum
			r.U32()
			flags := r.Byte()
			r.Leb(10)
			b := []byte{1, flags}
			b = appendU32(b, pages)
			if flags&1 != 0 {
				b = wasmbin.AppendU64(b, r.Leb(10))
			}
			body = b
		case secGlobal:
			n := r.U32()
			b := appendU32(nil, n)
			for i := uint32(0); i < n && r.Err == nil; i++ {
				start := r.Pos
				t := r.Peek()
				r.Valtype()
				r.Byte()
				b = append(b, body[start:r.Pos]...)
				exprStart := r.Pos
				r.ConstExpr()
				v, ok := values[importedGlobals+i]
				if !ok {
					b = append(b, body[exprStart:r.Pos]...)
					continue
				}
				switch ValType(t) {
				case I32:
					b = append(b, 0x41)
					b = appendS32(b, int32(uint32(v)))
				case I64:
					b = append(b, 0x42)
					b = wasmbin.AppendS64(b, int64(v))
				case F32:
					b = append(b, 0x43, byte(v), byte(v>>8), byte(v>>16), byte(v>>24))
				case F64:
					b = append(b, 0x44)
					for k := 0; k < 8; k++ {
						b = append(b, byte(v>>(8*k)))
					}
				default:
					return nil, fmt.Errorf("image: global %d has type 0x%02x", importedGlobals+i, t)
				}
				b = append(b, 0x0B)
			}
			body = b
		case secStart, 11, 12: // start, data, data count: their effect is in the image
			continue
		}
		if r.Err != nil {
			return nil, fmt.Errorf("%w: section %d: %v", ErrMalformed, s.id, r.Err)
		}
		out = appendSection(out, s.id, body)
	}
	return out, nil
}

// scanImageCode says why the code makes an image inexact, or "": an instruction that changes a
// table or copies or drops passive data could have run during the initialisation, and its
// effect is not in the captured memory and globals.
func scanImageCode(body []byte) string {
	r := &wasmbin.Reader{B: body}
	n := r.U32()
	for i := uint32(0); i < n && r.Err == nil; i++ {
		fb := r.Bytes(int(r.U32()))
		fr := &wasmbin.Reader{B: fb}
		groups := fr.U32()
		for g := uint32(0); g < groups && fr.Err == nil; g++ {
			fr.U32()
			fr.Valtype()
		}
		for !fr.Done() {
			op := fr.Byte()
			switch op {
			case 0x26:
				return "the code uses table.set"
			case 0xFC:
				save := fr.Pos
				sub := fr.U32()
				fr.Pos = save
				switch sub {
				case 8:
					return "the code uses memory.init"
				case 9:
					return "the code uses data.drop"
				case 12, 13, 14, 15, 17:
					return "the code changes a table (table.init, elem.drop, table.copy, table.grow or table.fill)"
				}
			}
			fr.Immediates(op)
		}
		if fr.Err != nil {
			return fmt.Sprintf("function %d does not decode: %v", i, fr.Err)
		}
	}
	return ""
}

func splitSections(wasm []byte) ([]section, error) {
	if len(wasm) < 8 || string(wasm[:4]) != "\x00asm" {
		return nil, fmt.Errorf("%w: no wasm magic number", ErrMalformed)
	}
	r := &wasmbin.Reader{B: wasm, Pos: 8}
	var secs []section
	for !r.Done() {
		id := r.Byte()
		body := r.Bytes(int(r.U32()))
		if r.Err != nil {
			return nil, fmt.Errorf("%w: section %d: %v", ErrMalformed, id, r.Err)
		}
		secs = append(secs, section{id: id, body: body})
	}
	return secs, nil
}

func appendSection(out []byte, id byte, body []byte) []byte {
	out = append(out, id)
	out = appendU32(out, uint32(len(body)))
	return append(out, body...)
}

// addGlobalExports appends an export per global to an export section's body.
func addGlobalExports(body []byte, globals []ImageGlobal) []byte {
	r := &wasmbin.Reader{B: body}
	n := r.U32()
	out := appendU32(nil, n+uint32(len(globals)))
	out = append(out, body[r.Pos:]...)
	for _, g := range globals {
		out = appendName(out, g.Export)
		out = append(out, 0x03)
		out = appendU32(out, g.Index)
	}
	return out
}
