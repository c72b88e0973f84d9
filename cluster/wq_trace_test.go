package cluster

import (
	"context"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/wasmpod/wasmpod/cluster/queue"
	"github.com/wasmpod/wasmpod/internal/spans"
)

// spanRunner records the span context each delivery ran under.
type spanRunner struct {
	funcRunner
	mu  sync.Mutex
	scs []trace.SpanContext
}

func (r *spanRunner) RunStage(ctx context.Context, inputs []StageInput, outputName, outDir string) (string, error) {
	r.mu.Lock()
	r.scs = append(r.scs, trace.SpanContextFromContext(ctx))
	r.mu.Unlock()
	return r.funcRunner.RunStage(ctx, inputs, outputName, outDir)
}

// TestTaskAttemptSpans: the trace context of a traced submit travels with the job's tasks
// (through the replicated log and the lease), and every task attempt, of every stage, is a
// "queue.task" span in the job's trace, a child of the submitter's span; the stage runs under
// the attempt's span, so a module call there is its child. A failed attempt's span has the
// error status; the retry is a span of its own.
func TestTaskAttemptSpans(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	defer spans.Install(sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp)))()

	c := testConfig("solo")
	c.Queue.Backoff = 10 * time.Millisecond
	n := startNode(t, c)
	ctx := t.Context()
	p := queue.Pipeline{Name: "up", MaxAttempts: 3, Stages: []queue.StageDef{{Name: "upper"}, {Name: "join", Merge: true}}}
	eventually(t, "define", func() error { return n.Queue().DefinePipeline(ctx, p) })
	failed := false
	up := &spanRunner{funcRunner: funcRunner{apply: func(in map[string][]byte) ([]byte, error) {
		if !failed { // the first attempt of the first task fails once
			failed = true
			return nil, context.DeadlineExceeded
		}
		return upper(in)
	}}}
	join := &spanRunner{funcRunner: funcRunner{apply: concat}}
	for i, r := range []StageRunner{up, join} {
		if _, err := n.Queue().StartWorkers(WorkerConfig{Pipeline: "up", Stage: i, Concurrency: 1, Timeout: 10 * time.Second, Runner: r}); err != nil {
			t.Fatal(err)
		}
	}
	files := putFiles(t, n, map[string]string{"a": "alpha", "b": "beta"})
	sctx, submit := spans.Start(ctx, "submit", trace.SpanKindClient)
	id, err := n.Queue().Submit(sctx, "up", files, "")
	submit.End()
	if err != nil {
		t.Fatal(err)
	}
	if j := waitJob(t, n, id); j.State != queue.JobDone {
		t.Fatalf("job %v", j.State)
	}
	tid := submit.SpanContext().TraceID()
	deadline := time.Now().Add(10 * time.Second)
	var tasks []sdktrace.ReadOnlySpan
	for time.Now().Before(deadline) { // the last attempt's span ends just after its commit
		tasks = tasks[:0]
		for _, s := range exp.GetSpans().Snapshots() {
			if s.Name() == "queue.task" {
				tasks = append(tasks, s)
			}
		}
		if len(tasks) >= 4 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	// 2 upper tasks (one of them twice) + 1 join.
	if len(tasks) != 4 {
		t.Fatalf("%d task attempt spans, want 4", len(tasks))
	}
	var errored int
	for _, s := range tasks {
		if s.SpanContext().TraceID() != tid || s.Parent().SpanID() != submit.SpanContext().SpanID() {
			t.Fatalf("attempt span %v is not a child of the submit span", s.Attributes())
		}
		if s.Status().Code.String() == "Error" {
			errored++
		}
	}
	if errored != 1 {
		t.Fatalf("%d attempt spans with an error status, want 1", errored)
	}
	for _, r := range []*spanRunner{up, join} {
		for _, sc := range r.scs {
			found := false
			for _, s := range tasks {
				found = found || s.SpanContext().SpanID() == sc.SpanID()
			}
			if !found {
				t.Fatalf("a stage ran under span %v, not under its attempt's span", sc.SpanID())
			}
		}
	}
}
