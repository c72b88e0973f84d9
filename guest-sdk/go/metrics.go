package wasmpod

import "fmt"

// Metric kinds of the metric_define import.
const (
	kindCounter   = 0
	kindGauge     = 1
	kindHistogram = 2
)

// Counter is a monotonically increasing metric.
type Counter struct{ id int32 }

// Gauge is a metric that can go up and down.
type Gauge struct{ id int32 }

// Histogram is a metric that observes a distribution.
type Histogram struct{ id int32 }

// NewCounter defines (or finds) the counter name and returns it. Names follow Prometheus rules
// ([a-zA-Z_:][a-zA-Z0-9_:]*, at most 128 bytes). Like prometheus.MustRegister it panics if the
// host refuses the definition (bad name, name used by another kind, too many metrics): call it
// once, typically in an OnStart hook, and keep the result.
func NewCounter(name, help string) Counter { return Counter{define(kindCounter, name, help)} }

// NewGauge is NewCounter for a gauge.
func NewGauge(name, help string) Gauge { return Gauge{define(kindGauge, name, help)} }

// NewHistogram is NewCounter for a histogram.
func NewHistogram(name, help string) Histogram {
	return Histogram{define(kindHistogram, name, help)}
}

// Add adds v to the counter (the host ignores negative or non-finite values).
func (c Counter) Add(v float64) { recordMetric(c.id, v) }

// Inc adds 1 to the counter.
func (c Counter) Inc() { recordMetric(c.id, 1) }

// Set sets the gauge to v.
func (g Gauge) Set(v float64) { recordMetric(g.id, v) }

// Observe adds v to the histogram.
func (h Histogram) Observe(v float64) { recordMetric(h.id, v) }

// MetricError is the panic value of NewCounter, NewGauge and NewHistogram when the host
// refuses a definition.
type MetricError struct {
	Name string
	Code int32 // what metric_define returned: -1 bad name, -2 kind clash, -3 too many, -4 bad kind
}

func (e *MetricError) Error() string {
	why := "unknown error"
	switch e.Code {
	case -1:
		why = "invalid name"
	case -2:
		why = "name already defined with another kind"
	case -3:
		why = "too many metrics"
	case -4:
		why = "bad kind"
	}
	return fmt.Sprintf("wasmpod: metric %q: %s (%d)", e.Name, why, e.Code)
}
