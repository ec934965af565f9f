package node

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rexi-go/rexi/frame"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// handleBarrier registers "barrier": each job waits until total jobs have
// started, then replies. It completes only if the node runs that many
// handlers side by side.
func handleBarrier(n *Node, total int32) {
	var arrived atomic.Int32
	all := make(chan struct{})
	n.Handle("barrier", func(ctx context.Context, w *Worker) error {
		if arrived.Add(1) == total {
			close(all)
		}
		select {
		case <-all:
			return w.Reply(w.Args())
		case <-ctx.Done():
			return ctx.Err()
		}
	})
}

// A read that starts many jobs wakes one worker; the workers wake each
// other while jobs wait. Handlers that block must still all run at once.
func TestJobsOfOneReadThatBlockEachGetAWorker(t *testing.T) {
	const jobs = 64
	n := startNode(t, newProbe(), nil)
	handleBarrier(n, jobs)
	c := connect(t, n, 0)
	for ref := uint64(1); ref <= jobs; ref++ {
		c.Out = c.Enc.AppendDoit(c.Out, ref, frame.Doit{Handler: []byte("barrier"), Args: []byte("ok")})
	}
	c.Send() // one write: one loop turn starts all of them
	for range jobs {
		if f := c.Next(); f.Type != frame.TypeReply {
			t.Fatalf("got %v for ref %d, want REPLY", f.Type, f.Ref)
		}
	}
	eventually(t, "no job running", func() bool { return n.Stats().Running == 0 })
}

// After a burst, at most IdleWorkers worker goroutines stay parked.
func TestIdleWorkersBoundAfterABurst(t *testing.T) {
	const jobs, idle = 32, 4
	n := startNode(t, newProbe(), func(cfg *Config) { cfg.IdleWorkers = idle })
	handleBarrier(n, jobs)
	c := connect(t, n, 0)
	for ref := uint64(1); ref <= jobs; ref++ {
		c.Out = c.Enc.AppendDoit(c.Out, ref, frame.Doit{Handler: []byte("barrier")})
	}
	c.Send()
	for range jobs {
		if f := c.Next(); f.Type != frame.TypeReply {
			t.Fatalf("got %v for ref %d, want REPLY", f.Type, f.Ref)
		}
	}
	eventually(t, "idle workers down to the bound", func() bool {
		s := n.Stats()
		return s.Running == 0 && s.Idle == idle
	})
}

// A job killed while it waited for a worker is released without running.
func TestPoolSkipsAJobKilledWhileQueued(t *testing.T) {
	n := startNode(t, newProbe(), nil)
	ran := make(chan struct{}, 1)
	w := n.getWorker()
	w.jc = &jobContext{wake: w.signal}
	w.jc.stop(ErrKilled)
	n.stats.running.Add(1)
	n.pool.submit([]task{{fn: func(ctx context.Context, w *Worker) error { ran <- struct{}{}; return nil }, w: w}})
	eventually(t, "the job released", func() bool { return n.Stats().Running == 0 })
	select {
	case <-ran:
		t.Fatal("the killed job's handler ran")
	default:
	}
}

// A job's context ends when its handler returns: what the handler left
// running on it stops, with context.Canceled.
func TestJobContextEndsWhenTheHandlerReturns(t *testing.T) {
	n := startNode(t, newProbe(), nil)
	left := make(chan error, 1)
	n.Handle("leave", func(ctx context.Context, w *Worker) error {
		go func() {
			<-ctx.Done()
			left <- ctx.Err()
		}()
		return w.Reply(nil)
	})
	c := connect(t, n, 0)
	c.Doit(1, "leave", "")
	c.Expect(frame.TypeReply, 1)
	select {
	case err := <-left:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("ctx.Err() %v, want context.Canceled", err)
		}
	case <-time.After(waitFor):
		t.Fatal("the handler's context never ended")
	}
}

// panickyTracer's job spans panic when they end: a user's tracer is code
// the node calls on its event loop.
type panickyProvider struct{ noop.TracerProvider }

func (panickyProvider) Tracer(string, ...trace.TracerOption) trace.Tracer { return panickyTracer{} }

type panickyTracer struct{ noop.Tracer }

func (panickyTracer) Start(ctx context.Context, _ string, _ ...trace.SpanStartOption) (context.Context, trace.Span) {
	return ctx, panickySpan{}
}

type panickySpan struct{ noop.Span }

func (panickySpan) End(...trace.SpanEndOption) { panic("span end broke") }

// A tracer whose spans panic as they end (user code, run on the event
// loop and where the node cleans up) neither ends the connection nor
// loses a job: here, jobs killed in the read that started them.
func TestTracerPanicEndingASpanIsContained(t *testing.T) {
	logged := &messageCounter{msg: "rexi node: the tracer panicked ending a job span"}
	n := startNode(t, newProbe(), func(cfg *Config) { cfg.TracerProvider, cfg.Logger = panickyProvider{}, slog.New(logged) })
	c := connect(t, n, 0)
	for ref := uint64(1); ref <= 4; ref++ {
		c.Out = c.Enc.AppendDoit(c.Out, ref, frame.Doit{Handler: []byte("block")})
		if ref%2 == 1 {
			c.Out = c.Enc.AppendEmpty(c.Out, frame.TypeCancel, ref)
		}
	}
	c.Send()
	eventually(t, "jobs 2 and 4 running", func() bool { s := n.Stats(); return s.Live == 2 && s.Running == 2 })
	c.KillAll(2, 4)
	eventually(t, "every job released", func() bool { s := n.Stats(); return s.Live == 0 && s.Running == 0 })
	c.Doit(5, "echo", "still here")
	c.Expect(frame.TypeReply, 5)
	if logged.n.Load() == 0 {
		t.Fatal("the tracer's panic was not logged through the node's logger")
	}
}

// messageCounter is a slog.Handler that counts the records with msg.
type messageCounter struct {
	msg string
	n   atomic.Int32
}

func (h *messageCounter) Enabled(context.Context, slog.Level) bool { return true }
func (h *messageCounter) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		h.n.Add(1)
	}
	return nil
}
func (h *messageCounter) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *messageCounter) WithGroup(string) slog.Handler      { return h }
