package main

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestParseLine(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Line
		err  bool
	}{
		{in: "hits:1|c", want: Line{Name: "hits", Value: 1, Kind: KindCounter}},
		{in: "hits:1|c|@0.5|#a:b", want: Line{Name: "hits", Value: 2, Kind: KindCounter}},
		{in: "temp:-3|g", want: Line{Name: "temp", Value: -3, Kind: KindGauge, Delta: true}},
		{in: "temp:7.5|g", want: Line{Name: "temp", Value: 7.5, Kind: KindGauge}},
		{in: "lat:12|ms", want: Line{Name: "lat", Value: 12, Kind: KindTiming}},
		{in: "nocolon", err: true},
		{in: "x:1", err: true},
		{in: "x:1|q", err: true},
		{in: "x:NaN|c", err: true},
		{in: "x:1|c|@0", err: true},
		{in: "x:1|c|junk", err: true},
	} {
		got, err := ParseLine(tc.in)
		if (err != nil) != tc.err || (!tc.err && got != tc.want) {
			t.Errorf("ParseLine(%q) = %+v, %v", tc.in, got, err)
		}
		if err != nil && !errors.Is(err, ErrLine) {
			t.Errorf("%q: %v does not wrap ErrLine", tc.in, err)
		}
	}
	for in, want := range map[Line]string{
		{Name: "http.requests", Kind: KindCounter}: "app_http_requests_total",
		{Name: "lat", Kind: KindTiming}:            "app_lat_seconds",
		{Name: "q-len", Kind: KindGauge}:           "app_q_len",
	} {
		if got := PromName("app_", in); got != want {
			t.Errorf("PromName(%+v) = %q, want %q", in, got, want)
		}
	}
	if got := PromName("", Line{Name: "9x", Kind: KindGauge}); got != "_9x" {
		t.Errorf("leading digit: %q", got)
	}
}

func TestTick(t *testing.T) {
	dir := t.TempDir()
	a := NewAdapter()
	a.File = filepath.Join(dir, "main.statsd")
	a.Settle = 5 * time.Second
	os.WriteFile(a.File, []byte("r:1|c\nr:1|c\ng:4|g\ng:+1|g\nbad line\nt:250|ms\n"), 0o644)
	now := time.UnixMilli(1_700_000_000_000)
	if n, err := a.Tick(now); n != 0 || err != nil {
		t.Fatalf("first tick (rotate only): %d, %v", n, err)
	}
	if n, _ := a.Tick(now.Add(time.Second)); n != 0 {
		t.Fatal("read a rotated file before it settled")
	}
	n, err := a.Tick(now.Add(6 * time.Second))
	if n != 5 || err != nil {
		t.Fatalf("settled tick: %d lines, %v", n, err)
	}
	if a.gaugeVals["app_g"] != 5 {
		t.Fatalf("gauge %v", a.gaugeVals["app_g"])
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*")); len(left) != 0 {
		t.Fatalf("left: %v", left)
	}
}

// FuzzParseLine checks the statsd parser on arbitrary lines from main.
func FuzzParseLine(f *testing.F) {
	for _, s := range []string{"a:1|c", "a:1|c|@0.1|#t", "b:-2|g", "c:3|ms", "::|", "a:1e400|g"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l, err := ParseLine(s)
		if err != nil {
			return
		}
		n := PromName("app_", l)
		for i, r := range n {
			ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '_' || r == ':' || i > 0 && r >= '0' && r <= '9'
			if !ok {
				t.Fatalf("PromName(%q) = %q: not a Prometheus name", s, n)
			}
		}
	})
}
