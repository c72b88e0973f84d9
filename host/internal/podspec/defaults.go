package podspec

import "time"

// Defaults. Each says why it is what it is.
const (
	// DefaultRestartPolicy is Always: a pod is a long-running service, and like a Kubernetes pod it
	// should come back whatever made a module stop.
	DefaultRestartPolicy = RestartAlways
	// DefaultTerminationGracePeriodSeconds is Kubernetes' 30s: long enough to drain in-flight
	// calls (default deadline 5s) and snapshot state, short enough that a stop feels prompt.
	DefaultTerminationGracePeriodSeconds = 30
	// DefaultRole is main: a pod of one module needs no role line.
	DefaultRole = RoleMain
	// DefaultABI is native: one wasm call per request, no host-side allocation (guest-sdk/ABI.md).
	DefaultABI = ABINative
	// DefaultMemory is 64Mi: room for a Go guest's runtime plus a modest heap; a module that needs
	// more says so, and a runaway one is stopped early.
	DefaultMemory = 64 * Mi
	// DefaultTimeout is 5s, the ABI's default call deadline: longer than any interactive request
	// should take, short enough that a stuck guest frees its instance soon.
	DefaultTimeout = Duration(5 * time.Second)
	// DefaultConcurrency is 4: a few calls may overlap so one slow call does not queue the rest,
	// while the module's memory stays bounded at 4 x memory.
	DefaultConcurrency = 4
	// DefaultMinInstances is 1: the first call never waits for an instantiation (milliseconds for
	// a Go guest), and probes and ticks always have an instance to run on.
	DefaultMinInstances = 1
	// DefaultVars is 1Mi, Extism's own default: plugins that keep a counter or a small cache in
	// vars run unchanged, and a plugin cannot grow its vars past a small share of its memory.
	DefaultVars = 1 * Mi

	// DefaultScatterPath is "/": a scatter pod answers at its ingress root; the match is exact,
	// so a main module keeps every other path.
	DefaultScatterPath = "/"
	// DefaultScatterReplicas is 2: one copy to fail over or hedge to, without hedges fanning out
	// to every node that holds the shard.
	DefaultScatterReplicas = 2
	// DefaultScatterDeadline is 200ms: an interactive request; a shard that needs more is better
	// reported missing than waited for (The Tail at Scale).
	DefaultScatterDeadline = Duration(200 * time.Millisecond)
	// DefaultScatterMergeReserve is 10ms: a merge is one warm wasm call over small parts (tens of
	// microseconds); the rest is slack for a loaded machine.
	DefaultScatterMergeReserve = Duration(10 * time.Millisecond)
	// DefaultHedgeMin is 1ms: a LAN round trip plus a small leaf is ~0.1-0.5ms; hedging sooner
	// duplicates work that was about to finish.
	DefaultHedgeMin = Duration(time.Millisecond)
	// DefaultHedgeInitial is 5ms: until a shard has a latency percentile, hedge like a
	// slow-but-healthy LAN call.
	DefaultHedgeInitial = Duration(5 * time.Millisecond)
	// DefaultHedgePercentile is 95 (Dean and Barroso's choice): it hedges about 5% of calls, a
	// bounded extra load.
	DefaultHedgePercentile = 95
)

// DefaultRestartBackoff returns Kubernetes' CrashLoopBackOff schedule.
func DefaultRestartBackoff() Backoff {
	return Backoff{
		// 10s: a module that fails at once is not restarted in a hot loop, yet a transient
		// failure costs only seconds.
		Initial: Duration(10 * time.Second),
		// 5m: a module that keeps failing is still retried a dozen times an hour, without
		// burning CPU on compile and start.
		Max: Duration(5 * time.Minute),
		// 10m: a module that ran that long was healthy; its next failure is treated as a first.
		ResetAfter: Duration(10 * time.Minute),
	}
}

// DefaultResources returns the resources of a module that states none.
func DefaultResources() Resources {
	return Resources{
		Memory:       DefaultMemory,
		Timeout:      DefaultTimeout,
		Concurrency:  DefaultConcurrency,
		MinInstances: DefaultMinInstances,
	}
}

