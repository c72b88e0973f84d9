package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseAndWrite(t *testing.T) {
	in := `goos: linux
cpu: Test CPU
BenchmarkCall/noop/wasmpod-2         	  500000	       200.0 ns/op	       0 B/op	       0 allocs/op
BenchmarkCall/noop/wasmpod-2         	  500000	       190.0 ns/op	       0 B/op	       0 allocs/op
BenchmarkCall/noop/wasmpod-2         	  500000	       900.0 ns/op	       0 B/op	       0 allocs/op
BenchmarkCall/noop/wazero-guarded-2  	  500000	      1000 ns/op	     561 B/op	       8 allocs/op
BenchmarkCall/noop/wazero-2  	  500000	      50 ns/op	     0 B/op	       0 allocs/op
BenchmarkX-2 10 5 ns/op 3.5 req/s
PASS
`
	res, header, err := parse(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 4 || len(header) != 2 {
		t.Fatalf("parsed %d results, %d header lines", len(res), len(header))
	}
	if r := res["BenchmarkCall/noop/wasmpod"]; r.nsPerOp != 200 || r.count != 3 {
		t.Fatalf("kept %v ns/op of %d runs, want the median 200 of 3", r.nsPerOp, r.count)
	}
	if got := res["BenchmarkX"].extra["req/s"]; got != 3.5 {
		t.Fatalf("custom metric %v", got)
	}
	var buf bytes.Buffer
	write(&buf, res, header)
	out := buf.String()
	for _, want := range []string{"| Call/noop/wasmpod | Call/noop/wazero-guarded | 0.20x | <= 1.0 (met) |", "| Call/noop/wasmpod | Call/noop/wazero | 4.00x | report |", "| Call/noop/wasmpod | 3 | 200.0 |", "cpu: Test CPU"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}

// Two runs joined (a full run, then a run of BenchmarkQueue only): one header, the later run's
// results replace the earlier's, ratios say when their results come from different runs.
func TestJoinedRuns(t *testing.T) {
	in := `goos: linux
goarch: amd64
pkg: github.com/wasmpod/wasmpod/bench
cpu: Test CPU
BenchmarkCall/noop/wasmpod-2   500000   190.0 ns/op   0 B/op   0 allocs/op
BenchmarkCall/noop/wazero-2    500000    50.0 ns/op   0 B/op   0 allocs/op
BenchmarkQueue/1-node-2          2000   9000000 ns/op   111.1 tasks/s   7000000 B/op   43000 allocs/op
PASS
ok  	github.com/wasmpod/wasmpod/bench	232.190s
goos: linux
goarch: amd64
pkg: github.com/wasmpod/wasmpod/bench
cpu: Test CPU
BenchmarkQueue/command-2         2000   7000000 ns/op   142.9 tasks/s   7000000 B/op   38000 allocs/op
BenchmarkQueue/bbolt-2           2000   8000000 ns/op   125.0 tasks/s   41000 B/op   368 allocs/op
BenchmarkQueue/1-node-2          2000  10000000 ns/op   100.0 tasks/s   7000000 B/op   43000 allocs/op
BenchmarkQueue/1-node-2          2000   8500000 ns/op   117.6 tasks/s   7000000 B/op   43000 allocs/op
BenchmarkQueue/3-nodes-2         2000  17000000 ns/op    58.8 tasks/s   7000000 B/op   47000 allocs/op
PASS
ok  	github.com/wasmpod/wasmpod/bench	300.000s
`
	res, header, err := parse(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 6 || len(header) != 4 {
		t.Fatalf("parsed %d results, %d header lines", len(res), len(header))
	}
	q := res["BenchmarkQueue/1-node"]
	if q.run != 1 || q.nsPerOp != 9.25e6 || q.extra["tasks/s"] != 108.8 {
		t.Fatalf("1-node: %+v, want the medians of the second run's two", q)
	}
	if res["BenchmarkCall/noop/wasmpod"].run != 0 {
		t.Fatal("call results moved to the second run")
	}
	var buf bytes.Buffer
	write(&buf, res, header)
	out := buf.String()
	for _, want := range []string{
		"joins the output of 2 separate `go test -bench` runs",
		"- run 1: Call\n- run 2: Queue\n",
		"| Queue/1-node | Queue/command | 1.32x | report |",
		"| Queue/3-nodes | Queue/1-node | 1.84x | report |",
		"| Queue/1-node | 2 | 9250000.0 | 7000000 | 43000 | 108.8 tasks/s |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	if strings.Count(out, "cpu: Test CPU") != 1 {
		t.Errorf("header repeated:\n%s", out)
	}
	// A ratio of results from different runs is marked (made up: the Queue ones are all of one).
	res["BenchmarkQueue/command"].run = 0
	buf.Reset()
	write(&buf, res, header)
	if want := "| Queue/1-node | Queue/command | 1.32x | report (from different runs) |"; !strings.Contains(buf.String(), want) {
		t.Errorf("report lacks %q:\n%s", want, buf.String())
	}
}

func TestKeptSection(t *testing.T) {
	p := filepath.Join(t.TempDir(), "RESULTS.md")
	if got := keptSection(p); got != "" {
		t.Fatalf("no file: %q", got)
	}
	os.WriteFile(p, []byte("# Benchmark results\n\n## All results\n\n| x |\n\n"+keptMarker+"\n\nby hand\n"), 0o644)
	if got, want := keptSection(p), keptMarker+"\n\nby hand\n"; got != want {
		t.Fatalf("kept %q, want %q", got, want)
	}
}
