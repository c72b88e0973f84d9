package podspec

import (
	"strings"
	"testing"
)

// TestLogLimits: resources.logs is optional, its zero fields take the runtime's defaults, and
// a bad value is reported on its own field's line with what to write instead.
func TestLogLimits(t *testing.T) {
	tests := []struct {
		name string
		logs string // the resources.logs line, at line 10
		want string // "" for valid
		get  LogLimits
	}{
		{"absent", "", "", LogLimits{}},
		{"empty block", "        logs: {}\n", "", LogLimits{}},
		{"every field", "        logs: {linesPerSecond: 100, burst: 500, bytesPerSecond: 64Ki, burstBytes: 1Mi}\n", "", LogLimits{LinesPerSecond: 100, Burst: 500, BytesPerSecond: 64 * Ki, BurstBytes: Mi}},
		{"burstBytes of a line", "        logs: {burstBytes: 8Ki}\n", "", LogLimits{BurstBytes: 8 * Ki}},
		{"unlimited", "        logs: {unlimited: true}\n", "", LogLimits{Unlimited: true}},
		{"negative lines", "        logs: {linesPerSecond: -1}\n",
			"line 10: spec.modules[0].resources.logs.linesPerSecond: must not be negative, got -1 (0 takes the default, 1000; unlimited: true turns the limit off)", LogLimits{}},
		{"negative burst", "        logs: {burst: -5}\n",
			"line 10: spec.modules[0].resources.logs.burst: must not be negative, got -5", LogLimits{}},
		{"burstBytes below a line", "        logs: {burstBytes: 4Ki}\n",
			"line 10: spec.modules[0].resources.logs.burstBytes: burstBytes 4Ki is less than 8Ki, the longest log line", LogLimits{}},
		{"negative bytes", "        logs: {bytesPerSecond: -1}\n",
			"line 10: spec.modules[0].resources.logs.bytesPerSecond: invalid quantity -1: must not be negative", LogLimits{}},
		{"unlimited with a rate", "        logs: {unlimited: true, linesPerSecond: 10}\n",
			"line 10: spec.modules[0].resources.logs.unlimited: unlimited turns the log limit off; remove linesPerSecond", LogLimits{}},
		{"typo", "        logs: {linesPerSec: 10}\n",
			`line 10: spec.modules[0].resources.logs.linesPerSec: unknown field "linesPerSec"; did you mean "linesPerSecond"?`, LogLimits{}},
		{"not a mapping", "        logs: 1000\n",
			"line 10: spec.modules[0].resources.logs: expected a mapping", LogLimits{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := withModule + "      resources:\n" + tt.logs
			if tt.logs == "" {
				src = withModule
			}
			p, err := Parse([]byte(src), "")
			if tt.want != "" {
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("got %v\nwant an error containing %q", err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			l := p.Spec.Modules[0].Resources.Logs
			if tt.logs == "" {
				if l != nil {
					t.Fatalf("logs %+v, want none", *l)
				}
				return
			}
			if l == nil || *l != tt.get {
				t.Fatalf("logs %+v, want %+v", l, tt.get)
			}
			// Marshal and Parse give the same limits back.
			b, err := p.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			q, err := Parse(b, "")
			if err != nil {
				t.Fatalf("%v\n%s", err, b)
			}
			if l2 := q.Spec.Modules[0].Resources.Logs; l2 == nil || *l2 != tt.get {
				t.Fatalf("after Marshal: %+v, want %+v", l2, tt.get)
			}
		})
	}
}
