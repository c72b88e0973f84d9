package supervisor

import "github.com/wasmpod/wasmpod/runtime"

// ModuleMetrics is a scrape-time view of one module: counters include every version and restart
// the module had, so they never go back.
type ModuleMetrics struct {
	Name     string
	State    runtime.State
	Ready    bool
	Restarts int
	// Stats of the running version plus the totals of stopped ones (Instances, Busy, Target and
	// MemoryPages are the running version's).
	Stats runtime.Stats
	Guest []runtime.GuestMetric
}

// CacheStats describes the compilation cache of the pod's engine (StateDir/cache) as of the
// engine's last walk of it.
func (s *Supervisor) CacheStats() runtime.CacheStats { return s.engine.CacheStats() }

// Metrics returns every module's metrics, in start order.
func (s *Supervisor) Metrics() []ModuleMetrics {
	out := make([]ModuleMetrics, 0, len(s.units))
	for _, u := range s.units {
		st := u.status()
		mm := ModuleMetrics{Name: u.sp().Name, State: st.State, Ready: st.Ready, Restarts: st.Restarts}
		conc := int(u.sp().Resources.Concurrency)
		var live runtime.Stats
		// Under u.mu a version is either retiring (not in the totals yet) or in the totals,
		// never both; a retiring one still active when read is counted once, as the live one.
		u.mu.Lock()
		g := u.active.Load()
		if g != nil {
			live = g.stats(conc)
			if g.mod != nil {
				mm.Guest = g.mod.GuestMetrics()
			}
		}
		t := u.totals
		t.latCounts = append([]uint64(nil), t.latCounts...)
		for r := range u.retiring {
			if r != g {
				t.add(r.stats(conc))
			}
		}
		u.mu.Unlock()
		t.add(live)
		mm.Stats = live
		mm.Stats.Module = u.sp().Name
		mm.Stats.Calls, mm.Stats.Errors, mm.Stats.Traps = t.calls, t.errors, t.traps
		mm.Stats.Timeouts, mm.Stats.Overloads, mm.Stats.GuestErrors = t.timeouts, t.overloads, t.guestErrors
		mm.Stats.LogLinesDropped, mm.Stats.LogBytesDropped = t.logLinesDropped, t.logBytesDropped
		mm.Stats.Latency = runtime.Histogram{Bounds: runtime.LatencyBounds, Counts: t.latCounts, Sum: t.latSum, Count: t.latCount}
		out = append(out, mm)
	}
	return out
}
