// Package tracing holds the end-to-end test of wasmpod's OpenTelemetry traces against a real
// backend: Jaeger all-in-one (pinned by the tools/jaeger module, built once into the user's
// cache by tools/jaeger/build.sh) receives the spans of three real wasmpod processes over
// OTLP/HTTP, and the test reads one scatter request's trace back through Jaeger's query API.
// docs/tracing.md is the operator's page.
package tracing
