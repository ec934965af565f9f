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

// startAheadNode runs a node with window 2 and "rowsthenfail", which
// streams args rows and then fails.
func startAheadNode(t *testing.T, p *probe, mod func(*Config)) *Node {
	n := startNode(t, p, func(c *Config) {
		c.Window = 2
		if mod != nil {
			mod(c)
		}
	})
	n.Handle("rowsthenfail", func(ctx context.Context, w *Worker) error {
		count, _ := strconv.Atoi(string(w.Args()))
		for i := range count {
			if err := w.Stream(fmt.Appendf(nil, "row %d", i)); err != nil {
				return err
			}
		}
		p.events <- "failing"
		return errors.New("disk on fire")
	})
	return n
}

// startedStream DOITs handler with args as ref, STARTs it and reads the
// window's rows.
func startedStream(t *testing.T, c *rawClient, ref uint64, handler, args string, window int) {
	t.Helper()
	c.Doit(ref, handler, args)
	c.Expect(frame.TypeStreamInit, ref)
	c.Control(frame.TypeStart, ref)
	for range window {
		c.Expect(frame.TypeStream, ref)
	}
}

func TestHeldBackRowsOfAFinishedHandler(t *testing.T) {
	t.Run("killed: dropped, job gone", func(t *testing.T) {
		p := newProbe()
		n := startAheadNode(t, p, nil)
		c := connect(t, n, 0)
		startedStream(t, c, 1, "rows", "4", 2) // rows 3-4 and LAST held back
		eventually(t, "handler returned", func() bool { return n.Stats().Running == 0 })
		if s := n.Stats(); s.Live != 1 {
			t.Fatalf("live %d, want the job live until its held-back rows are out", s.Live)
		}
		c.Control(frame.TypeCancel, 1)
		eventually(t, "job gone", func() bool { return n.Stats().Live == 0 })
		c.Doit(2, "echo", "after") // nothing was sent for ref 1
		c.Expect(frame.TypeReply, 2)
		if s := n.Stats(); s.Killed != 1 {
			t.Fatalf("killed %d, want 1", s.Killed)
		}
	})
	t.Run("never acked: ack timeout", func(t *testing.T) {
		p := newProbe()
		n := startAheadNode(t, p, func(c *Config) { c.AckTimeout = 50 * time.Millisecond })
		c := connect(t, n, 0)
		startedStream(t, c, 1, "rows", "4", 2)
		if x := parseExit(t, c.Expect(frame.TypeExit, 1)); x.Kind != frame.ExitAckTimeout {
			t.Fatalf("EXIT kind %v, want ack timeout", x.Kind)
		}
		eventually(t, "job gone", func() bool { return n.Stats().Live == 0 })
		if s := n.Stats(); s.AckTimeouts != 1 {
			t.Fatalf("ack timeouts %d, want 1", s.AckTimeouts)
		}
	})
	t.Run("DOIT deadline", func(t *testing.T) {
		p := newProbe()
		n := startAheadNode(t, p, nil)
		c := connect(t, n, 0)
		c.Out = c.Enc.AppendDoit(c.Out, 1, frame.Doit{TimeoutMillis: 100, Handler: []byte("rows"), Args: []byte("4")})
		c.Send()
		c.Expect(frame.TypeStreamInit, 1)
		c.Control(frame.TypeStart, 1)
		c.Expect(frame.TypeStream, 1)
		c.Expect(frame.TypeStream, 1)
		if x := parseExit(t, c.Expect(frame.TypeExit, 1)); x.Kind != frame.ExitDeadline {
			t.Fatalf("EXIT kind %v, want deadline", x.Kind)
		}
		eventually(t, "job gone", func() bool { return n.Stats().Live == 0 })
	})
}

func TestFailureDropsHeldBackRows(t *testing.T) {
	p := newProbe()
	n := startAheadNode(t, p, nil)
	c := connect(t, n, 0)
	startedStream(t, c, 1, "rowsthenfail", "4", 2)
	p.waitEvent(t, "failing")
	x := parseExit(t, c.Expect(frame.TypeExit, 1)) // at once, not after rows 3-4
	if x.Kind != frame.ExitError || !strings.Contains(string(x.Reason), "disk on fire") {
		t.Fatalf("EXIT %v %q", x.Kind, x.Reason)
	}
	c.Ack(1, 2) // the job is gone: nothing more comes
	c.Doit(2, "echo", "after")
	c.Expect(frame.TypeReply, 2)
	if s := n.Stats(); s.Live != 0 || s.Errors != 1 {
		t.Fatalf("live %d errors %d, want 0 and 1", s.Live, s.Errors)
	}
}

func TestHeldBackRowsCountAgainstTheOutboundLimit(t *testing.T) {
	p := newProbe()
	// Room for about one row: a held-back row fills it, so the next row
	// waits for room (not for an ACK: one row is held back of the two
	// allowed), and the stream still completes as ACKs come.
	n := startAheadNode(t, p, func(c *Config) { c.OutboundLimit = 1500 })
	c := connect(t, n, 0)
	startedStream(t, c, 1, "rows", "6:1000", 2)
	eventually(t, "a row waits for room", func() bool { return n.Stats().OutputWaits > 0 })
	rows := 2
	for {
		c.Ack(1, 1)
		f := c.Next()
		if f.Type == frame.TypeLast {
			break
		}
		if f.Type != frame.TypeStream || f.Ref != 1 {
			t.Fatalf("%s for ref %d", f.Type, f.Ref)
		}
		rows++
	}
	if rows != 6 {
		t.Fatalf("%d rows before LAST, want 6", rows)
	}
	eventually(t, "job gone", func() bool { return n.Stats().Live == 0 })
}

