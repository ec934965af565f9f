package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// startTracing returns a TracerProvider that batches spans to an OTLP/HTTP
// collector at endpoint: a URL (http://host:4318, or https://) or a bare
// host:port, which means plain http. Spans are sampled at ratio when a
// trace starts here (a /fanout), and as the coordinator decided for jobs
// whose DOIT carried a context.
func startTracing(endpoint string, ratio float64, name string, log *slog.Logger) (*sdktrace.TracerProvider, error) {
	if ratio < 0 || ratio > 1 {
		return nil, fail(exitUsage, "-otlp-sample-ratio %v: want a number in [0, 1]", ratio)
	}
	if !strings.Contains(endpoint, "://") {
		endpoint = "http://" + endpoint
	}
	u, err := url.Parse(endpoint)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fail(exitUsage, "-otlp-endpoint %q: want http://HOST:PORT, https://HOST:PORT or HOST:PORT", endpoint)
	}
	if u.Path == "" || u.Path == "/" { // a collector's base address, as OTEL_EXPORTER_OTLP_ENDPOINT takes it
		u.Path = "/v1/traces"
	}
	exp, err := otlptracehttp.New(context.Background(), otlptracehttp.WithEndpointURL(u.String()))
	if err != nil {
		return nil, fail(exitUsage, "-otlp-endpoint %q: %v", endpoint, err)
	}
	// Export failures go to our log, not the standard logger.
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) { log.Warn("opentelemetry", "err", err) }))
	res := resource.NewSchemaless(attribute.String("service.name", "rexinode"), attribute.String("service.instance.id", name))
	return sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio))),
	), nil
}

// stopTracing flushes the spans still batched, for at most a few seconds.
func stopTracing(tp *sdktrace.TracerProvider) error {
	if tp == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := tp.Shutdown(ctx); err != nil {
		return fmt.Errorf("flushing spans: %w", err)
	}
	return nil
}
