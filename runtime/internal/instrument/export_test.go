package instrument

import "github.com/wasmpod/wasmpod/runtime/internal/wasmbin"

// The loop head check forms, for TestRetryLoopMatchesInline.
const (
	FormAuto   = formAuto
	FormInline = formInline
	FormRetry  = formRetry
)

// SetLoopForm selects the loop head checks of the next Instrument calls.
func SetLoopForm(f int) { loopForm = f }

// OuterLoops is loopFacts' first result.
func OuterLoops(code []byte, dst []bool) []bool {
	outer, _ := loopFacts(code, dst, nil)
	return outer
}

// SetBackEdges selects the back edge checks (true) or the head checks (false) of the next
// Instrument calls' retry loops.
func SetBackEdges(on bool) { backEdges = on }

// TableLoops is loopFacts' second result.
func TableLoops(code []byte, dst []bool) []bool {
	_, tables := loopFacts(code, nil, dst)
	return tables
}

// SpillGlobals instruments wasm and returns how many spill globals of each numeric type (i32,
// i64, f32, f64) its retry heads use.
func SpillGlobals(wasm []byte, opts Options) ([4]uint32, error) {
	w, _, err := instrumentWith(wasm, opts)
	if err != nil {
		return [4]uint32{}, err
	}
	return w.spillN, nil
}

// SetSaveLocals turns the retry heads' saves on or off for the next Instrument calls.
func SetSaveLocals(on bool) { saveLocals = on }

// LoopLocals returns, for every loop of the first function body of wasm in order, the locals
// its retry head would save (loopLocals); params holds the first byte of every parameter's type.
func LoopLocals(wasm []byte, params string) [][]uint32 {
	r := &wasmbin.Reader{B: wasm, Pos: 8}
	for !r.Done() && r.Err == nil {
		id := r.Byte()
		body := r.Bytes(int(r.U32()))
		if id != secCode {
			continue
		}
		br := &wasmbin.Reader{B: body}
		br.U32()
		code := br.Bytes(int(br.U32()))
		types := localTypes(code, []byte(params), nil)
		var out [][]uint32
		ir := instructions(code)
		for !ir.Done() && ir.Err == nil {
			op := ir.Byte()
			ir.Immediates(op)
			if op == 0x03 {
				out = append(out, loopLocals(code, ir.Pos, types, nil))
			}
		}
		return out
	}
	return nil
}
