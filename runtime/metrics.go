package runtime

import (
	"math"
	"sort"
	"sync"
	"sync/atomic"
	"unicode/utf8"
)

// LatencyBounds are the upper bounds, in seconds, of the call latency histogram buckets.
var LatencyBounds = []float64{.00001, .000025, .00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// latencyBoundsNs is LatencyBounds in nanoseconds, for the call path.
var latencyBoundsNs = func() []int64 {
	out := make([]int64, len(LatencyBounds))
	for i, b := range LatencyBounds {
		out[i] = int64(b * 1e9)
	}
	return out
}()

// Histogram is a snapshot of a histogram: Counts[i] is the number of observations <= Bounds[i]
// (not cumulative); Counts has one extra last element for observations above every bound.
type Histogram struct {
	Bounds []float64 `json:"bounds"`
	Counts []uint64  `json:"counts"`
	Sum    float64   `json:"sum"`
	Count  uint64    `json:"count"`
}

// LatencySampleEvery is the sampling rate of the call latency histogram: one call in this many,
// chosen at random, is timed, and so is the first call after each read of Module.Stats (so a
// metrics interval with calls always has a sample, however low the rate). Reading the clock costs 30-100 ns on virtual machines that trap
// the TSC (two reads a call were most of a noop call's overhead, RATIONALE.md "Where a call's
// time goes"); the call counters (Stats.Calls, Errors, ...) stay exact.
const LatencySampleEvery = 32

// latencyHist is a lock-free histogram of call durations in nanoseconds (of the sampled calls).
type latencyHist struct {
	counts [20]atomic.Uint64 // len(LatencyBounds)+1
	sumNs  atomic.Int64
}

func (h *latencyHist) observe(ns int64) {
	i := 0
	for i < len(latencyBoundsNs) && ns > latencyBoundsNs[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sumNs.Add(ns)
}

func (h *latencyHist) snapshot() Histogram {
	out := Histogram{Bounds: LatencyBounds, Counts: make([]uint64, len(h.counts))}
	for i := range h.counts {
		c := h.counts[i].Load()
		out.Counts[i] = c
		out.Count += c
	}
	out.Sum = float64(h.sumNs.Load()) / 1e9
	return out
}

// sampler picks the calls whose latency is measured: a 64-bit linear congruential generator
// (its top bits are the random ones), owned by whoever owns its instance (no synchronisation),
// so the choice costs a multiply and an add.
type sampler uint64

// sample reports whether this call is one of the LatencySampleEvery that are timed.
func (x *sampler) sample() bool {
	v := uint64(*x)*6364136223846793005 + 1442695040888963407
	*x = sampler(v)
	return v>>58 < 64/LatencySampleEvery
}

// Stats is a point-in-time view of a module's counters.
type Stats struct {
	Module string `json:"module"`
	State  State  `json:"state"`
	// Calls counts finished calls (any outcome); Errors those that failed for any reason.
	Calls  uint64 `json:"calls"`
	Errors uint64 `json:"errors"`
	// Traps, Timeouts, Overloads and GuestErrors break Errors down by cause.
	Traps       uint64 `json:"traps"`
	Timeouts    uint64 `json:"timeouts"`
	Overloads   uint64 `json:"overloads"`
	GuestErrors uint64 `json:"guestErrors"`
	// Instantiations counts instances created; ColdStarts those created on a call's path because
	// no warm instance was free; Discards those thrown away after a trap or deadline.
	Instantiations uint64 `json:"instantiations"`
	ColdStarts     uint64 `json:"coldStarts"`
	Discards       uint64 `json:"discards"`
	// Instances alive now, of which Busy are in a call; Target is the warm pool size.
	Instances int `json:"instances"`
	Busy      int `json:"busy"`
	Target    int `json:"target"`
	// MemoryPages is the sum of the 64 KiB pages of the live instances.
	MemoryPages uint64 `json:"memoryPages"`
	// FootprintBytes is what the live instances hold: their linear memory and tables (within
	// Instances x the module's memory limit) and an estimate of their wasm stacks (footprint.go).
	FootprintBytes uint64 `json:"footprintBytes"`
	// TicksFailed counts tick calls that failed.
	TicksFailed uint64 `json:"ticksFailed"`
	// Latency is the histogram of the durations of sampled calls (one in LatencySampleEvery,
	// at random): its Count is the number of timed calls, not of all calls (that is Calls).
	Latency Histogram `json:"latency"`
	// FromImage counts the Instantiations made from the module's image (Info.Image).
	FromImage uint64 `json:"fromImage"`
	// LogLinesDropped and LogBytesDropped count the log lines, and their bytes, that the
	// module's log rate limit dropped (ModuleConfig.LogLinesPerSecond).
	LogLinesDropped uint64 `json:"logLinesDropped"`
	LogBytesDropped uint64 `json:"logBytesDropped"`
}

// MetricKind is the kind of a guest-defined metric.
type MetricKind int32

// Guest metric kinds, numbered as in the ABI's metric_define import.
const (
	Counter MetricKind = iota
	Gauge
	HistogramKind
)

func (k MetricKind) String() string {
	switch k {
	case Counter:
		return "counter"
	case Gauge:
		return "gauge"
	case HistogramKind:
		return "histogram"
	}
	return "unknown"
}

// GuestHistogramBounds are the bucket bounds of guest histograms (Prometheus' defaults).
var GuestHistogramBounds = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// GuestMetric is a snapshot of one metric a guest defined.
type GuestMetric struct {
	Name string     `json:"name"`
	Help string     `json:"help"`
	Kind MetricKind `json:"kind"`
	// Value is the counter's total or the gauge's value.
	Value float64 `json:"value"`
	// Histogram is set for histograms.
	Histogram *Histogram `json:"histogram,omitempty"`
}

const maxGuestMetrics = 256

// maxMetricHelp bounds the help text the host keeps of a guest metric; longer text is cut at a
// UTF-8 boundary. The text lives as long as the module and goes out with every scrape, so
// without a bound a guest could make the host keep its whole memory 256 times over.
const maxMetricHelp = 1024

// metricHelp copies the help text of a metric_define call, cut to maxMetricHelp bytes.
func metricHelp(b []byte) string {
	if len(b) <= maxMetricHelp {
		return string(b)
	}
	n := maxMetricHelp
	for n > 0 && !utf8.RuneStart(b[n]) {
		n--
	}
	return string(b[:n])
}

type guestMetric struct {
	name, help string
	kind       MetricKind
	bits       atomic.Uint64 // float64 bits: counter total or gauge value
	counts     []atomic.Uint64
	sumBits    atomic.Uint64
}

func (g *guestMetric) record(v float64) {
	switch g.kind {
	case Counter:
		if v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
			return
		}
		addFloat(&g.bits, v)
	case Gauge:
		g.bits.Store(math.Float64bits(v))
	case HistogramKind:
		if math.IsNaN(v) {
			return
		}
		i := sort.SearchFloat64s(GuestHistogramBounds, v)
		g.counts[i].Add(1)
		addFloat(&g.sumBits, v)
	}
}

func addFloat(a *atomic.Uint64, v float64) {
	for {
		old := a.Load()
		if a.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+v)) {
			return
		}
	}
}