// DefaultProbe returns Kubernetes' probe defaults.
func DefaultProbe() Probe {
	return Probe{
		// 0: the module has already run wasmpod_start when it is running; no extra wait needed.
		InitialDelaySeconds: 0,
		// 10s: a health call is cheap, but probing more often only adds noise to busy instances.
		PeriodSeconds: 10,
		// 1s: wasmpod_health should answer from memory; a slow answer is itself a bad sign.
		TimeoutSeconds: 1,
		// 1: one good answer is enough to trust a module again.
		SuccessThreshold: 1,
		// 3: one slow probe on a busy node must not restart a healthy module.
		FailureThreshold: 3,
	}
}

// ApplyDefaults fills every unset field with its default, following the Kubernetes convention
// that a zero number or empty string means "unset". Parse and Load call it; call it yourself on a
// Pod built in Go before Validate. It is idempotent, and leaves invalid (e.g. negative) values
// alone for Validate to report.
func (p *Pod) ApplyDefaults() {
	s := &p.Spec
	if s.RestartPolicy == "" {
		s.RestartPolicy = DefaultRestartPolicy
	}
	if s.TerminationGracePeriodSeconds == nil {
		v := int64(DefaultTerminationGracePeriodSeconds)
		s.TerminationGracePeriodSeconds = &v
	}
	db := DefaultRestartBackoff()
	setDuration(&s.RestartBackoff.Initial, db.Initial)
	setDuration(&s.RestartBackoff.Max, db.Max)
	setDuration(&s.RestartBackoff.ResetAfter, db.ResetAfter)
	for i := range s.Modules {
		s.Modules[i].applyDefaults()
	}
	if sc := s.Scatter; sc != nil {
		if sc.Path == "" {
			sc.Path = DefaultScatterPath
		}
		if sc.Merge == "" {
			for i := range s.Modules {
				if s.Modules[i].Role == RoleMerge {
					sc.Merge = s.Modules[i].Name
					break
				}
			}
		}
		setInt(&sc.Replicas, DefaultScatterReplicas)
		setDuration(&sc.Deadline, DefaultScatterDeadline)
		setDuration(&sc.MergeReserve, DefaultScatterMergeReserve)
		setDuration(&sc.Hedge.Min, DefaultHedgeMin)
		setDuration(&sc.Hedge.Initial, DefaultHedgeInitial)
		setInt(&sc.Hedge.Percentile, DefaultHedgePercentile)
	}
}

func (m *Module) applyDefaults() {
	if m.Role == "" {
		m.Role = DefaultRole
	}
	if m.ABI == "" {
		m.ABI = DefaultABI
	}
	r, dr := &m.Resources, DefaultResources()
	if r.Memory == 0 {
		r.Memory = dr.Memory
	}
	setDuration(&r.Timeout, dr.Timeout)
	setInt(&r.Concurrency, dr.Concurrency)
	setInt(&r.MinInstances, dr.MinInstances)
	if m.ABI == ABIExtism && r.Vars == 0 {
		r.Vars = DefaultVars
	}
	for _, pr := range []*Probe{m.LivenessProbe, m.ReadinessProbe, m.StartupProbe} {
		if pr != nil {
			pr.applyDefaults()
		}
	}
	if m.AllowScale != nil {
		// Only valid values are copied, so an invalid one is reported once, where it was written.
		if r.MinInstances > 0 {
			setInt(&m.AllowScale.Min, r.MinInstances)
		}
		if r.Concurrency > 0 {
			setInt(&m.AllowScale.Max, r.Concurrency)
		}
	}
}

func (p *Probe) applyDefaults() {
	d := DefaultProbe()
	setInt(&p.PeriodSeconds, d.PeriodSeconds)
	setInt(&p.TimeoutSeconds, d.TimeoutSeconds)
	setInt(&p.SuccessThreshold, d.SuccessThreshold)
	setInt(&p.FailureThreshold, d.FailureThreshold)
}

func setDuration(d *Duration, def Duration) {
	if *d == 0 {
		*d = def
	}
}

func setInt(v *int32, def int32) {
	if *v == 0 {
		*v = def
	}
}
