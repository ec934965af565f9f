package coord

import (
	"context"
	"fmt"
	"testing"

	"github.com/rexi-go/rexi/handlers"
	"github.com/rexi-go/rexi/node"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// tracedCluster is a cluster whose client and nodes record spans in one
// in-memory exporter, with extra handlers: "lrows" (a loop handler) and
// "whoami" (replies with the range the worker was told and the trace id in
// its ctx).
func tracedCluster(t *testing.T, k int) (*cluster, *tracetest.InMemoryExporter) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { tp.Shutdown(context.Background()) })
	c := newCluster(t, k, func(cfg *Config) { cfg.TracerProvider = tp }, func(cfg *node.Config) { cfg.TracerProvider = tp })
	for _, n := range c.nodes {
		n.HandleStream("lrows", handlers.Rows)
		n.Handle("whoami", func(ctx context.Context, w *node.Worker) error {
			lo, hi, ok := w.Range()
			return w.Reply(fmt.Appendf(nil, "%08x-%08x %t %s", lo, hi, ok, trace.SpanFromContext(ctx).SpanContext().TraceID()))
		})
	}
	return c, exp
}

// spansNamed waits until the exporter holds want spans named name.
func spansNamed(t *testing.T, exp *tracetest.InMemoryExporter, name string, want int) []tracetest.SpanStub {
	t.Helper()
	var got []tracetest.SpanStub
	eventually(t, fmt.Sprintf("%d %s spans", want, name), func() bool {
		got = got[:0]
		for _, s := range exp.GetSpans() {
			if s.Name == name {
				got = append(got, s)
			}
		}
		return len(got) >= want
	})
	if len(got) != want {
		t.Fatalf("%d %s spans, want %d", len(got), name, want)
	}
	return got
}

func attrs(s tracetest.SpanStub) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes {
		m[kv.Key] = kv.Value
	}
	return m
}

// One fan-out is one "rexi.fanout" span, a child of the caller's span, and
// each of its jobs one "rexi.job" span on its node whose parent, across the
// wire, is the fan-out's.
func TestTraceFanoutParentAndJobSpans(t *testing.T) {
	for _, handler := range []string{"rows", "lrows"} { // goroutine and loop handlers
		t.Run(handler, func(t *testing.T) {
			c, exp := tracedCluster(t, 2)
			tp := sdktrace.NewTracerProvider()
			ctx, request := tp.Tracer("test").Start(context.Background(), "request")
			const q, n = 4, 2
			co := mustNew(t, c.cl, ctx, q*n)
			jobs := c.jobs(q, n, handler, "10")
			if _, err := co.Submit(jobs...); err != nil {
				t.Fatal(err)
			}
			rows := 0
			err := co.Stream(StreamOptions{RecvOptions: RecvOptions{Timeout: waitFor}}, func(m Message) error {
				if m.Kind == KindRow {
					rows++
				}
				return nil
			})
			if err != nil || rows != q*10 {
				t.Fatalf("Stream: %v after %d rows, want nil after %d", err, rows, q*10)
			}
			co.Close()
			request.End()

			fan := spansNamed(t, exp, "rexi.fanout", 1)[0]
			if fan.SpanKind != trace.SpanKindClient || fan.Parent.SpanID() != request.SpanContext().SpanID() ||
				fan.SpanContext.TraceID() != request.SpanContext().TraceID() {
				t.Fatalf("fan-out span kind %v parent %v trace %v, want a client span under the request %v",
					fan.SpanKind, fan.Parent.SpanID(), fan.SpanContext.TraceID(), request.SpanContext())
			}
			fa := attrs(fan)
			if fa["rexi.jobs"].AsInt64() != q*n || fa["rexi.rows"].AsInt64() != q*10 || fa["rexi.jobs.done"].AsInt64() != q {
				t.Errorf("fan-out attributes %v, want %d jobs, %d done, %d rows", fan.Attributes, q*n, q, q*10)
			}

			outcomes := map[string]int{}
			ranges := map[string]bool{}
			var jobRows int64
			for _, s := range spansNamed(t, exp, "rexi.job", q*n) {
				if s.SpanKind != trace.SpanKindServer || !s.Parent.IsRemote() || s.Parent.SpanID() != fan.SpanContext.SpanID() ||
					s.SpanContext.TraceID() != fan.SpanContext.TraceID() {
					t.Errorf("job span kind %v parent %v (remote %t) trace %v, want a server span under %v",
						s.SpanKind, s.Parent.SpanID(), s.Parent.IsRemote(), s.SpanContext.TraceID(), fan.SpanContext.SpanID())
				}
				a := attrs(s)
				if a["rexi.handler"].AsString() != handler || (a["rexi.node"].AsString() != "n0" && a["rexi.node"].AsString() != "n1") {
					t.Errorf("job span attributes %v", s.Attributes)
				}
				outcomes[a["rexi.outcome"].AsString()]++
				ranges[a["rexi.range"].AsString()] = true
				jobRows += a["rexi.rows"].AsInt64()
			}
			// One copy per range streams to its LAST; Stream cancels the other.
			if outcomes["last"] != q || outcomes["killed"] != q*(n-1) || jobRows != q*10 {
				t.Errorf("job outcomes %v with %d rows, want %d last and %d killed with %d rows", outcomes, jobRows, q, q*(n-1), q*10)
			}
			for _, rg := range Ranges(q) {
				if !ranges[rg.String()] {
					t.Errorf("no job span for range %v (got %v)", rg, ranges)
				}
			}
		})
	}
}

// A handler learns its job's range and finds the job's span in its ctx.
func TestWorkerSeesRangeAndSpan(t *testing.T) {
	c, exp := tracedCluster(t, 1)
	co := mustNew(t, c.cl, context.Background(), 1)
	defer co.Close()
	rg := Ranges(4)[2]
	co.Submit(Job{Node: c.addrs[0], Handler: "whoami", Range: rg})
	var got string
	err := co.Recv(RecvOptions{Timeout: waitFor}, func(m Message) (bool, error) {
		got = string(m.Payload)
		return false, m.Err
	})
	if err != nil {
		t.Fatal(err)
	}
	job := spansNamed(t, exp, "rexi.job", 1)[0]
	if want := fmt.Sprintf("%v true %s", rg, job.SpanContext.TraceID()); got != want {
		t.Fatalf("worker saw %q, want %q", got, want)
	}
	if o := attrs(job)["rexi.outcome"].AsString(); o != "reply" {
		t.Errorf("outcome %q, want reply", o)
	}
}

// Without a TracerProvider no context travels, and a traced node starts a
// root span of its own.
func TestUntracedClientSendsNoContext(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer tp.Shutdown(context.Background())
	c := newCluster(t, 1, nil, func(cfg *node.Config) { cfg.TracerProvider = tp })
	co := mustNew(t, c.cl, context.Background(), 1)
	defer co.Close()
	co.Submit(Job{Node: c.addrs[0], Handler: "echo", Args: []byte("x")})
	if err := co.Recv(RecvOptions{Timeout: waitFor}, func(m Message) (bool, error) { return false, m.Err }); err != nil {
		t.Fatal(err)
	}
	job := spansNamed(t, exp, "rexi.job", 1)[0]
	if job.Parent.IsValid() {
		t.Fatalf("job span has parent %v, want a root", job.Parent)
	}
}