// guestMetrics is a module's registry of guest-defined metrics. Reads on the call path are
// lock-free (copy-on-write slice); definitions take the lock.
type guestMetrics struct {
	mu   sync.Mutex
	list atomic.Pointer[[]*guestMetric]
}

// define returns the id of the metric, creating it if needed, or an ABI error code.
func (r *guestMetrics) define(kind MetricKind, name, help string) int32 {
	if kind < Counter || kind > HistogramKind {
		return -4
	}
	if !validMetricName(name) {
		return -1
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var cur []*guestMetric
	if p := r.list.Load(); p != nil {
		cur = *p
	}
	for i, g := range cur {
		if g.name == name {
			if g.kind != kind {
				return -2
			}
			return int32(i)
		}
	}
	if len(cur) >= maxGuestMetrics {
		return -3
	}
	g := &guestMetric{name: name, help: help, kind: kind}
	if kind == HistogramKind {
		g.counts = make([]atomic.Uint64, len(GuestHistogramBounds)+1)
	}
	next := make([]*guestMetric, len(cur), len(cur)+1)
	copy(next, cur)
	next = append(next, g)
	r.list.Store(&next)
	return int32(len(next) - 1)
}

func (r *guestMetrics) record(id int32, v float64) {
	p := r.list.Load()
	if p == nil || id < 0 || int(id) >= len(*p) {
		return
	}
	(*p)[id].record(v)
}

func (r *guestMetrics) snapshot() []GuestMetric {
	p := r.list.Load()
	if p == nil {
		return nil
	}
	out := make([]GuestMetric, 0, len(*p))
	for _, g := range *p {
		gm := GuestMetric{Name: g.name, Help: g.help, Kind: g.kind, Value: math.Float64frombits(g.bits.Load())}
		if g.kind == HistogramKind {
			h := &Histogram{Bounds: GuestHistogramBounds, Counts: make([]uint64, len(g.counts)), Sum: math.Float64frombits(g.sumBits.Load())}
			for i := range g.counts {
				h.Counts[i] = g.counts[i].Load()
				h.Count += h.Counts[i]
			}
			gm.Histogram = h
		}
		out = append(out, gm)
	}
	return out
}

func validMetricName(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '_', c == ':':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}
