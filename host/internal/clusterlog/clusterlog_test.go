package clusterlog

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestWriter(t *testing.T) {
	for _, tc := range []struct {
		name   string
		writes []string
		want   []string // "LEVEL line", in order
	}{
		{"debug by default", []string{"2026/12/02 [DEBUG] memberlist: stream connection\n"}, []string{"DEBUG 2026/12/02 [DEBUG] memberlist: stream connection"}},
		{"warnings and errors at warn", []string{"[WARN] raft: heartbeat timeout\n[ERR] memberlist: failed\n", "x [error] y\n"},
			[]string{"WARN [WARN] raft: heartbeat timeout", "WARN [ERR] memberlist: failed", "WARN x [error] y"}},
		{"a line split over writes", []string{"[INFO] raft: ", "entering follower state\n", "tail without newline"}, []string{"DEBUG [INFO] raft: entering follower state"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			w := New(slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug, ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
				if a.Key == slog.TimeKey {
					return slog.Attr{}
				}
				return a
			}})))
			for _, s := range tc.writes {
				if n, err := w.Write([]byte(s)); n != len(s) || err != nil {
					t.Fatalf("Write = %d, %v", n, err)
				}
			}
			var got []string
			for l := range strings.Lines(out.String()) {
				lv, _, _ := strings.Cut(strings.TrimPrefix(l, "level="), " ")
				_, line, _ := strings.Cut(l, "line=")
				got = append(got, lv+" "+strings.Trim(strings.TrimSpace(line), `"`))
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("logged\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}
