package admin

import (
	"bytes"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/common/expfmt"
	"github.com/valyala/fasthttp"

	"github.com/wasmpod/wasmpod/host/internal/supervisor"
	"github.com/wasmpod/wasmpod/host/internal/version"
	"github.com/wasmpod/wasmpod/runtime"
)

// collector exports the supervisor's view of every module at scrape time: nothing is counted on
// the call path beyond what the runtime already counts.
type collector struct {
	sup *supervisor.Supervisor
	pod string

	calls, errs, traps, timeouts, overloads, guestErrs, restarts     *prometheus.Desc
	logLinesDropped, logBytesDropped                                 *prometheus.Desc
	latency, instances, busy, target, pages, footprint, state, ready *prometheus.Desc
	// The pod's compilation cache (runtime.CacheStats).
	cacheBytes, cacheEntries, cacheMax, cacheRemoved, cacheRemovedBytes *prometheus.Desc
}

func newCollector(sup *supervisor.Supervisor) *collector {
	l := []string{"pod", "module"}
	d := func(name, help string, extra ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, append(append([]string{}, l...), extra...), nil)
	}
	pd := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, []string{"pod"}, nil)
	}
	return &collector{
		sup:             sup,
		pod:             sup.Pod().Metadata.Name,
		calls:           d("wasmpod_module_calls_total", "Calls finished by the module, any outcome."),
		errs:            d("wasmpod_module_errors_total", "Calls that failed, any cause."),
		traps:           d("wasmpod_module_traps_total", "Calls that ended in a guest trap or exit."),
		timeouts:        d("wasmpod_module_timeouts_total", "Calls cut at their deadline."),
		overloads:       d("wasmpod_module_overloads_total", "Calls refused because every instance stayed busy."),
		guestErrs:       d("wasmpod_module_guest_errors_total", "Calls the guest failed with an error code."),
		restarts:        d("wasmpod_module_restarts_total", "Restarts of the module: every start of the restart policy after a failure, and an operator's restart once its fresh instances take over."),
		logLinesDropped: d("wasmpod_module_log_lines_dropped_total", "Log lines of the module dropped by its log rate limit (resources.logs)."),
		logBytesDropped: d("wasmpod_module_log_bytes_dropped_total", "Bytes of the log lines dropped by the module's log rate limit."),
		latency:         d("wasmpod_module_call_duration_seconds", "Duration of module calls, timed on a random sample of one call in "+strconv.Itoa(runtime.LatencySampleEvery)+" (wasmpod_module_calls_total counts every call)."),
		instances:       d("wasmpod_module_instances", "Live instances of the module."),
		busy:            d("wasmpod_module_busy_instances", "Instances in a call now."),
		target:          d("wasmpod_module_target_instances", "Warm pool size the module is kept at."),
		pages:           d("wasmpod_module_memory_pages", "64 KiB wasm memory pages of the live instances."),
		footprint:       d("wasmpod_module_footprint_bytes", "Bytes the live instances hold: linear memory, tables and an estimate of their wasm stacks."),
		state:           d("wasmpod_module_state", "1 for the module's lifecycle state, 0 for the others.", "state"),
		ready:           d("wasmpod_module_ready", "1 when the module takes traffic."),

		cacheBytes:        pd("wasmpod_compile_cache_bytes", "Bytes of the compilation cache's entries (--state-dir/cache), as of its last walk (at start, after compiles, and at a scrape when the last walk is over 10 s old)."),
		cacheEntries:      pd("wasmpod_compile_cache_entries", "Entries of the compilation cache (one per module version compiled), as of its last walk."),
		cacheMax:          pd("wasmpod_compile_cache_max_bytes", "The compilation cache's bound (--cache-max); absent when unbounded."),
		cacheRemoved:      pd("wasmpod_compile_cache_removed_total", "Files the compilation cache's walks removed: least recently used entries over the bound, and temporary files of writes that died."),
		cacheRemovedBytes: pd("wasmpod_compile_cache_removed_bytes_total", "Bytes of the files the compilation cache's walks removed."),
	}
}

// Describe sends nothing: the collector is unchecked, because guest metrics are only known at
// scrape time.
func (c *collector) Describe(chan<- *prometheus.Desc) {}

