package node

import (
	"context"
	"fmt"

	"github.com/rexi-go/rexi/frame"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// tracerName is the instrumentation scope of the node's spans.
const tracerName = "github.com/rexi-go/rexi/node"

// Outcomes recorded on a job's span (attribute rexi.outcome).
const (
	outcomeReply  = "reply"  // REPLY sent
	outcomeLast   = "last"   // LAST sent
	outcomeExit   = "exit"   // EXIT sent; rexi.exit_kind says which
	outcomeKilled = "killed" // CANCEL, KILL_ALL or connection loss
	outcomeNone   = "none"   // the handler returned without a final message
)

// startSpan opens a job's "rexi.job" span: a child of the coordinator's
// span when the DOIT carried its context, a root otherwise. Nil without a
// tracer. Event loop.
func (c *conn) startSpan(ref uint64, handler string, d *frame.Doit) trace.Span {
	if c.n.tracer == nil { // small enough to inline: an untraced job pays no call
		return nil
	}
	return c.startTracedSpan(ref, handler, d)
}

func (c *conn) startTracedSpan(ref uint64, handler string, d *frame.Doit) trace.Span {
	t := c.n.tracer
	ctx := context.Background()
	if d.Trace.Valid() {
		ctx = trace.ContextWithRemoteSpanContext(ctx, trace.NewSpanContext(trace.SpanContextConfig{
			TraceID: d.Trace.TraceID, SpanID: d.Trace.SpanID, TraceFlags: trace.TraceFlags(d.Trace.Flags), Remote: true,
		}))
	}
	attrs := []attribute.KeyValue{
		attribute.String("rexi.handler", handler),
		attribute.String("rexi.node", c.n.name),
		attribute.Int64("rexi.ref", int64(ref)),
	}
	if p := c.peerName.Load(); p != nil {
		attrs = append(attrs, attribute.String("rexi.coordinator", *p))
	}
	if c.doitFields&frame.FeatureRange != 0 {
		attrs = append(attrs, attribute.String("rexi.range", fmt.Sprintf("%08x-%08x", d.RangeLo, d.RangeHi)))
	}
	_, span := t.Start(ctx, "rexi.job", trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(attrs...))
	return span
}

// endSpan ends the worker's span, if it has one, once. The caller holds
// c.mu or is the worker's goroutine after its handler returned.
func (w *Worker) endSpan(outcome string, exit *frame.Exit, cause error) {
	if w.span != nil {
		w.c.n.endSpan(w.span, outcome, w.rows, exit, cause)
		w.span = nil
	}
}

// endSpan records how a job ended and ends its span (nil: untraced). The
// span is the user's tracer's code, called on the event loop and from
// places that clean up after a failure: a panic in it is logged, not let
// loose, so that accounting around it stays whole.
func (n *Node) endSpan(span trace.Span, outcome string, rows uint64, exit *frame.Exit, cause error) {
	if span != nil { // small enough to inline, like startSpan
		n.endTracedSpan(span, outcome, rows, exit, cause)
	}
}

func (n *Node) endTracedSpan(span trace.Span, outcome string, rows uint64, exit *frame.Exit, cause error) {
	defer func() {
		if r := recover(); r != nil {
			n.log.Error("rexi node: the tracer panicked ending a job span", "panic", fmt.Sprint(r))
		}
	}()
	span.SetAttributes(attribute.String("rexi.outcome", outcome), attribute.Int64("rexi.rows", int64(rows)))
	switch {
	case exit != nil:
		span.SetAttributes(attribute.String("rexi.exit_kind", exit.Kind.String()))
		span.SetStatus(codes.Error, string(exit.Reason))
	case cause != nil:
		span.SetAttributes(attribute.String("rexi.kill_cause", cause.Error()))
	}
	span.End()
}

// finalOutcome names the final message a worker sent.
func finalOutcome(t frame.Type) string {
	switch t {
	case frame.TypeReply:
		return outcomeReply
	case frame.TypeLast:
		return outcomeLast
	}
	return outcomeNone
}
