package main

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Kind is a statsd metric type.
type Kind byte

// Kinds.
const (
	KindCounter Kind = 'c'
	KindGauge   Kind = 'g'
	KindTiming  Kind = 't' // "ms" and "h"
)

// Line is one parsed statsd line.
type Line struct {
	Name  string
	Value float64
	Kind  Kind
	// Delta is set for a gauge written "+n" or "-n": a change, not a new value.
	Delta bool
}

// ErrLine is wrapped by every parse failure.
var ErrLine = errors.New("bad statsd line")

// ParseLine parses "name:value|type[|@rate][|#tags]". Counters are scaled by 1/rate; tags are
// accepted and dropped (the series carry the module's labels instead).
func ParseLine(s string) (Line, error) {
	name, rest, ok := strings.Cut(s, ":")
	if !ok || name == "" || len(name) > 100 {
		return Line{}, fmt.Errorf("%w: %.60q: want name:value|type", ErrLine, s)
	}
	fields := strings.Split(rest, "|")
	if len(fields) < 2 {
		return Line{}, fmt.Errorf("%w: %.60q: no type", ErrLine, s)
	}
	l := Line{Name: name}
	vs := fields[0]
	switch fields[1] {
	case "c":
		l.Kind = KindCounter
	case "g":
		l.Kind = KindGauge
		l.Delta = strings.HasPrefix(vs, "+") || strings.HasPrefix(vs, "-")
	case "ms", "h":
		l.Kind = KindTiming
	default:
		return Line{}, fmt.Errorf("%w: %.60q: type %q (want c, g, ms or h)", ErrLine, s, fields[1])
	}
	v, err := strconv.ParseFloat(vs, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return Line{}, fmt.Errorf("%w: %.60q: value %q", ErrLine, s, vs)
	}
	l.Value = v
	for _, f := range fields[2:] {
		if r, ok := strings.CutPrefix(f, "@"); ok {
			rate, err := strconv.ParseFloat(r, 64)
			if err != nil || !(rate > 0 && rate <= 1) {
				return Line{}, fmt.Errorf("%w: %.60q: sample rate %q", ErrLine, s, r)
			}
			if l.Kind == KindCounter {
				l.Value /= rate
			}
		} else if !strings.HasPrefix(f, "#") {
			return Line{}, fmt.Errorf("%w: %.60q: field %q", ErrLine, s, f)
		}
	}
	return l, nil
}

// PromName maps a statsd name to a Prometheus metric name: prefix + the name with every
// character outside [a-zA-Z0-9_:] replaced by '_', plus "_total" for counters and "_seconds"
// for timings (observed in seconds).
func PromName(prefix string, l Line) string {
	var b strings.Builder
	b.WriteString(prefix)
	for _, r := range l.Name {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == ':' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	name := b.String()
	if name == "" || name[0] >= '0' && name[0] <= '9' {
		name = "_" + name
	}
	switch l.Kind {
	case KindCounter:
		if !strings.HasSuffix(name, "_total") {
			name += "_total"
		}
	case KindTiming:
		name += "_seconds"
	}
	return name
}