var reservedPrefixes = []string{"wasmpod_", "go_", "process_", "promhttp_"}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	type guestFamily struct {
		desc *prometheus.Desc
		kind runtime.MetricKind
	}
	guest := map[string]guestFamily{}
	if cs := c.sup.CacheStats(); !cs.LastWalk.IsZero() {
		ch <- prometheus.MustNewConstMetric(c.cacheBytes, prometheus.GaugeValue, float64(cs.Bytes), c.pod)
		ch <- prometheus.MustNewConstMetric(c.cacheEntries, prometheus.GaugeValue, float64(cs.Entries), c.pod)
		if cs.MaxBytes >= 0 {
			ch <- prometheus.MustNewConstMetric(c.cacheMax, prometheus.GaugeValue, float64(cs.MaxBytes), c.pod)
		}
		ch <- prometheus.MustNewConstMetric(c.cacheRemoved, prometheus.CounterValue, float64(cs.Removed), c.pod)
		ch <- prometheus.MustNewConstMetric(c.cacheRemovedBytes, prometheus.CounterValue, float64(cs.RemovedBytes), c.pod)
	}
	for _, m := range c.sup.Metrics() {
		lv := []string{c.pod, m.Name}
		s := m.Stats
		counter := func(d *prometheus.Desc, v uint64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), lv...)
		}
		gauge := func(d *prometheus.Desc, v float64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, lv...)
		}
		counter(c.calls, s.Calls)
		counter(c.errs, s.Errors)
		counter(c.traps, s.Traps)
		counter(c.timeouts, s.Timeouts)
		counter(c.overloads, s.Overloads)
		counter(c.guestErrs, s.GuestErrors)
		counter(c.restarts, uint64(m.Restarts))
		counter(c.logLinesDropped, s.LogLinesDropped)
		counter(c.logBytesDropped, s.LogBytesDropped)
		gauge(c.instances, float64(s.Instances))
		gauge(c.busy, float64(s.Busy))
		gauge(c.target, float64(s.Target))
		gauge(c.pages, float64(s.MemoryPages))
		gauge(c.footprint, float64(s.FootprintBytes))
		gauge(c.ready, b2f(m.Ready))
		for _, st := range runtime.States() {
			ch <- prometheus.MustNewConstMetric(c.state, prometheus.GaugeValue, b2f(st == m.State), c.pod, m.Name, st.String())
		}
		ch <- constHistogram(c.latency, s.Latency, lv)
		for _, g := range m.Guest {
			name := g.Name
			if hasReservedPrefix(name) {
				continue
			}
			if g.Kind == runtime.Counter && !strings.HasSuffix(name, "_total") {
				name += "_total"
			}
			f, ok := guest[name]
			if !ok {
				help := g.Help
				if help == "" {
					help = "Guest-defined metric " + g.Name + "."
				}
				f = guestFamily{prometheus.NewDesc(name, help, []string{"pod", "module"}, nil), g.Kind}
				guest[name] = f
			}
			if f.kind != g.Kind {
				continue // the same name with another kind in another module: the first wins
			}
			switch g.Kind {
			case runtime.Counter:
				ch <- prometheus.MustNewConstMetric(f.desc, prometheus.CounterValue, g.Value, lv...)
			case runtime.Gauge:
				ch <- prometheus.MustNewConstMetric(f.desc, prometheus.GaugeValue, g.Value, lv...)
			case runtime.HistogramKind:
				if g.Histogram != nil {
					ch <- constHistogram(f.desc, *g.Histogram, lv)
				}
			}
		}
	}
}

func hasReservedPrefix(name string) bool {
	for _, p := range reservedPrefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// constHistogram converts a runtime histogram (per-bucket counts, one extra for +Inf) to
// Prometheus' cumulative buckets.
func constHistogram(d *prometheus.Desc, h runtime.Histogram, lv []string) prometheus.Metric {
	buckets := make(map[float64]uint64, len(h.Bounds))
	var cum uint64
	for i, b := range h.Bounds {
		if i < len(h.Counts) {
			cum += h.Counts[i]
		}
		buckets[b] = cum
	}
	return prometheus.MustNewConstHistogram(d, h.Count, h.Sum, buckets, lv...)
}

type metricsHandler struct {
	reg *prometheus.Registry
}

func newMetricsHandler(sup *supervisor.Supervisor, q Queue) (*metricsHandler, error) {
	reg := prometheus.NewRegistry()
	cs := []prometheus.Collector{
		newCollector(sup),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		newBuildInfo(version.Get()),
	}
	if q != nil {
		cs = append(cs, newQueueCollector(q))
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return &metricsHandler{reg: reg}, nil
}

var textFormat = expfmt.NewFormat(expfmt.TypeTextPlain)

func (h *metricsHandler) serve(ctx *fasthttp.RequestCtx) {
	mfs, err := h.reg.Gather()
	if err != nil && len(mfs) == 0 {
		ctx.Error("gather metrics: "+err.Error(), fasthttp.StatusInternalServerError)
		return
	}
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, textFormat)
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			ctx.Error("encode metrics: "+err.Error(), fasthttp.StatusInternalServerError)
			return
		}
	}
	ctx.SetContentType(string(textFormat))
	ctx.SetBody(buf.Bytes())
}
