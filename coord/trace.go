package coord

import (
	"context"

	"github.com/rexi-go/rexi/frame"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// tracerName is the instrumentation scope of the coordinator's spans.
const tracerName = "github.com/rexi-go/rexi/coord"

// startSpan opens the coordinator's "rexi.fanout" span, a child of the
// span in ctx, and keeps its context for the DOITs. Without a tracer it
// returns ctx.
func (s *state) startSpan(ctx context.Context) context.Context {
	t := s.cl.tracer
	if t == nil {
		return ctx
	}
	ctx, s.span = t.Start(ctx, "rexi.fanout", trace.WithSpanKind(trace.SpanKindClient))
	if sc := s.span.SpanContext(); sc.IsValid() {
		s.trace = frame.TraceParent{TraceID: sc.TraceID(), SpanID: sc.SpanID(), Flags: byte(sc.TraceFlags())}
	}
	return ctx
}

// endSpan records how the fan-out's jobs ended and ends its span. Called
// once the final messages that arrived are absorbed, before the rest are
// killed.
func (s *state) endSpan(abandoned bool) {
	if s.span == nil {
		return
	}
	var rows uint64
	var done, failed, cancelled, killed int
	for i := range s.slots {
		sl := &s.slots[i]
		rows += sl.rows
		switch sl.st {
		case slotDone:
			done++
		case slotFailed:
			failed++
		case slotCancelled:
			cancelled++
		default:
			killed++ // still running: Close kills it
		}
	}
	s.span.SetAttributes(
		attribute.Int("rexi.jobs", len(s.slots)),
		attribute.Int("rexi.jobs.done", done),
		attribute.Int("rexi.jobs.failed", failed),
		attribute.Int("rexi.jobs.cancelled", cancelled),
		attribute.Int("rexi.jobs.killed", killed),
		attribute.Int64("rexi.rows", int64(rows)),
	)
	if abandoned {
		s.span.SetStatus(codes.Error, "coordinator abandoned without Close; its workers were reaped")
	}
	s.span.End()
	s.span = nil
}
