package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestParseAndWrite(t *testing.T) {
	in := `goos: linux
cpu: Test CPU
BenchmarkCall/noop/wasmpod-2         	  500000	       200.0 ns/op	       0 B/op	       0 allocs/op
BenchmarkCall/noop/wasmpod-2         	  500000	       190.0 ns/op	       0 B/op	       0 allocs/op
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
	if got := res["BenchmarkCall/noop/wasmpod"].nsPerOp; got != 190 {
		t.Fatalf("kept %v ns/op, want the fastest run 190", got)
	}
	if got := res["BenchmarkX"].extra["req/s"]; got != 3.5 {
		t.Fatalf("custom metric %v", got)
	}
	var buf bytes.Buffer
	write(&buf, res, header)
	out := buf.String()
	for _, want := range []string{"| Call/noop/wasmpod | Call/noop/wazero-guarded | 0.19x | <= 1.0 (met) |", "| Call/noop/wasmpod | Call/noop/wazero | 3.80x | report |", "cpu: Test CPU"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}
