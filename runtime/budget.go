package runtime

import (
	"errors"
	"fmt"
	"math"

	"github.com/wasmpod/wasmpod/internal/regfile"
	"github.com/wasmpod/wasmpod/runtime/internal/budget"
	"github.com/wasmpod/wasmpod/runtime/internal/instrument"
)

// ErrCompileBudget: an module exceeds the engine's compile budget (too many
// functions, locals, nested blocks, table entries, ...). Errors wrapping it also wrap
// ErrInvalidModule and name the limit, e.g. "function 3 has 60000 levels of nested blocks
// (limit MaxNesting=10000)".
var ErrCompileBudget = errors.New("module exceeds the compile budget")

// CompileBudget bounds what compiling and instantiating one untrusted module may cost, checked
// on the uploaded bytes before anything compiles them (one linear pass), for every module. Each default is far
// above what real Go, Rust, C and AssemblyScript guests use, and a module at every limit at once
// compiles in well under a second. The three work limits (MaxNestingWork, MaxBranchWork,
// MaxLocalWork) hold for every 4 MiB of code: a module of 40 MiB of code may cost the compiler
// ten times as much, no more per byte than a small one; MaxModuleBytes bounds that scaling too,
// and a module file larger than it is refused from its size, unread ([ReadModuleFile]). A zero
// field means no limit for that quantity; the zero CompileBudget as a whole means
// [DefaultCompileBudget]. It applies to trusted modules too.
type CompileBudget struct {
	MaxModuleBytes    uint64 // bytes of the module; LoadFile refuses a larger file unread (64 MiB)
	MaxFunctions      uint64 // functions, imported and defined (default 100,000)
	MaxBodyBytes      uint64 // bytes of one function body (4 MiB)
	MaxLocals         uint64 // locals of one function, parameters included (10,000)
	MaxTotalLocals    uint64 // locals over all functions (1,000,000)
	MaxNesting        uint64 // depth of nested blocks in one function (10,000)
	MaxNestingWork    uint64 // the depth at every block, plus the deepest so far at every function (64,000,000)
	MaxBranchWork     uint64 // dominator walks: for every block and branch, the blocks dominating it (16,000,000)
	MaxLocalWork      uint64 // a function's locals squared times its blocks, over all functions (500,000,000)
	MaxTypeWork       uint64 // (40 + parameters + results)² over all function types (16,000,000)
	MaxGlobals        uint64 // globals, imported and defined (10,000)
	MaxExports        uint64 // exports (10,000)
	MaxTableEntries   uint64 // entries of one table: its minimum, or its maximum if the code has table.grow (1 Mi)
	MaxDataBytes      uint64 // bytes of all data segments (64 MiB)
	MaxElementEntries uint64 // entries of all element segments (1 Mi)
	MaxSegments       uint64 // data segments, and element segments (1,000,000 each)
}

// DefaultCompileBudget returns the budget the engine applies when Config.CompileBudget is zero.
func DefaultCompileBudget() CompileBudget { return CompileBudget(budget.Default()) }

// CheckCompileBudget checks wasm against b (the zero budget meaning the default) without
// compiling it: the check every load of an untrusted module runs first. Hosts call it to refuse
// an upload before storing it. The error wraps ErrCompileBudget (a limit) or ErrInvalidModule
// (bytes too malformed to measure).
func CheckCompileBudget(wasm []byte, b CompileBudget) error {
	if b == (CompileBudget{}) {
		b = DefaultCompileBudget()
	}
	_, err := budget.Check(wasm, budget.Limits(b))
	switch {
	case err == nil:
		return nil
	case errors.Is(err, budget.ErrExceeded):
		return fmt.Errorf("%w: %w: %v", ErrInvalidModule, ErrCompileBudget, err)
	default:
		return fmt.Errorf("%w: %v", ErrInvalidModule, err)
	}
}

// ReadModuleFile reads the module file at path for a load under b (the zero budget meaning the
// default): a regular file (through symlinks: a FIFO would block the read, a device be read
// without end) of at most b.MaxModuleBytes. A larger file is refused from its size, unread, with
// the error Load gives bytes over that limit: it wraps ErrInvalidModule and ErrCompileBudget and
// names the file, its size and the limit. Hosts read the module files they load with it.
func ReadModuleFile(path string, b CompileBudget) ([]byte, error) {
	if b == (CompileBudget{}) {
		b = DefaultCompileBudget()
	}
	wasm, err := regfile.Read(path, int64(min(b.MaxModuleBytes, math.MaxInt64)))
	var tl *regfile.TooLargeError
	if errors.As(err, &tl) {
		be := &budget.Error{Limit: "MaxModuleBytes", Value: uint64(tl.Size), Max: b.MaxModuleBytes}
		return nil, fmt.Errorf("%s: %w: %w: %v", path, ErrInvalidModule, ErrCompileBudget, be)
	}
	return wasm, err
}

// checkBudget is the load path's check. It applies to trusted modules too: trust skips the
// termination guard, but a replaced module's bytes (an upgrade) come from whoever uploads them.
// It returns what the module's instances hold besides linear memory (see footprint.go). A guarded
// module's tables are capped by its instrumentation, so table.grow counts up to that cap.
func (e *Engine) checkBudget(wasm []byte, name string, trusted bool) (fixedCost, error) {
	b := e.cfg.CompileBudget
	if b == (CompileBudget{}) {
		b = DefaultCompileBudget()
	}
	var growCap uint64
	if !trusted {
		growCap = instrument.DefaultMaxTableElems
	}
	st, err := budget.CheckCapped(wasm, budget.Limits(b), growCap)
	switch {
	case err == nil:
		return fixedCost{tableBytes: st.TableEntries * tableEntryBytes, minMemory: st.MemoryMinPages * 65536}, nil
	case errors.Is(err, budget.ErrExceeded):
		return fixedCost{}, fmt.Errorf("module %q: %w: %w: %v", name, ErrInvalidModule, ErrCompileBudget, err)
	default:
		return fixedCost{}, fmt.Errorf("module %q: %w: %v", name, ErrInvalidModule, err)
	}
}
