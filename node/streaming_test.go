package node

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rexi-go/rexi/frame"
)

// startStreamingNode runs a node with Streaming handlers: srows streams
// args rows and LAST "done"; sblock streams a row and waits for its
// context; sreply replies. Each reports "ran:<handler>" when it runs and
// its context's cause when it is stopped.
func startStreamingNode(t *testing.T, p *probe, mod func(*Config)) *Node {
	n := startNode(t, p, mod)
	n.Handle("srows", func(ctx context.Context, w *Worker) error {
		p.events <- "ran:srows"
		count, _ := strconv.Atoi(string(w.Args()))
		for i := range count {
			if err := w.Stream(fmt.Appendf(nil, "row %d", i)); err != nil {
				p.causes <- err
				return err
			}
		}
		return w.Last([]byte("done"))
	}, Streaming())
	n.Handle("sblock", func(ctx context.Context, w *Worker) error {
		p.events <- "ran:sblock"
		if err := w.Stream([]byte("first")); err != nil {
			return err
		}
		<-ctx.Done()
		p.causes <- context.Cause(ctx)
		return ctx.Err()
	}, Streaming())
	n.Handle("sreply", func(ctx context.Context, w *Worker) error {
		p.events <- "ran:sreply"
		err := w.Reply([]byte("no"))
		p.causes <- err
		return err
	}, Streaming())
	return n
}

// noEvents fails if any handler ran.
func (p *probe) noEvents(t *testing.T) {
	t.Helper()
	select {
	case e := <-p.events:
		t.Fatalf("handler event %q, want none: no handler should have run", e)
	default:
	}
}

func TestStreamingHandlerRunsOnlyAtStart(t *testing.T) {
	p := newProbe()
	n := startStreamingNode(t, p, nil)
	c := connect(t, n, 0)
	c.Doit(1, "srows", "3")
	c.Expect(frame.TypeStreamInit, 1)
	if js := n.Jobs(); len(js) != 1 || js[0].State != "init_wait" {
		t.Fatalf("jobs %+v, want one waiting for START", js)
	}
	if s := n.Stats(); s.Running != 0 || s.Live != 1 {
		t.Fatalf("running=%d live=%d, want 0 and 1: the handler must not run before START", s.Running, s.Live)
	}
	p.noEvents(t)
	c.Control(frame.TypeStart, 1)
	p.waitEvent(t, "ran:srows")
	for i := range 3 {
		if f := c.Expect(frame.TypeStream, 1); string(f.Payload) != fmt.Sprintf("row %d", i) {
			t.Fatalf("row %d: %q", i, f.Payload)
		}
	}
	if f := c.Expect(frame.TypeLast, 1); string(f.Payload) != "done" {
		t.Fatalf("LAST %q", f.Payload)
	}
	eventually(t, "job finished", func() bool { return n.Stats().Live == 0 })
	if s := n.Stats(); s.Started != 1 || s.Streamed != 3 || s.Running != 0 {
		t.Fatalf("started=%d streamed=%d running=%d, want 1 3 0", s.Started, s.Streamed, s.Running)
	}
}

func TestStreamingHandlerKilledBeforeStartNeverRuns(t *testing.T) {
	p := newProbe()
	n := startStreamingNode(t, p, nil)
	a := connect(t, n, 0)
	b := connect(t, n, 0)
	for ref := uint64(1); ref <= 3; ref++ {
		a.Doit(ref, "srows", "5")
		a.Expect(frame.TypeStreamInit, ref)
	}
	b.Doit(1, "srows", "5")
	b.Expect(frame.TypeStreamInit, 1)
	a.Control(frame.TypeCancel, 1)
	a.KillAll(2, 3)
	b.NC.Close()
	eventually(t, "no live job", func() bool { return n.Stats().Live == 0 })
	a.Doit(9, "echo", "after") // nothing was sent for the killed jobs
	if f := a.Expect(frame.TypeReply, 9); string(f.Payload) != "after" {
		t.Fatalf("reply %q", f.Payload)
	}
	p.noEvents(t)
	if s := n.Stats(); s.Killed != 4 || s.Running != 0 {
		t.Fatalf("killed=%d running=%d, want 4 and 0", s.Killed, s.Running)
	}
}

