// Package tracing sets up OpenTelemetry tracing for a wasmpod process from the standard OTEL_*
// environment variables: an OTLP/HTTP (protobuf) exporter behind a batch span processor, the
// sampler of OTEL_TRACES_SAMPLER, and a resource naming the service and this node. It installs
// the provider in internal/spans, whose span sites are otherwise off and free.
//
// Tracing is on only when an OTLP endpoint is configured (OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) and neither OTEL_SDK_DISABLED=true nor
// OTEL_TRACES_EXPORTER=none says otherwise. docs/tracing.md is the operator's page.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/wasmpod/wasmpod/internal/spans"
)

// ErrConfig is wrapped by every error about the OTEL_* environment.
var ErrConfig = errors.New("tracing configuration")

// Options says who this process is. The OTEL_* environment may override both names
// (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES).
type Options struct {
	// ServiceName is service.name; "" means DefaultServiceName.
	ServiceName string
	// InstanceID is service.instance.id: the node's name in the cluster, so a trace shows which
	// node each span ran on.
	InstanceID string
	// Version is service.version.
	Version string
	// Log receives export errors (the exporter retries and then drops; tracing never blocks a
	// request). Nil: slog.Default.
	Log *slog.Logger
}

// DefaultServiceName is service.name when neither Options nor the environment names one.
const DefaultServiceName = "wasmpod"

// Provider is the running tracing pipeline. A nil *Provider is tracing off; its methods work.
type Provider struct {
	tp      *sdktrace.TracerProvider
	restore func()
	once    sync.Once
	err     error
	// Endpoint and Sampler describe the configuration, for the start-up log line.
	Endpoint, Sampler string
}

// Enabled reports whether the environment asks for tracing: an OTLP endpoint is set and the
// SDK is not disabled.
func Enabled() bool {
	if v, _ := strconv.ParseBool(strings.TrimSpace(os.Getenv("OTEL_SDK_DISABLED"))); v {
		return false
	}
	if strings.EqualFold(strings.TrimSpace(os.Getenv("OTEL_TRACES_EXPORTER")), "none") {
		return false
	}
	return endpoint() != ""
}

func endpoint() string {
	if e := strings.TrimSpace(os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")); e != "" {
		return e
	}
	return strings.TrimSpace(os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT"))
}

// FromEnv starts tracing as the environment says and installs it in internal/spans. It
// returns a nil Provider (tracing off, nothing started) when Enabled is false, and an error
// wrapping ErrConfig, naming the variable, when a variable is malformed or asks for something
// wasmpod does not do (the OTLP gRPC protocol, an exporter other than otlp). Shutdown flushes.
func FromEnv(ctx context.Context, o Options) (*Provider, error) {
	if !Enabled() {
		return nil, nil
	}
	if err := checkExporter(); err != nil {
		return nil, err
	}
	sampler, desc, err := samplerFromEnv()
	if err != nil {
		return nil, err
	}
	exp, err := otlptracehttp.New(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: OTLP/HTTP exporter for %s: %w", ErrConfig, endpoint(), err)
	}
	res, err := newResource(ctx, o)
	if err != nil {
		_ = exp.Shutdown(ctx)
		return nil, err
	}
	log := o.Log
	if log == nil {
		log = slog.Default()
	}
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) { log.Warn("tracing", "err", err) }))
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp), // OTEL_BSP_* tune it; a full queue drops spans, never waits
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sampler),
	)
	return &Provider{tp: tp, restore: spans.Install(tp), Endpoint: endpoint(), Sampler: desc}, nil
}

// checkExporter refuses OTEL_TRACES_EXPORTER and OTEL_EXPORTER_OTLP_*PROTOCOL values that
// would silently not be honoured.
func checkExporter() error {
	if e := strings.TrimSpace(os.Getenv("OTEL_TRACES_EXPORTER")); e != "" && !strings.EqualFold(e, "otlp") {
		return fmt.Errorf("%w: OTEL_TRACES_EXPORTER=%q: wasmpod exports traces with otlp only (or none)", ErrConfig, e)
	}
	for _, k := range []string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
		if p := strings.TrimSpace(os.Getenv(k)); p != "" {
			if p != "http/protobuf" {
				return fmt.Errorf("%w: %s=%q: wasmpod speaks OTLP over HTTP with protobuf (http/protobuf) only", ErrConfig, k, p)
			}
			break // the traces-specific one wins
		}
	}
	return nil
}

// samplerFromEnv reads OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG as the specification
// defines them; unset is parentbased_always_on, the specification's default.
func samplerFromEnv() (sdktrace.Sampler, string, error) {
	name := strings.ToLower(strings.TrimSpace(os.Getenv("OTEL_TRACES_SAMPLER")))
	arg := strings.TrimSpace(os.Getenv("OTEL_TRACES_SAMPLER_ARG"))
	ratio := func() (float64, error) {
		if arg == "" {
			return 1, nil // the specification's default ratio
		}
		r, err := strconv.ParseFloat(arg, 64)
		if err != nil || r < 0 || r > 1 {
			return 0, fmt.Errorf("%w: OTEL_TRACES_SAMPLER_ARG=%q: want a ratio in [0, 1]", ErrConfig, arg)
		}
		return r, nil
	}
	switch name {
	case "", "parentbased_always_on":
		return sdktrace.ParentBased(sdktrace.AlwaysSample()), "parentbased_always_on", nil
	case "always_on":
		return sdktrace.AlwaysSample(), name, nil
	case "always_off":
		return sdktrace.NeverSample(), name, nil
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample()), name, nil
	case "traceidratio", "parentbased_traceidratio":
		r, err := ratio()
		if err != nil {
			return nil, "", err
		}
		s := sdktrace.TraceIDRatioBased(r)
		if name == "parentbased_traceidratio" {
			s = sdktrace.ParentBased(s)
		}
		return s, name + "(" + strconv.FormatFloat(r, 'g', -1, 64) + ")", nil
	}
	return nil, "", fmt.Errorf("%w: OTEL_TRACES_SAMPLER=%q: want always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off or parentbased_traceidratio", ErrConfig, name)
}

// newResource describes this process: wasmpod's names first, then the environment's
// (OTEL_RESOURCE_ATTRIBUTES, OTEL_SERVICE_NAME), which win.
func newResource(ctx context.Context, o Options) (*resource.Resource, error) {
	attrs := []attribute.KeyValue{attribute.String("service.name", cmp(o.ServiceName, DefaultServiceName))}
	if o.InstanceID != "" {
		attrs = append(attrs, attribute.String("service.instance.id", o.InstanceID))
	}
	if o.Version != "" {
		attrs = append(attrs, attribute.String("service.version", o.Version))
	}
	res, err := resource.New(ctx, resource.WithAttributes(attrs...), resource.WithTelemetrySDK(), resource.WithFromEnv())
	if err != nil {
		return nil, fmt.Errorf("%w: OTEL_RESOURCE_ATTRIBUTES or OTEL_SERVICE_NAME: %w", ErrConfig, err)
	}
	return res, nil
}

func cmp(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// Shutdown turns the span sites off, flushes the spans still queued (bounded by ctx) and
// stops the exporter. Idempotent; a nil Provider does nothing.
func (p *Provider) Shutdown(ctx context.Context) error {
	if p == nil {
		return nil
	}
	p.once.Do(func() {
		p.restore()
		if err := p.tp.Shutdown(ctx); err != nil {
			p.err = fmt.Errorf("tracing: flushing spans: %w", err)
		}
	})
	return p.err
}