// A partial release must not leave the job looking as if it waited for an
// ACK: a slow stream that once had rows held back, and whose every row is
// acked at once, is never stopped for an ack timeout (it was, once the
// timeout passed, because the wait stayed armed).
func TestHeldBackRowsReleasedLeaveNoWaitArmed(t *testing.T) {
	p := newProbe()
	n := startNode(t, p, func(c *Config) { c.Window = 2; c.AckTimeout = 150 * time.Millisecond })
	gate := make(chan struct{})
	n.Handle("slow", func(ctx context.Context, w *Worker) error {
		for i := range 4 {
			if err := w.Stream(fmt.Appendf(nil, "row %d", i)); err != nil {
				return err
			}
		}
		p.events <- "burst"
		<-gate
		for i := 4; i < 20; i++ {
			time.Sleep(40 * time.Millisecond) // slow work between rows: 640 ms in all, past the ack timeout
			if err := w.Stream(fmt.Appendf(nil, "row %d", i)); err != nil {
				return err
			}
		}
		return w.Last([]byte("done"))
	}, Streaming())
	c := connect(t, n, 0)
	startedStream(t, c, 1, "slow", "", 2)
	p.waitEvent(t, "burst")
	c.Ack(1, 1)
	c.Expect(frame.TypeStream, 1) // a partial release: row 4 still held
	c.Ack(1, 1)
	c.Expect(frame.TypeStream, 1) // none held now
	c.Ack(1, 2)
	close(gate)
	for {
		switch f := c.Next(); f.Type {
		case frame.TypeStream:
			c.Ack(1, 1)
		case frame.TypeLast:
			return
		default:
			t.Fatalf("%s %q, want rows and LAST", f.Type, f.Payload)
		}
	}
}

// Rows held back wait for their own job's ACK, not for the socket: they
// must not take the connection's outbound room from other jobs (a
// coordinator may ack a stream only once it consumed it, after another
// job's answer), nor count towards the hard limit of answers that cannot
// wait.
func TestHeldBackRowsDoNotBlockOtherJobs(t *testing.T) {
	p := newProbe()
	n := startNode(t, p, func(c *Config) { c.Window = 2; c.OutboundLimit = 4096; c.OutboundHardLimit = 8192 })
	n.HandleReply("lecho", func(args, nonce, dst []byte) ([]byte, error) { return append(dst, args...), nil })
	c := connect(t, n, 0)
	startedStream(t, c, 1, "rows", "10:2000", 2)
	p.waitEvent(t, "try 5") // rows 3 and 4 held back, about 4 KiB; rows 1 and 2 read, not acked
	c.Doit(2, "echo", string(make([]byte, 100)))
	if f := c.Next(); f.Type != frame.TypeReply || f.Ref != 2 {
		t.Fatalf("got %s for ref %d, want job 2's REPLY", f.Type, f.Ref)
	}
	c.Doit(3, "lecho", string(make([]byte, 5000)))
	if f := c.Next(); f.Type != frame.TypeReply || f.Ref != 3 {
		t.Fatalf("got %s for ref %d (%q), want job 3's REPLY", f.Type, f.Ref, f.Payload)
	}
}

// A connection that ends with jobs in every state (waiting for START,
// started and holding rows, started in the same read as a malformed frame)
// leaves nothing counted behind.
func TestConnectionEndsWithJobsInEveryState(t *testing.T) {
	p := newProbe()
	n := startNode(t, p, func(c *Config) { c.Window = 2 })
	n.Handle("s", func(ctx context.Context, w *Worker) error {
		count, _ := strconv.Atoi(string(w.Args()))
		for range count {
			if err := w.Stream(make([]byte, 100)); err != nil {
				return err
			}
		}
		return w.Last([]byte("done"))
	}, Streaming())
	for round := range 20 {
		c := connect(t, n, 0)
		for ref := uint64(1); ref <= 20; ref++ {
			c.Doit(ref, "s", strconv.Itoa(int(ref%6)))
		}
		for ref := uint64(1); ref <= 20; ref += 2 {
			c.Control(frame.TypeStart, ref)
		}
		if round%2 == 0 { // STARTs and a malformed frame in one read
			c.Out = c.Enc.AppendAck(c.Out, 3, 1)
			c.Out = append(c.Out, 0, 0, 0, 0, 0x7f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1)
			c.Send()
		}
		c.NC.Close()
	}
	eventually(t, "nothing left", func() bool {
		s := n.Stats()
		return s.Live == 0 && s.Running == 0 && s.ArgBytes == 0
	})
	for _, cc := range n.connList() {
		cc.mu.Lock()
		held := cc.aheadBytes
		cc.mu.Unlock()
		if held != 0 {
			t.Fatalf("a connection still counts %d bytes held back", held)
		}
	}
}
