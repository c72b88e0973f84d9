package cluster

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/wasmpod/wasmpod/cluster/internal/queuestate"
	"github.com/wasmpod/wasmpod/internal/spans"
)

// taskSpan starts the span of one task attempt ("queue.task", a consumer span) on this
// worker node. Its parent is the job's trace context, which travelled with the task from the
// submit (queuestate.StageTask.Trace); a job submitted untraced gives each attempt a root span
// that the sampler decides on. Called when spans.On.
func (p *Workers) taskSpan(ctx context.Context, l queuestate.Lease, st *queuestate.StageTask) (context.Context, trace.Span) {
	if st.Trace != "" {
		ctx = spans.WithRemoteParent(ctx, []byte(st.Trace))
	}
	return spans.Start(ctx, "queue.task", trace.SpanKindConsumer,
		attribute.String("wasmpod.queue.pipeline", l.Pipeline),
		attribute.Int64("wasmpod.queue.job", int64(st.Job)),
		attribute.Int("wasmpod.queue.stage", st.Stage),
		attribute.String("wasmpod.queue.stage_name", st.Name),
		attribute.Int("wasmpod.queue.slot", st.Slot),
		attribute.Int64("wasmpod.queue.task", int64(l.TaskID)),
		attribute.Int("wasmpod.queue.attempt", l.Attempt),
		attribute.String("wasmpod.queue.worker", l.Worker),
	)
}
