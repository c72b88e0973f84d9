// Command prom-adapter is the adapter of examples/adapter: it presents main's metrics, which
// main writes as statsd lines to a file on their shared volume (plugins/metrics-main), as
// Prometheus series on the host's /metrics. It defines a guest metric per statsd name
// (metric_define) and records every line (metric_record); the host exports them with the pod
// and module labels, so the series read, e.g.,
//
//	app_http_requests_total{module="adapter",pod="adapter"} 42
//
// (the module label is the adapter's: the host labels guest metrics with the module that
// defined them). Counters become counters named <prefix><name>_total, gauges gauges, timings
// (ms, h) histograms named <prefix><name>_seconds, observed in seconds.
//
// Every tick it rotates the statsd file (renames it, as plugins/log-saver does) and reads the
// rotated files older than settle, so a line main was writing during the rename is complete
// when read; a file is removed before its lines are recorded (at most once: a trap in between
// loses that file's lines rather than counting them twice). Bad lines are counted in
// <prefix>adapter_bad_lines_total and skipped.
//
// Config keys: statsd (default /metrics/main.statsd), prefix (default "app_"), settle (a Go
// duration above main's call timeout, default 10s).
package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	wasmpod "github.com/wasmpod/wasmpod/guest-sdk/go"
)

// Adapter turns statsd files into guest metrics.
type Adapter struct {
	File   string
	Prefix string
	Settle time.Duration

	counters   map[string]wasmpod.Counter
	gauges     map[string]wasmpod.Gauge
	gaugeVals  map[string]float64
	histograms map[string]wasmpod.Histogram
	bad        wasmpod.Counter
	badDefined bool
}

// NewAdapter returns an adapter with the defaults.
func NewAdapter() *Adapter {
	return &Adapter{File: "/metrics/main.statsd", Prefix: "app_", Settle: 10 * time.Second,
		counters: map[string]wasmpod.Counter{}, gauges: map[string]wasmpod.Gauge{}, gaugeVals: map[string]float64{},
		histograms: map[string]wasmpod.Histogram{}}
}

// Record applies one line to the metrics.
func (a *Adapter) Record(l Line) {
	name := PromName(a.Prefix, l)
	help := "statsd " + l.Name + ", from the main module, by prom-adapter."
	switch l.Kind {
	case KindCounter:
		c, ok := a.counters[name]
		if !ok {
			c = wasmpod.NewCounter(name, help)
			a.counters[name] = c
		}
		c.Add(l.Value)
	case KindGauge:
		g, ok := a.gauges[name]
		if !ok {
			g = wasmpod.NewGauge(name, help)
			a.gauges[name] = g
		}
		v := l.Value
		if l.Delta {
			v += a.gaugeVals[name]
		}
		a.gaugeVals[name] = v
		g.Set(v)
	case KindTiming:
		h, ok := a.histograms[name]
		if !ok {
			h = wasmpod.NewHistogram(name, help)
			a.histograms[name] = h
		}
		h.Observe(l.Value / 1000)
	}
}

func (a *Adapter) badLine() {
	if !a.badDefined {
		a.bad = wasmpod.NewCounter(a.Prefix+"adapter_bad_lines_total", "statsd lines prom-adapter could not parse.")
		a.badDefined = true
	}
	a.bad.Inc()
}

// Tick reads the settled rotated files, then rotates the current one. It returns the number of
// lines recorded.
func (a *Adapter) Tick(now time.Time) (int, error) {
	dir, base := filepath.Split(a.File)
	ents, err := os.ReadDir(filepath.Clean(dir))
	if err != nil {
		return 0, fmt.Errorf("statsd dir: %w", err)
	}
	type rot struct {
		path string
		ms   int64
	}
	var rots []rot
	for _, e := range ents {
		rest, ok := strings.CutPrefix(e.Name(), base+".")
		if !ok {
			continue
		}
		if s, ok := strings.CutSuffix(rest, ".rotated"); ok {
			if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
				rots = append(rots, rot{filepath.Join(dir, e.Name()), ms})
			}
		}
	}
	sort.Slice(rots, func(i, j int) bool { return rots[i].ms < rots[j].ms })
	n := 0
	var errs []error
	last := int64(0)
	for _, r := range rots {
		last = max(last, r.ms)
		if now.Sub(time.UnixMilli(r.ms)) < a.Settle {
			continue
		}
		b, err := os.ReadFile(r.path)
		if err == nil {
			err = os.Remove(r.path)
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, s := range strings.Split(string(b), "\n") {
			if s = strings.TrimSpace(s); s == "" {
				continue
			}
			l, err := ParseLine(s)
			if err != nil {
				a.badLine()
				continue
			}
			a.Record(l)
			n++
		}
	}
	fi, err := os.Stat(a.File)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		errs = append(errs, err)
	case fi.Size() > 0:
		ms := max(now.UnixMilli(), last+1)
		if err := os.Rename(a.File, fmt.Sprintf("%s.%d.rotated", a.File, ms)); err != nil {
			errs = append(errs, err)
		}
	}
	return n, errors.Join(errs...)
}

var adapter = NewAdapter()

func setup() error {
	if v, ok := wasmpod.Config("statsd"); ok && v != "" {
		adapter.File = v
	}
	if v, ok := wasmpod.Config("prefix"); ok {
		adapter.Prefix = v
	}
	if v, ok := wasmpod.Config("settle"); ok && v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return wasmpod.Codef(2, "config settle %q: not a duration", v)
		}
		adapter.Settle = d
	}
	return nil
}

func init() {
	wasmpod.OnStart(setup)
	wasmpod.OnTick(func(now time.Time) error {
		_, err := adapter.Tick(now)
		return err
	})
}

func main() {}
