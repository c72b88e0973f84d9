// Command benchreport turns `go test -bench` output into bench/RESULTS.md: the machine, the
// versions, every result, and the ratios of wasmpod to the baselines measured in the same run.
//
//	go test -run '^$' -bench . -benchmem ./bench/ | tee bench.out
//	go run ./bench/cmd/benchreport -in bench.out -out bench/RESULTS.md
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"time"
)

// result is one benchmark line; extra holds custom metrics (b.ReportMetric) by unit. run is
// the index of the `go test` run (output of one test binary) it came from.
type result struct {
	name          string
	nsPerOp       float64
	bytes, allocs float64
	extra         map[string]float64
	order         int
	run           int
	count         int       // samples the values are the median of (-count), after parse
	samples       []*result // the other samples of the same run, while parsing
}

var lineRE = regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+(\d+)\s+(.*)$`)

// parse reads go test -bench output. The input may join the outputs of several runs (say a
// full run and a later one of a few benchmarks): each "goos:" line that follows benchmark
// results starts a new run, header lines are listed once, and a benchmark measured in a later
// run replaces its results of an earlier one.
func parse(r io.Reader) (map[string]*result, []string, error) {
	results := map[string]*result{}
	var header []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	n, run, seen := 0, 0, false
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "goos:") && seen {
			run++
			seen = false
		}
		for _, p := range []string{"goos:", "goarch:", "cpu:", "pkg:"} {
			if strings.HasPrefix(line, p) && !contains(header, line) {
				header = append(header, line)
			}
		}
		m := lineRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		res := &result{name: m[1], extra: map[string]float64{}, order: n, run: run}
		n++
		seen = true
		fields := strings.Fields(m[3])
		for i := 0; i+1 < len(fields); i += 2 {
			v, err := strconv.ParseFloat(fields[i], 64)
			if err != nil {
				return nil, nil, fmt.Errorf("%q: %v", line, err)
			}
			switch unit := fields[i+1]; unit {
			case "ns/op":
				res.nsPerOp = v
			case "B/op":
				res.bytes = v
			case "allocs/op":
				res.allocs = v
			default:
				res.extra[unit] = v
			}
		}
		// With -count > 1 every sample of a run is kept and the report gives their median
		// (below); a later run replaces an earlier one's results.
		old, ok := results[res.name]
		switch {
		case !ok:
			results[res.name] = res
		case old.run < res.run:
			res.order = old.order
			results[res.name] = res
		default:
			old.samples = append(old.samples, res)
		}
	}
	for _, r := range results {
		r.median()
	}
	return results, header, sc.Err()
}

// median replaces r's values by the medians of its samples, field by field (a metric missing
// from some samples is the median of those that have it), and clears the samples.
func (r *result) median() {
	if len(r.samples) == 0 {
		return
	}
	all := append([]*result{r}, r.samples...)
	med := func(get func(*result) (float64, bool)) (float64, bool) {
		var v []float64
		for _, x := range all {
			if f, ok := get(x); ok {
				v = append(v, f)
			}
		}
		if len(v) == 0 {
			return 0, false
		}
		sort.Float64s(v)
		if len(v)%2 == 1 {
			return v[len(v)/2], true
		}
		return (v[len(v)/2-1] + v[len(v)/2]) / 2, true
	}
	r.nsPerOp, _ = med(func(x *result) (float64, bool) { return x.nsPerOp, true })
	r.bytes, _ = med(func(x *result) (float64, bool) { return x.bytes, true })
	r.allocs, _ = med(func(x *result) (float64, bool) { return x.allocs, true })
	extra := map[string]float64{}
	for _, x := range all {
		for u := range x.extra {
			if _, done := extra[u]; !done {
				extra[u], _ = med(func(y *result) (float64, bool) { v, ok := y.extra[u]; return v, ok })
			}
		}
	}
	r.extra, r.count, r.samples = extra, len(all), nil
}

func contains(xs []string, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}

// ratios lists the comparisons the issues set targets for: [numerator, denominator, target].
// A name may end in ":metric" to compare that custom metric (say p99-us) instead of ns/op.
var ratios = [][3]string{
	{"BenchmarkCall/noop/wasmpod", "BenchmarkCall/noop/wazero-guarded", "<= 1.0"},
	{"BenchmarkCall/leaf256/wasmpod", "BenchmarkCall/leaf256/wazero-guarded", "<= 1.0"},
	{"BenchmarkCall/noop/wasmpod", "BenchmarkCall/noop/wazero", "report"},
	// Issue 17's call targets, measured with the three sides alternating in one timed loop.
	{"BenchmarkCall/noop/alternating:guarded-ns/call", "BenchmarkCall/noop/alternating:wazero-ns/call", "<= 1.5"},
	{"BenchmarkCall/noop/alternating:trusted-ns/call", "BenchmarkCall/noop/alternating:wazero-ns/call", "<= 1.2"},
	{"BenchmarkCall/leaf256/alternating:guarded-ns/call", "BenchmarkCall/leaf256/alternating:wazero-ns/call", "<= 1.3"},
	{"BenchmarkCall/leaf256/alternating:trusted-ns/call", "BenchmarkCall/leaf256/alternating:wazero-ns/call", "report"},
	// The same over eight code layouts of the guest (BenchmarkCallLayouts): medians of each side.
	{"BenchmarkCallLayouts/noop:guarded-ns/call", "BenchmarkCallLayouts/noop:wazero-ns/call", "<= 1.5"},
	{"BenchmarkCallLayouts/noop:trusted-ns/call", "BenchmarkCallLayouts/noop:wazero-ns/call", "<= 1.2"},
	{"BenchmarkCallLayouts/leaf256:guarded-ns/call", "BenchmarkCallLayouts/leaf256:wazero-ns/call", "<= 1.3"},
	{"BenchmarkCallLayouts/leaf256:trusted-ns/call", "BenchmarkCallLayouts/leaf256:wazero-ns/call", "report"},
	{"BenchmarkCall/leaf256/wasmpod", "BenchmarkCall/leaf256/wazero", "report"},
	{"BenchmarkCall/noop/wasmpod-trusted", "BenchmarkCall/noop/wazero", "report"},
	{"BenchmarkCall/leaf256/wasmpod-trusted", "BenchmarkCall/leaf256/wazero", "report"},
	{"BenchmarkCall/leaf256/wasmpod", "BenchmarkCall/leaf256/native", "report"},
	{"BenchmarkCall/noop/extism", "BenchmarkCall/noop/wasmpod", "report"},
	{"BenchmarkCall/leaf256/extism", "BenchmarkCall/leaf256/wasmpod", "report"},
	{"BenchmarkCall/leaf256/wasmpod-extism", "BenchmarkCall/leaf256/wasmpod", "report"},
	{"BenchmarkFanout/8/wasmpod", "BenchmarkFanout/8/wazero", "<= 1.25"},
	{"BenchmarkFanout/64/wasmpod", "BenchmarkFanout/64/wazero", "<= 1.25"},
	{"BenchmarkFanout/256/wasmpod", "BenchmarkFanout/256/wazero", "<= 1.25"},
	{"BenchmarkFanout/64/wasmpod", "BenchmarkFanout/64/native", "<= 3.0"},
	{"BenchmarkFanout/256/wasmpod", "BenchmarkFanout/256/native", "<= 3.0"},
	// The floor: the same fan-out on bare wazero (no guard, no deadline) against native Go.
	{"BenchmarkFanout/64/wazero-bare", "BenchmarkFanout/64/native", "report"},
	{"BenchmarkFanout/64/wasmpod", "BenchmarkFanout/64/wazero-bare", "report"},
	// The same runtime with a C leaf (compiled code close to native): the runtime's own share.
	{"BenchmarkFanout/64/wasmpod-cleaf", "BenchmarkFanout/64/native", "report"},
	{"BenchmarkFanout/256/wasmpod-cleaf", "BenchmarkFanout/256/native", "report"},
	{"BenchmarkInstance/go/image:ns/instantiate", "BenchmarkInstance/go/noimage:ns/instantiate", "<= 0.1"},
	{"BenchmarkInstance/c/image:ns/instantiate", "BenchmarkInstance/c/noimage:ns/instantiate", "report"},
	{"BenchmarkInstance/rust/image:ns/instantiate", "BenchmarkInstance/rust/noimage:ns/instantiate", "report"},
	{"BenchmarkInstance/as/image:ns/instantiate", "BenchmarkInstance/as/noimage:ns/instantiate", "report"},
	{"BenchmarkInstance/go/image:heap-B/instance", "BenchmarkInstance/go/noimage:heap-B/instance", "report"},
	{"BenchmarkCrossNode/fasthttp", "BenchmarkCrossNode/nethttp", "<= 1.0"},
	{"BenchmarkCrossNode/mtls-vs-plain:tls-p99-us", "BenchmarkCrossNode/mtls-vs-plain:plain-p99-us", "<= 1.1"},
	{"BenchmarkCrossNode/mtls-vs-plain:tls-p50-us", "BenchmarkCrossNode/mtls-vs-plain:plain-p50-us", "report"},
	{"BenchmarkFailover/tls", "BenchmarkFailover/plain", "report"},
	{"BenchmarkScatterPeer/seq/tls", "BenchmarkScatterPeer/seq/plain", "<= 1.1"},
	{"BenchmarkScatterPeer/par/tls", "BenchmarkScatterPeer/par/plain", "report"},
	{"BenchmarkQueue/1-node", "BenchmarkQueue/command", "report"},
	// Issue 17's queue target, measured with the two taking turns: the stage alone over the
	// stage through one durable node, in tasks/s; <= 1.25 is 1-node >= 0.8x the bare stage.
	{"BenchmarkQueue/alternating-1-node:command-tasks/s", "BenchmarkQueue/alternating-1-node:1-node-tasks/s", "<= 1.25"},
	{"BenchmarkQueue/3-nodes", "BenchmarkQueue/1-node", "report"},
	{"BenchmarkQueue/3-nodes", "BenchmarkQueue/3-nodes-plain", "report"},
	// The queue's store alone (cluster/internal/queuestate, its own package: the same make
	// bench invocation, reported as another run).
	{"BenchmarkQueue/1-node", "BenchmarkStore", "report"},
	{"BenchmarkTracing/fanout-64/sampled-1pct", "BenchmarkTracing/fanout-64/off", "<= 1.05"},
	{"BenchmarkTracing/fanout-64/sampled-100pct", "BenchmarkTracing/fanout-64/off", "report"},
	{"BenchmarkTracing/fanout-64/alternating:sampled-1pct-us/op", "BenchmarkTracing/fanout-64/alternating:off-us/op", "<= 1.05"},
	{"BenchmarkTracing/ingress:off-req/s", "BenchmarkTracing/ingress:sampled-1pct-req/s", "<= 1.05"},
	{"BenchmarkTracing/ingress:sampled-1pct-p99-ms", "BenchmarkTracing/ingress:off-p99-ms", "<= 1.05"},
}

// ratioValue is the value a ratio compares: ns/op, or the metric after a ':' in name.
func ratioValue(results map[string]*result, name string) (*result, float64) {
	n, metric, ok := strings.Cut(name, ":")
	r := results[n]
	if r == nil {
		return nil, 0
	}
	if !ok {
		return r, r.nsPerOp
	}
	return r, r.extra[metric]
}

// runGroups lists, per run, the benchmark functions (names up to the first '/') that have
// results from it, sorted.
func runGroups(results map[string]*result) [][]string {
	var groups [][]string
	for _, r := range results {
		for len(groups) <= r.run {
			groups = append(groups, nil)
		}
		g, _, _ := strings.Cut(trim(r.name), "/")
		if !contains(groups[r.run], g) {
			groups[r.run] = append(groups[r.run], g)
		}
	}
	for _, g := range groups {
		sort.Strings(g)
	}
	return groups
}

func write(w io.Writer, results map[string]*result, header []string) {
	fmt.Fprintf(w, "# Benchmark results\n\nGenerated by `make bench` on %s. All numbers of one table come from one run of\none process on the same guest modules; baselines are measured beside wasmpod, not remembered.\nA benchmark run several times (-count) is reported as the median of its runs, field by field.\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"))
	if groups := runGroups(results); len(groups) > 1 {
		fmt.Fprintf(w, "This report joins the output of %d separate `go test -bench` runs; a benchmark measured in a\nlater run replaces its earlier results. Each ratio below compares two results of one run\nunless marked otherwise.\n\n", len(groups))
		for i, g := range groups {
			if len(g) > 0 {
				fmt.Fprintf(w, "- run %d: %s\n", i+1, strings.Join(g, ", "))
			}
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w, "## Machine and versions")
	fmt.Fprintln(w)
	for _, h := range header {
		fmt.Fprintf(w, "- %s\n", h)
	}
	if out, err := exec.Command("nproc").Output(); err == nil {
		fmt.Fprintf(w, "- cores: %s\n", strings.TrimSpace(string(out)))
	}
	if out, err := exec.Command("go", "version").Output(); err == nil {
		fmt.Fprintf(w, "- %s\n", strings.TrimSpace(string(out)))
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			switch d.Path {
			case "github.com/tetratelabs/wazero", "github.com/extism/go-sdk", "github.com/valyala/fasthttp":
				fmt.Fprintf(w, "- %s %s\n", d.Path, d.Version)
			}
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "## Ratios")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| wasmpod | baseline | ratio | target |")
	fmt.Fprintln(w, "|---|---|---|---|")
	for _, r := range ratios {
		a, av := ratioValue(results, r[0])
		b, bv := ratioValue(results, r[1])
		if a == nil || b == nil || bv == 0 {
			continue
		}
		ratio := av / bv
		verdict := r[2]
		if strings.HasPrefix(r[2], "<= ") {
			limit, _ := strconv.ParseFloat(strings.TrimPrefix(r[2], "<= "), 64)
			if ratio <= limit {
				verdict += " (met)"
			} else {
				verdict += " (NOT met)"
			}
		}
		if a.run != b.run {
			verdict += " (from different runs)"
		}
		fmt.Fprintf(w, "| %s | %s | %.2fx | %s |\n", trim(r[0]), trim(r[1]), ratio, verdict)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "## All results")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| benchmark | runs | ns/op | B/op | allocs/op | other |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|")
	list := make([]*result, 0, len(results))
	for _, r := range results {
		list = append(list, r)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].order < list[j].order })
	for _, r := range list {
		var extra []string
		units := make([]string, 0, len(r.extra))
		for u := range r.extra {
			units = append(units, u)
		}
		sort.Strings(units)
		for _, u := range units {
			extra = append(extra, fmt.Sprintf("%.4g %s", r.extra[u], u))
		}
		fmt.Fprintf(w, "| %s | %d | %.1f | %.0f | %.0f | %s |\n", trim(r.name), max(r.count, 1), r.nsPerOp, r.bytes, r.allocs, strings.Join(extra, ", "))
	}
}

func trim(name string) string { return strings.TrimPrefix(name, "Benchmark") }

// keptMarker starts the part of the report written by hand (measurements a `go test -bench`
// run cannot make, such as before/after comparisons of two builds); it is carried over from
// the old report to the new one.
const keptMarker = "## Measured by hand"

// keptSection returns the hand-written part of the report at path, from keptMarker to the end,
// or "".
func keptSection(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	s := string(b)
	i := strings.Index(s, "\n"+keptMarker)
	if i < 0 {
		return ""
	}
	return s[i+1:]
}

func main() {
	in := flag.String("in", "-", "go test -bench output (- for stdin)")
	out := flag.String("out", "bench/RESULTS.md", "report to write")
	flag.Parse()
	var r io.Reader = os.Stdin
	if *in != "-" {
		f, err := os.Open(*in)
		if err != nil {
			fmt.Fprintln(os.Stderr, "benchreport:", err)
			os.Exit(1)
		}
		defer f.Close()
		r = f
	}
	results, header, err := parse(r)
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchreport:", err)
		os.Exit(1)
	}
	if len(results) == 0 {
		fmt.Fprintln(os.Stderr, "benchreport: no benchmark results in the input")
		os.Exit(1)
	}
	kept := keptSection(*out)
	f, err := os.Create(*out)
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchreport:", err)
		os.Exit(1)
	}
	write(f, results, header)
	if kept != "" {
		fmt.Fprint(f, "\n"+kept)
	}
	if err := f.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "benchreport:", err)
		os.Exit(1)
	}
	fmt.Printf("benchreport: %d results -> %s\n", len(results), *out)
}
