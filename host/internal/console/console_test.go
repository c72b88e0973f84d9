package console

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/cluster/scatter"
	"github.com/wasmpod/wasmpod/host/internal/supervisor"
	"github.com/wasmpod/wasmpod/runtime"
)

func TestFiles(t *testing.T) {
	for _, name := range []string{"index.html", "console.js", "console.css"} {
		b, err := fs.ReadFile(Files(), name)
		if err != nil || len(b) == 0 {
			t.Fatalf("%s: %v", name, err)
		}
	}
	// Nothing is loaded from elsewhere: no absolute URLs to other hosts in the page.
	for _, name := range []string{"index.html", "console.js", "console.css"} {
		b, _ := fs.ReadFile(Files(), name)
		for _, bad := range []string{"http://", "https://", "//cdn", "<script>"} {
			if strings.Contains(strings.ReplaceAll(string(b), "http://www.w3.org/2000/svg", ""), bad) {
				t.Errorf("%s contains %q: the console must load nothing from elsewhere and run no inline script", name, bad)
			}
		}
	}
}

func TestQuantile(t *testing.T) {
	bounds := []float64{0.001, 0.01, 0.1, 1}
	for _, c := range []struct {
		name   string
		counts []uint64
		q      float64
		want   float64
	}{
		{"empty", []uint64{0, 0, 0, 0, 0}, 0.5, 0},
		{"all in the first bucket, median", []uint64{10, 0, 0, 0, 0}, 0.5, 0.0005},
		{"all in the second bucket, p99", []uint64{0, 100, 0, 0, 0}, 0.99, 0.001 + 0.009*0.99},
		{"split: median at the boundary", []uint64{50, 50, 0, 0, 0}, 0.5, 0.001},
		{"p99 in the third bucket", []uint64{90, 0, 10, 0, 0}, 0.99, 0.01 + 0.09*0.9},
		{"+Inf counts as the highest bound", []uint64{0, 0, 0, 0, 5}, 0.5, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := Quantile(runtime.Histogram{Bounds: bounds, Counts: c.counts}, c.q)
			if math.Abs(got-c.want) > 1e-12 {
				t.Fatalf("Quantile = %v, want %v", got, c.want)
			}
		})
	}
}

func TestSampler(t *testing.T) {
	bounds := []float64{0.001, 0.01}
	var calls, errs uint64
	var counts = []uint64{0, 0, 0}
	modules := []string{"a"}
	read := func() []supervisor.ModuleMetrics {
		var out []supervisor.ModuleMetrics
		for _, m := range modules {
			out = append(out, supervisor.ModuleMetrics{Name: m, Stats: runtime.Stats{Calls: calls, Errors: errs, Instances: 2,
				Latency: runtime.Histogram{Bounds: bounds, Counts: append([]uint64(nil), counts...)}}})
		}
		return out
	}
	s := NewSampler(SamplerConfig{Every: time.Second, Keep: 3}, read)
	t0 := time.Unix(1000, 0)
	s.Sample(t0) // the first sample only sets the baseline
	if got := s.Series()["a"]; len(got) != 0 {
		t.Fatalf("points after the first sample: %v", got)
	}
	for i := 1; i <= 5; i++ {
		calls += 20 // 10/s over 2s
		errs += 2   // 1/s
		counts[1] += 20
		s.Sample(t0.Add(time.Duration(2*i) * time.Second))
	}
	ps := s.Series()["a"]
	if len(ps) != 3 {
		t.Fatalf("%d points, want the last 3 (Keep)", len(ps))
	}
	for i, p := range ps {
		if want := t0.Add(time.Duration(2*(i+3)) * time.Second).UnixMilli(); p.T != want {
			t.Errorf("point %d at %d, want %d (oldest first)", i, p.T, want)
		}
		if p.Rate != 10 || p.ErrorRate != 1 || p.Instances != 2 {
			t.Errorf("point %d: %+v, want 10 calls/s, 1 error/s, 2 instances", i, p)
		}
		if p.P50 <= 0.001 || p.P50 > 0.01 || p.P99 <= p.P50 {
			t.Errorf("point %d: p50 %v p99 %v, want within the second bucket, p99 above p50", i, p.P50, p.P99)
		}
	}
	// An idle interval has no latency; a module gone from the pod loses its series.
	s.Sample(t0.Add(12 * time.Second))
	if p := s.Series()["a"][2]; p.Rate != 0 || p.P50 != 0 {
		t.Errorf("idle point %+v, want zeros", p)
	}
	modules = nil
	s.Sample(t0.Add(14 * time.Second))
	if _, ok := s.Series()["a"]; ok {
		t.Error("a removed module keeps its series")
	}
}

func TestAnswerLog(t *testing.T) {
	var l AnswerLog
	start := time.Now()
	for i := range answerKeep + 5 {
		res := scatter.Result{}
		if i%2 == 1 {
			res.Partial, res.Missing = true, []string{"s1", fmt.Sprint("x", i%3)}
		}
		l.Record(start, res, nil)
	}
	l.Record(start, scatter.Result{}, errors.New("overloaded"))
	rec := l.Recent()
	if len(rec) != answerKeep {
		t.Fatalf("%d recent answers, want %d", len(rec), answerKeep)
	}
	if rec[0].Error != "overloaded" || rec[0].Complete {
		t.Errorf("newest answer %+v, want the failed one first", rec[0])
	}
	// i = 54 (complete), then 53 (partial, missing s1 and x2).
	if rec[1].Partial || !rec[1].Complete || !rec[2].Partial || rec[2].Missing[0] != "s1" || rec[2].Missing[1] != "x2" {
		t.Errorf("answers 1 and 2: %+v, %+v; want the last complete one, then the last partial one", rec[1], rec[2])
	}
	if len(rec[1].ID) != 32 || rec[0].ID != "" {
		t.Errorf("ids %q, %q: want none for the failed request, the hex request id for an answer", rec[0].ID, rec[1].ID)
	}
	c := l.Counts()
	if c.Requests != answerKeep+6 || c.Failed != 1 || c.Partial != (answerKeep+5)/2 || c.Missing["s1"] != c.Partial {
		t.Errorf("counts %+v", c)
	}
	c.Missing["s1"] = 0
	if l.Counts().Missing["s1"] == 0 {
		t.Error("Counts shares its map with the log")
	}
}

// BenchmarkAnswerLogRecord is the cost Record adds to a scatter request.
func BenchmarkAnswerLogRecord(b *testing.B) {
	var l AnswerLog
	start := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		l.Record(start, scatter.Result{}, nil)
	}
}
