package runtime

import "fmt"

// An instance holds more than its linear memory: its tables (8 bytes an entry in wazero, the
// whole declared size allocated at instantiation) and its wasm stack. Tables count against the
// module's memory limit (ModuleConfig.MaxMemoryPages, a pod's resources.memory): they are taken
// off what linear memory may grow to, and a module whose tables and minimum memory do not fit
// is refused at load, so MaxConcurrency instances never hold more memory and tables than
// MaxConcurrency times the limit. The wasm stack is bounded by the instrumentation's stack
// budget rather than by the limit (a worst-case reserve would leave small modules no memory);
// Stats.FootprintBytes counts it at an estimate, stackReserve.

// tableEntryBytes is what one table entry costs (wazero keeps a table as a []uintptr).
const tableEntryBytes = 8

// stackReserve is the wasm stack an instance is counted to hold in its footprint: wazero starts
// a call's stack at 10 KiB and doubles it as the guest goes deeper; real guests stay well below
// this. A deeper recursion is bounded by the instrumentation's stack budget.
const stackReserve = 256 << 10

// fixedCost is what every instance of a module holds besides its linear memory, measured from
// the module's bytes at load.
type fixedCost struct {
	tableBytes uint64 // declared table sizes (their maximum when the code can grow them) x 8
	minMemory  uint64 // declared minimum of linear memory, bytes
}

// footprint is what an instance holds besides linear memory, as Stats.FootprintBytes counts it.
func (f fixedCost) footprint() uint64 { return f.tableBytes + stackReserve }

// checkFits refuses a module whose tables and minimum memory do not fit its memory limit. A
// minimum memory over the limit on its own is left to the ABI check, which names pages.
func (f fixedCost) checkFits(cfg ModuleConfig) error {
	limit := uint64(cfg.MaxMemoryPages) * 65536
	if f.minMemory > limit {
		return nil
	}
	if need := f.tableBytes + f.minMemory; need > limit {
		return fmt.Errorf("%w: module %q: an instance needs %s (%s of tables, %s of minimum memory), over its memory limit of %s",
			ErrMemoryLimit, cfg.Name, mib(need), mib(f.tableBytes), mib(f.minMemory), mib(limit))
	}
	return nil
}

// memoryLimit is how far an instance's linear memory may grow: the module's limit less its
// tables, in whole pages.
func (m *Module) memoryLimit() uint64 {
	limit := uint64(m.cfg.MaxMemoryPages) * 65536
	t := m.cfg.fixed.tableBytes
	if t >= limit {
		return 0
	}
	return (limit - t) &^ 0xFFFF
}

func mib(n uint64) string {
	if n < 1<<20 {
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}
