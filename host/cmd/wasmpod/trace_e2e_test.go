package main

import (
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/wasmpod/wasmpod/internal/wasmbuild"
)

// otlpReceiver is a real OTLP/HTTP (protobuf) trace receiver: it decodes what the host
// exports and keeps every span.
type otlpReceiver struct {
	URL   string
	mu    sync.Mutex
	spans []*tracepb.Span
}

func newOTLPReceiver(t *testing.T) *otlpReceiver {
	t.Helper()
	r := &otlpReceiver{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		var ex coltrace.ExportTraceServiceRequest
		if req.URL.Path != "/v1/traces" || proto.Unmarshal(body, &ex) != nil {
			http.Error(w, "want an OTLP/HTTP protobuf export on /v1/traces", http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		for _, rs := range ex.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				r.spans = append(r.spans, ss.Spans...)
			}
		}
		r.mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	t.Cleanup(srv.Close)
	r.URL = srv.URL
	return r
}

// inTrace returns the spans of trace tid received so far.
func (r *otlpReceiver) inTrace(tid []byte) []*tracepb.Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*tracepb.Span
	for _, s := range r.spans {
		if string(s.TraceId) == string(tid) {
			out = append(out, s)
		}
	}
	return out
}

// TestQueueSubmitTraced: `wasmpod queue submit` against a real host exporting to a real OTLP
// receiver. With TRACEPARENT set, the host's "queue.submit" span is a child of it and every
// task attempt's span a child of the submit's; without, the submit's span is the trace's root
// and the task attempts still join it. A malformed TRACEPARENT is reported and ignored.
func TestQueueSubmitTraced(t *testing.T) {
	root, err := wasmbuild.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	native := wasmbuild.Go(t, filepath.Join(root, "host/testdata/stageguest"))
	recv := newOTLPReceiver(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", recv.URL)
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "100") // ms: export soon after a span ends
	h := startHost(t, writePod(t, fmt.Sprintf(`apiVersion: wasmpod.dev/v1
kind: Pod
metadata: {name: e2e-traced-queue}
spec:
  terminationGracePeriodSeconds: 10
  modules:
    - {name: up, role: stage, wasm: %s}
  pipelines:
    - {name: shout, stages: [{module: up}]}
`, native)), "")
	waitFor(t, time.Minute, "the pipeline to be defined", func() bool {
		code, body := h.adminDo("GET", "/v1/queue/pipelines", nil)
		return code == 200 && strings.Contains(body, `"shout"`)
	})
	t.Setenv("WASMPOD_TOKEN", token)
	dir := t.TempDir()
	in := filepath.Join(dir, "greeting.txt")
	if err := os.WriteFile(in, []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}

	const (
		callerTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
		callerSpan  = "00f067aa0ba902b7"
	)
	for _, c := range []struct {
		name, traceparent string
		warn              bool // the CLI reports TRACEPARENT as malformed
	}{
		{"TRACEPARENT", "00-" + callerTrace + "-" + callerSpan + "-01", false},
		{"none", "", false},
		{"malformed", "00-" + strings.ToUpper(callerTrace) + "-" + callerSpan + "-01", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv("TRACEPARENT", c.traceparent)
			out, errOut, err := runCLI(t, "queue", "submit", "--admin", h.admin, "--pipeline", "shout", "--wait", in)
			if err != nil {
				t.Fatalf("queue submit: %v\nstdout: %s\nstderr: %s", err, out, errOut)
			}
			if warned := strings.Contains(errOut, "TRACEPARENT"); warned != c.warn {
				t.Fatalf("warning about TRACEPARENT %v, want %v:\n%s", warned, c.warn, errOut)
			}
			job := strings.TrimSpace(out)
			// The submit span of this job: found by its job id attribute.
			var submit *tracepb.Span
			var tasks []*tracepb.Span
			waitFor(t, 30*time.Second, "the submit's and the task's spans at the receiver", func() bool {
				submit, tasks = nil, nil
				recv.mu.Lock()
				for _, s := range recv.spans {
					if s.Name == "queue.submit" && intAttr(s, "wasmpod.queue.job") == job {
						submit = s
					}
				}
				recv.mu.Unlock()
				if submit == nil {
					return false
				}
				for _, s := range recv.inTrace(submit.TraceId) {
					if s.Name == "queue.task" {
						tasks = append(tasks, s)
					}
				}
				return len(tasks) > 0
			})
			tid, parent := hex.EncodeToString(submit.TraceId), hex.EncodeToString(submit.ParentSpanId)
			if c.traceparent != "" && !c.warn {
				if tid != callerTrace || parent != callerSpan {
					t.Fatalf("submit span in trace %s under %s, want %s under %s", tid, parent, callerTrace, callerSpan)
				}
			} else if parent != "" || tid == callerTrace {
				t.Fatalf("submit span in trace %s under %q, want the root of a trace of its own", tid, parent)
			}
			for _, s := range tasks {
				if string(s.ParentSpanId) != string(submit.SpanId) {
					t.Fatalf("task span %s is not a child of the submit span", hex.EncodeToString(s.SpanId))
				}
				if intAttr(s, "wasmpod.queue.job") != job {
					t.Fatalf("task span of job %s, want %s", intAttr(s, "wasmpod.queue.job"), job)
				}
			}
		})
	}
}

// intAttr is span attribute key as a decimal string ("" when absent).
func intAttr(s *tracepb.Span, key string) string {
	for _, kv := range s.Attributes {
		if kv.Key == key {
			return fmt.Sprint(kv.Value.GetIntValue())
		}
	}
	return ""
}