func TestStreamingHandlerTimeouts(t *testing.T) {
	p := newProbe()
	n := startStreamingNode(t, p, func(c *Config) { c.InitTimeout = 50 * time.Millisecond })
	c := connect(t, n, 0)

	c.Doit(1, "srows", "3") // never STARTed
	c.Expect(frame.TypeStreamInit, 1)
	if x := parseExit(t, c.Expect(frame.TypeExit, 1)); x.Kind != frame.ExitInitTimeout {
		t.Fatalf("EXIT kind %v, want init timeout", x.Kind)
	}

	if s := n.Stats(); s.InitTimeouts != 1 {
		t.Fatalf("init timeouts=%d, want 1", s.InitTimeouts)
	}
	p.noEvents(t)
}

func TestStreamingHandlerDeadline(t *testing.T) {
	p := newProbe()
	n := startStreamingNode(t, p, nil)
	c := connect(t, n, 0)

	// The DOIT's deadline passes while the job waits for START ...
	c.Out = c.Enc.AppendDoit(c.Out, 2, frame.Doit{TimeoutMillis: 50, Handler: []byte("srows"), Args: []byte("3")})
	c.Send()
	c.Expect(frame.TypeStreamInit, 2)
	if x := parseExit(t, c.Expect(frame.TypeExit, 2)); x.Kind != frame.ExitDeadline {
		t.Fatalf("EXIT kind %v, want deadline", x.Kind)
	}
	p.noEvents(t)

	// ... or after it: then the handler's context carries it.
	c.Out = c.Enc.AppendDoit(c.Out, 3, frame.Doit{TimeoutMillis: 200, Handler: []byte("sblock")})
	c.Send()
	c.Expect(frame.TypeStreamInit, 3)
	c.Control(frame.TypeStart, 3)
	p.waitEvent(t, "ran:sblock")
	c.Expect(frame.TypeStream, 3)
	if x := parseExit(t, c.Expect(frame.TypeExit, 3)); x.Kind != frame.ExitDeadline {
		t.Fatalf("EXIT kind %v, want deadline", x.Kind)
	}
	if err := p.waitCause(t); !errors.Is(err, ErrDeadline) {
		t.Fatalf("context cause %v, want ErrDeadline", err)
	}
	eventually(t, "no live job", func() bool { return n.Stats().Live == 0 })
	if s := n.Stats(); s.Deadlines != 2 {
		t.Fatalf("deadlines=%d, want 2", s.Deadlines)
	}
}

func TestStreamingHandlerCannotReply(t *testing.T) {
	p := newProbe()
	n := startStreamingNode(t, p, nil)
	c := connect(t, n, 0)
	startedStream(t, c, 1, "sreply", "", 0)
	if err := p.waitCause(t); !errors.Is(err, ErrStreaming) {
		t.Fatalf("Reply returned %v, want ErrStreaming", err)
	}
	x := parseExit(t, c.Expect(frame.TypeExit, 1))
	if x.Kind != frame.ExitError || !strings.Contains(string(x.Reason), "must stream") {
		t.Fatalf("EXIT %v %q, want an error naming the misuse", x.Kind, x.Reason)
	}
}

// A job killed in the read that started it never runs its handler:
// START and CANCEL together for a Streaming job, DOIT and CANCEL together
// for another.
func TestJobKilledInTheReadThatStartedItNeverRuns(t *testing.T) {
	p := newProbe()
	n := startStreamingNode(t, p, nil)
	c := connect(t, n, 0)
	c.Doit(1, "srows", "3")
	c.Expect(frame.TypeStreamInit, 1)
	c.Out = c.Enc.AppendEmpty(c.Out, frame.TypeStart, 1)
	c.Out = c.Enc.AppendEmpty(c.Out, frame.TypeCancel, 1)
	c.Out = c.Enc.AppendDoit(c.Out, 2, frame.Doit{Handler: []byte("block"), Args: []byte("x")})
	c.Out = c.Enc.AppendKillAll(c.Out, []uint64{2})
	c.Send()
	c.Doit(3, "echo", "after")
	c.Expect(frame.TypeReply, 3)
	eventually(t, "both jobs gone", func() bool { s := n.Stats(); return s.Live == 0 && s.Running == 0 })
	p.noEvents(t)
	if s := n.Stats(); s.Killed != 2 {
		t.Fatalf("killed %d, want 2", s.Killed)
	}
}
