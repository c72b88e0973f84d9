package spans

import (
	"context"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/trace"
)

func TestParseTraceparent(t *testing.T) {
	const good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	tests := []struct {
		name    string
		in      string
		ok      bool
		sampled bool
	}{
		{"sampled", good, true, true},
		{"not sampled", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", true, false},
		{"unknown flags kept to sampled bit", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03", true, true},
		{"later version with more fields", "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-ever", true, true},
		{"later version exact", "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", true, true},
		{"version 00 with trailing data", good + "-x", false, false},
		{"version ff", "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", false, false},
		{"upper case", "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", false, false},
		{"zero trace id", "00-00000000000000000000000000000000-00f067aa0ba902b7-01", false, false},
		{"zero span id", "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", false, false},
		{"short", good[:54], false, false},
		{"bad separator", strings.Replace(good, "-", "_", 1), false, false},
		{"non hex", "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01", false, false},
		{"later version without dash", "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x", false, false},
		{"empty", "", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sc, ok := ParseTraceparent([]byte(tt.in))
			if ok != tt.ok {
				t.Fatalf("ok = %v, want %v", ok, tt.ok)
			}
			if !ok {
				return
			}
			if sc.IsSampled() != tt.sampled || !sc.IsRemote() {
				t.Fatalf("sampled %v remote %v, want sampled %v and remote", sc.IsSampled(), sc.IsRemote(), tt.sampled)
			}
			if got := string(AppendTraceparent(nil, sc)); got[3:52] != tt.in[3:52] {
				t.Fatalf("round trip %q, want ids of %q", got, tt.in)
			}
		})
	}
}

func TestTraceparentOfContext(t *testing.T) {
	if got := Traceparent(context.Background()); got != "" {
		t.Fatalf("no span: %q, want empty", got)
	}
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	ctx := WithRemoteParent(context.Background(), []byte(tp))
	if got := Traceparent(ctx); got != tp {
		t.Fatalf("Traceparent = %q, want %q", got, tp)
	}
	if got := WithRemoteParent(context.Background(), []byte("garbage")); trace.SpanContextFromContext(got).IsValid() {
		t.Fatal("a malformed header gave a parent")
	}
}

// FuzzParseTraceparent: the header comes from clients and peers. Whatever it is, parsing must
// not panic, and what it accepts must print back to the same ids and sampled flag.
func FuzzParseTraceparent(f *testing.F) {
	f.Add([]byte("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"))
	f.Add([]byte("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x"))
	f.Add([]byte("ff-"))
	f.Fuzz(func(t *testing.T, b []byte) {
		sc, ok := ParseTraceparent(b)
		if !ok {
			return
		}
		out := AppendTraceparent(nil, sc)
		back, ok := ParseTraceparent(out)
		if !ok || back.TraceID() != sc.TraceID() || back.SpanID() != sc.SpanID() || back.IsSampled() != sc.IsSampled() {
			t.Fatalf("%q -> %q does not round-trip", b, out)
		}
		if string(out[3:52]) != string(b[3:52]) {
			t.Fatalf("%q printed back as %q", b, out)
		}
	})
}
