package console

import (
	"context"
	"sync"
	"time"

	"github.com/wasmpod/wasmpod/host/internal/supervisor"
	"github.com/wasmpod/wasmpod/runtime"
)

// SamplerConfig configures a Sampler. Start from DefaultSamplerConfig.
type SamplerConfig struct {
	// Every is the sampling interval.
	Every time.Duration
	// Keep is how many points each module keeps.
	Keep int
}

// DefaultSamplerConfig returns the console's defaults.
func DefaultSamplerConfig() SamplerConfig {
	return SamplerConfig{
		// 2s: fine enough to see a burst, and the page polls about as often.
		Every: 2 * time.Second,
		// 150: five minutes of history at 2s, about 40 bytes a point per module.
		Keep: 150,
	}
}

// Point is one interval of a module's traffic: calls and errors per second over the interval,
// the interval's p50 and p99 call latency (seconds, interpolated within histogram buckets; 0
// when there were no calls) and the warm and busy instances at its end.
type Point struct {
	T         int64   `json:"t"` // unix milliseconds at the end of the interval
	Rate      float64 `json:"rate"`
	ErrorRate float64 `json:"errorRate"`
	P50       float64 `json:"p50"`
	P99       float64 `json:"p99"`
	Instances int     `json:"instances"`
	Busy      int     `json:"busy"`
}

type sample struct {
	at     time.Time
	calls  uint64
	errors uint64
	lat    runtime.Histogram
}

type series struct {
	last   sample
	points []Point // ring, oldest at head once full
	head   int
}

// Sampler keeps a short history of every module's call rate, error rate and latency, read
// from the supervisor's cumulative counters. Safe for concurrent use; Run is its only
// goroutine, owned by the caller.
type Sampler struct {
	cfg  SamplerConfig
	read func() []supervisor.ModuleMetrics

	mu     sync.Mutex
	series map[string]*series
}

// NewSampler returns a sampler over read (the supervisor's Metrics); nothing runs until Run.
// Zero fields of cfg take DefaultSamplerConfig's values.
func NewSampler(cfg SamplerConfig, read func() []supervisor.ModuleMetrics) *Sampler {
	d := DefaultSamplerConfig()
	if cfg.Every <= 0 {
		cfg.Every = d.Every
	}
	if cfg.Keep <= 0 {
		cfg.Keep = d.Keep
	}
	return &Sampler{cfg: cfg, read: read, series: map[string]*series{}}
}

// Run samples every cfg.Every until ctx ends.
func (s *Sampler) Run(ctx context.Context) {
	t := time.NewTicker(s.cfg.Every)
	defer t.Stop()
	s.Sample(time.Now())
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			s.Sample(now)
		}
	}
}

// Sample takes one sample now: a point per module since its previous sample. A module whose
// counters went back (never expected: totals survive restarts) starts its series again.
func (s *Sampler) Sample(now time.Time) {
	ms := s.read()
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := make(map[string]bool, len(ms))
	for _, m := range ms {
		seen[m.Name] = true
		cur := sample{at: now, calls: m.Stats.Calls, errors: m.Stats.Errors, lat: m.Stats.Latency}
		sr, ok := s.series[m.Name]
		if !ok || cur.calls < sr.last.calls || cur.errors < sr.last.errors {
			s.series[m.Name] = &series{last: cur}
			continue
		}
		dt := now.Sub(sr.last.at).Seconds()
		if dt <= 0 {
			continue
		}
		p := Point{T: now.UnixMilli(), Instances: m.Stats.Instances, Busy: m.Stats.Busy,
			Rate: float64(cur.calls-sr.last.calls) / dt, ErrorRate: float64(cur.errors-sr.last.errors) / dt}
		delta := histDelta(cur.lat, sr.last.lat)
		p.P50, p.P99 = Quantile(delta, 0.50), Quantile(delta, 0.99)
		sr.last = cur
		if len(sr.points) < s.cfg.Keep {
			sr.points = append(sr.points, p)
		} else {
			sr.points[sr.head] = p
			sr.head = (sr.head + 1) % len(sr.points)
		}
	}
	for name := range s.series {
		if !seen[name] {
			delete(s.series, name)
		}
	}
}

// Series returns every module's points, oldest first.
func (s *Sampler) Series() map[string][]Point {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string][]Point, len(s.series))
	for name, sr := range s.series {
		ps := make([]Point, 0, len(sr.points))
		ps = append(ps, sr.points[sr.head:]...)
		ps = append(ps, sr.points[:sr.head]...)
		out[name] = ps
	}
	return out
}

// histDelta is the histogram of the calls between prev and cur (same bounds).
func histDelta(cur, prev runtime.Histogram) runtime.Histogram {
	d := runtime.Histogram{Bounds: cur.Bounds, Counts: make([]uint64, len(cur.Counts))}
	for i, c := range cur.Counts {
		if i < len(prev.Counts) && prev.Counts[i] <= c {
			c -= prev.Counts[i]
		}
		d.Counts[i] = c
		d.Count += c
	}
	return d
}

// Quantile estimates quantile q (0..1) of h by linear interpolation within the bucket it falls
// in, as Prometheus' histogram_quantile does; calls in the +Inf bucket count as the highest
// bound. 0 for an empty histogram.
func Quantile(h runtime.Histogram, q float64) float64 {
	var total uint64
	for _, c := range h.Counts {
		total += c
	}
	if total == 0 || len(h.Bounds) == 0 {
		return 0
	}
	rank := q * float64(total)
	var cum float64
	lower := 0.0
	for i, c := range h.Counts {
		if i >= len(h.Bounds) {
			return h.Bounds[len(h.Bounds)-1]
		}
		upper := h.Bounds[i]
		if cum+float64(c) >= rank && c > 0 {
			return lower + (upper-lower)*(rank-cum)/float64(c)
		}
		cum += float64(c)
		lower = upper
	}
	return h.Bounds[len(h.Bounds)-1]
}
