package supervisor

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/wasmpod/wasmpod/internal/spans"
	"github.com/wasmpod/wasmpod/runtime"
)

// callSpan starts the span of one module call ("module.call") under ctx's span when that span
// records (an ingress request, a scatter attempt or merge, a queue task attempt, a pod-local
// caller); nil otherwise. Module calls are traced here, where the host calls a module, and not
// in the runtime's call path. Called when spans.On.
func callSpan(ctx context.Context, m *runtime.Module, role runtime.Role) (context.Context, trace.Span) {
	return spans.Child(ctx, "module.call", attribute.String("wasmpod.module", m.Name()), attribute.String("wasmpod.role", role.String()))
}

// tracedCall is m.Call(ctx, role, in, dst) in a module-call span.
func tracedCall(ctx context.Context, m *runtime.Module, role runtime.Role, in, dst []byte) ([]byte, error) {
	ctx, span := callSpan(ctx, m, role)
	out, err := m.Call(ctx, role, in, dst)
	spans.End(span, err)
	return out, err
}
