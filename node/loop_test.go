package node

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rexi-go/rexi/frame"
)

// countRows is a RowSource of n numbered rows of size bytes.
type countRows struct{ i, n, size int }

var dots = []byte("................................................................")

func (r *countRows) Next(dst []byte) ([]byte, bool) {
	if r.n < 0 {
		panic("row source broke")
	}
	if r.i >= r.n {
		return nil, false
	}
	start := len(dst)
	dst = strconv.AppendInt(dst, int64(r.i), 10)
	for len(dst)-start < r.size {
		dst = append(dst, dots[:min(len(dots), r.size-(len(dst)-start))]...)
	}
	r.i++
	return dst, true
}

func (r *countRows) Last(dst []byte) []byte { return append(dst, "done"...) }

// knownRows also tells whether rows remain (MoreRows), or panics there.
type knownRows struct {
	countRows
	broken bool
}

func (r *knownRows) More() bool {
	if r.broken {
		panic("More broke")
	}
	return r.i < r.n
}

// startLoopNode runs a node with loop handlers: lecho, lfail, lpanic,
// lrows ("N[:SIZE]"), lbroken (Next panics).
func startLoopNode(t testing.TB, mod func(*Config)) *Node {
	n := startNode(t, newProbe(), mod)
	n.HandleReply("lecho", func(args, nonce, dst []byte) ([]byte, error) { return append(dst, args...), nil })
	n.HandleReply("lfail", func(args, nonce, dst []byte) ([]byte, error) { return nil, errors.New("no: " + string(args)) })
	n.HandleReply("lpanic", func(args, nonce, dst []byte) ([]byte, error) { panic("loop boom") })
	n.HandleStream("lrows", func(args, nonce []byte) (RowSource, error) {
		count, size := parseRowsArgs(string(args))
		return &countRows{n: count, size: size}, nil
	})
	n.HandleStream("lbroken", func(args, nonce []byte) (RowSource, error) { return &countRows{n: -1}, nil })
	n.HandleStream("lknown", func(args, nonce []byte) (RowSource, error) {
		count, err := strconv.Atoi(strings.TrimSuffix(string(args), "!"))
		return &knownRows{countRows: countRows{n: count}, broken: strings.HasSuffix(string(args), "!")}, err
	})
	return n
}

func TestLoopReply(t *testing.T) {
	n := startLoopNode(t, nil)
	c := connect(t, n, frame.FeatureChecksum)
	c.Doit(1, "lecho", "hello")
	if f := c.Expect(frame.TypeReply, 1); string(f.Payload) != "hello" {
		t.Fatalf("reply %q", f.Payload)
	}
	c.Doit(2, "lfail", "x")
	if x := parseExit(t, c.Expect(frame.TypeExit, 2)); x.Kind != frame.ExitError || string(x.Reason) != "no: x" {
		t.Fatalf("EXIT %v %q", x.Kind, x.Reason)
	}
	c.Doit(3, "lpanic", "")
	if x := parseExit(t, c.Expect(frame.TypeExit, 3)); x.Kind != frame.ExitPanic || !strings.Contains(string(x.Stack), "goroutine") {
		t.Fatalf("EXIT %v %q", x.Kind, x.Reason)
	}
	c.Doit(4, "lecho", "still serving") // a panic ends the job, not the connection
	c.Expect(frame.TypeReply, 4)
	if s := n.Stats(); s.Started != 4 || s.Replied != 2 || s.Errors != 2 || s.Panics != 1 || s.Live != 0 || s.Running != 0 {
		t.Fatalf("stats %+v", s)
	}
	if errs := n.RecentErrors(); len(errs) != 2 || errs[1].Handler != "lpanic" {
		t.Fatalf("error ring %+v", errs)
	}
}

func TestLoopStreamWindowAndAcks(t *testing.T) {
	n := startLoopNode(t, nil)
	c := connect(t, n, 0)
	c.Doit(7, "lrows", "12")
	c.Expect(frame.TypeStreamInit, 7)
	c.Control(frame.TypeStart, 7)
	for i := 0; i < 5; i++ {
		if f := c.Expect(frame.TypeStream, 7); !bytes.HasPrefix(f.Payload, []byte(strconv.Itoa(i))) {
			t.Fatalf("row %d is %q", i, f.Payload)
		}
	}
	if js := n.Jobs(); len(js) != 1 || js[0].Unacked != 5 || js[0].Rows != 5 {
		t.Fatalf("jobs %+v, want one with 5 un-acked rows", js)
	}
	c.ExpectQuiet(200 * time.Millisecond) // the window is full
	c.Ack(7, 2)
	c.Expect(frame.TypeStream, 7)
	c.Expect(frame.TypeStream, 7)
	c.ExpectQuiet(100 * time.Millisecond)
	c.Ack(7, 5)
	for i := 0; i < 5; i++ {
		c.Expect(frame.TypeStream, 7)
	}
	c.Ack(7, 5)
	if f := c.Expect(frame.TypeLast, 7); string(f.Payload) != "done" {
		t.Fatalf("LAST %q", f.Payload)
	}
	if s := n.Stats(); s.Live != 0 || s.Streamed != 12 || s.Running != 0 {
		t.Fatalf("stats %+v", s)
	}
}

// A source that says no rows remain gets its LAST sent right after the
// row that filled the window: LAST does not count against it.
func TestLoopStreamLastNeedsNoAck(t *testing.T) {
	n := startLoopNode(t, nil)
	c := connect(t, n, 0)
	fillWindow := func(ref uint64, args string) { // DOIT, START, and the 5 rows the window allows
		c.Doit(ref, "lknown", args)
		c.Expect(frame.TypeStreamInit, ref)
		c.Control(frame.TypeStart, ref)
		for range 5 {
			c.Expect(frame.TypeStream, ref)
		}
	}
	fillWindow(1, "5")
	c.Expect(frame.TypeLast, 1) // no ACK sent

	fillWindow(2, "7") // rows left: the window holds them back
	c.ExpectQuiet(100 * time.Millisecond)
	c.Ack(2, 5)
	c.Expect(frame.TypeStream, 2)
	c.Expect(frame.TypeStream, 2)
	c.Expect(frame.TypeLast, 2)

	fillWindow(3, "5!") // More panics once the window is full
	if x := parseExit(t, c.Expect(frame.TypeExit, 3)); x.Kind != frame.ExitPanic || !strings.Contains(string(x.Reason), "More broke") {
		t.Fatalf("EXIT %v %q", x.Kind, x.Reason)
	}
	if s := n.Stats(); s.Live != 0 || s.Streamed != 17 || s.Panics != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestLoopStreamKilledAndTimedOut(t *testing.T) {
	n := startLoopNode(t, func(c *Config) {
		c.InitTimeout = 100 * time.Millisecond
		c.AckTimeout = 100 * time.Millisecond
	})
	c := connect(t, n, 0)
	c.Doit(1, "lrows", "3")
	c.Expect(frame.TypeStreamInit, 1)
	c.Control(frame.TypeCancel, 1) // killed: no EXIT
	c.Doit(2, "lrows", "10")
	c.Expect(frame.TypeStreamInit, 2)
	c.KillAll(2, 99)
	c.Doit(99, "lecho", "tombstoned") // KILL_ALL came first: starts nothing
	c.Doit(3, "lrows", "3")           // never STARTed
	c.Expect(frame.TypeStreamInit, 3)
	if x := parseExit(t, c.Expect(frame.TypeExit, 3)); x.Kind != frame.ExitInitTimeout {
		t.Fatalf("EXIT kind %v, want init timeout", x.Kind)
	}
	c.Doit(4, "lrows", "100") // STARTed, never acked
	c.Expect(frame.TypeStreamInit, 4)
	c.Control(frame.TypeStart, 4)
	for i := 0; i < 5; i++ {
		c.Expect(frame.TypeStream, 4)
	}
	if x := parseExit(t, c.Expect(frame.TypeExit, 4)); x.Kind != frame.ExitAckTimeout {
		t.Fatalf("EXIT kind %v, want ack timeout", x.Kind)
	}
	c.Out = c.Enc.AppendDoit(c.Out, 5, frame.Doit{TimeoutMillis: 50, Handler: []byte("lrows"), Args: []byte("3")})
	c.Send()
	c.Expect(frame.TypeStreamInit, 5)
	if x := parseExit(t, c.Expect(frame.TypeExit, 5)); x.Kind != frame.ExitDeadline && x.Kind != frame.ExitInitTimeout {
		t.Fatalf("EXIT kind %v, want deadline", x.Kind)
	}
	c.Doit(6, "lbroken", "")
	c.Expect(frame.TypeStreamInit, 6)
	c.Control(frame.TypeStart, 6)
	if x := parseExit(t, c.Expect(frame.TypeExit, 6)); x.Kind != frame.ExitPanic {
		t.Fatalf("EXIT kind %v, want panic", x.Kind)
	}
	c.Doit(7, "lrows", "100") // killed after a window of rows
	c.Expect(frame.TypeStreamInit, 7)
	c.Control(frame.TypeStart, 7)
	for i := 0; i < 5; i++ {
		c.Expect(frame.TypeStream, 7)
	}
	c.Control(frame.TypeCancel, 7)
	c.Doit(8, "lecho", "after") // the CANCEL is handled before this
	c.Expect(frame.TypeReply, 8)
	s := n.Stats()
	// Rows are counted however a loop job ends: 5 before the ack timeout,
	// 5 before the CANCEL.
	if s.Killed != 3 || s.Tombstoned != 1 || s.InitTimeouts == 0 || s.AckTimeouts != 1 || s.Live != 0 || s.Streamed != 10 {
		t.Fatalf("stats %+v", s)
	}
}

func TestLoopStreamOutboundBoundAndConnectionLoss(t *testing.T) {
	n := startLoopNode(t, func(c *Config) { c.OutboundLimit = 256 << 10 })
	c := connect(t, n, 0)
	for ref := uint64(1); ref <= 8; ref++ {
		c.Doit(ref, "lrows", "400:65536") // 25 MiB in all
	}
	started := 0
	for started < 8 {
		f := c.Next()
		if f.Type == frame.TypeStreamInit {
			c.Control(frame.TypeStart, f.Ref)
			started++
		}
	}
	eventually(t, "loop jobs parked for output room", func() bool { return n.Stats().OutputWaits > 0 })
	rows, lasts := 0, 0
	for rows < 8*400 || lasts < 8 { // read everything, acking as we go
		f := c.Next()
		switch f.Type {
		case frame.TypeStream:
			rows++
			c.Ack(f.Ref, 1)
		case frame.TypeLast:
			lasts++
		default:
			t.Fatalf("unexpected %s", f.Type)
		}
	}
	// A connection lost with loop jobs live kills them.
	c.Doit(100, "lrows", "5")
	c.Expect(frame.TypeStreamInit, 100)
	eventually(t, "one live job", func() bool { return n.Stats().Live == 1 })
	c.NC.Close()
	eventually(t, "the loop job killed with its connection", func() bool { return n.Stats().Live == 0 })
}

// closingRows is a countRows that reports its Close, and fails the test
// if the node uses it after closing it.
type closingRows struct {
	countRows
	t      *testing.T
	closed bool
	done   chan string
	name   string
}

func (r *closingRows) Next(dst []byte) ([]byte, bool) {
	if r.closed {
		r.t.Errorf("%s: Next after Close", r.name)
	}
	return r.countRows.Next(dst)
}

func (r *closingRows) Close() error {
	if r.closed {
		r.t.Errorf("%s: closed twice", r.name)
	}
	r.closed = true
	r.done <- r.name
	return nil
}

// A loop source that is an io.Closer is closed once, however its job
// ends: LAST, a failure, a CANCEL, the connection's loss.
func TestLoopStreamSourceClosedWhenTheJobEnds(t *testing.T) {
	n := startLoopNode(t, nil)
	closed := make(chan string, 8)
	n.HandleStream("lclose", func(args, nonce []byte) (RowSource, error) {
		r := &closingRows{t: t, done: closed, name: string(args)}
		switch r.name {
		case "last":
			r.n = 2
		case "broken":
			r.n = -1
		default:
			r.n = 1000
		}
		return r, nil
	})
	wantClosed := func(name string) {
		t.Helper()
		select {
		case got := <-closed:
			if got != name {
				t.Fatalf("closed %q, want %q", got, name)
			}
		case <-time.After(waitFor):
			t.Fatalf("source %q never closed", name)
		}
	}
	c := connect(t, n, 0)
	startedStream(t, c, 1, "lclose", "last", 2)
	c.Expect(frame.TypeLast, 1)
	wantClosed("last")

	startedStream(t, c, 2, "lclose", "broken", 0)
	if x := parseExit(t, c.Expect(frame.TypeExit, 2)); x.Kind != frame.ExitPanic {
		t.Fatalf("EXIT %v, want panic", x.Kind)
	}
	wantClosed("broken")

	startedStream(t, c, 3, "lclose", "cancelled", 1)
	c.Control(frame.TypeCancel, 3)
	wantClosed("cancelled")

	c.Doit(4, "lclose", "dropped")
	for f := c.Next(); f.Type != frame.TypeStreamInit; f = c.Next() { // job 3's window of rows came first
		if f.Type != frame.TypeStream || f.Ref != 3 {
			t.Fatalf("got %v ref %d, want job 3's rows, then STREAM_INIT 4", f.Type, f.Ref)
		}
	}
	c.NC.Close()
	wantClosed("dropped")
	eventually(t, "no live job", func() bool { return n.Stats().Live == 0 })
}

// Loop replies are counted once per read, between the other frames of
// that read: a read mixing every kind of DOIT with a heartbeat is
// answered in full, counts each handler's replies, and leaves the
// connection's lock free for workers and for the next read.
func TestLoopRepliesMixedWithOtherFramesInOneRead(t *testing.T) {
	n := startLoopNode(t, nil)
	c := connect(t, n, 0)
	doit := func(ref uint64, handler, args string) {
		c.Out = c.Enc.AppendDoit(c.Out, ref, frame.Doit{Handler: []byte(handler), Args: []byte(args)})
	}
	doit(1, "lecho", "a")
	doit(2, "echo", "goroutine") // a worker replies: it needs the lock the run held
	doit(3, "lecho", "b")
	c.Out = c.Enc.AppendEmpty(c.Out, frame.TypeHeartbeat, 0)
	doit(4, "nope", "")
	doit(5, "lfail", "x")
	doit(6, "lrows", "1")
	doit(7, "lecho", "c")
	c.Send() // one write: one read
	want := map[uint64]frame.Type{1: frame.TypeReply, 2: frame.TypeReply, 3: frame.TypeReply, 4: frame.TypeExit,
		5: frame.TypeExit, 6: frame.TypeStreamInit, 7: frame.TypeReply}
	for len(want) > 0 {
		f := c.Next()
		if f.Type == frame.TypeHeartbeat {
			continue
		}
		if want[f.Ref] != f.Type {
			t.Fatalf("got %v for ref %d, want %v", f.Type, f.Ref, want[f.Ref])
		}
		delete(want, f.Ref)
	}
	c.Doit(8, "echo", "after") // the lock is free: a worker can queue its reply
	c.Expect(frame.TypeReply, 8)
	for _, hs := range n.HandlerStats() {
		if hs.Handler == "lecho" && (hs.Started != 3 || hs.Replied != 3) {
			t.Fatalf("lecho counted %+v, want 3 started and 3 replied", hs)
		}
	}
}

// A loop reply DOIT that reuses a live job's ref ends the connection
// after the frames before it were answered: the node closes it, kills
// its job, and serves the next connection.
func TestLoopReplyWithADuplicateRefEndsTheConnection(t *testing.T) {
	n := startLoopNode(t, nil)
	c := connect(t, n, 0)
	c.Out = c.Enc.AppendDoit(c.Out, 1, frame.Doit{Handler: []byte("lrows"), Args: []byte("5")})
	c.Out = c.Enc.AppendDoit(c.Out, 2, frame.Doit{Handler: []byte("lecho"), Args: []byte("a")})
	c.Out = c.Enc.AppendDoit(c.Out, 1, frame.Doit{Handler: []byte("lecho"), Args: []byte("dup")})
	c.Out = c.Enc.AppendDoit(c.Out, 3, frame.Doit{Handler: []byte("lecho"), Args: []byte("never")})
	c.Send()
	c.Expect(frame.TypeStreamInit, 1)
	c.Expect(frame.TypeReply, 2)
	c.ExpectClosedWith(frame.CodeUnexpected) // and nothing for ref 3
	c2 := connect(t, n, 0)
	c2.Doit(1, "echo", "next")
	c2.Expect(frame.TypeReply, 1)
	eventually(t, "no job live", func() bool { return n.Stats().Live == 0 })
}

// TestHandlerReplacedWhileConnected: a connection remembers the handler
// its last DOIT named; registering that name again must still take effect
// for the connection's next DOIT, and so must a handler added since.
func TestHandlerReplacedWhileConnected(t *testing.T) {
	n := startLoopNode(t, nil)
	c := connect(t, n, 0)
	c.Doit(1, "lecho", "a")
	c.Expect(frame.TypeReply, 1)
	n.HandleReply("lecho", func(args, nonce, dst []byte) ([]byte, error) { return append(dst, "new "...), nil })
	c.Doit(2, "lecho", "b")
	if f := c.Expect(frame.TypeReply, 2); string(f.Payload) != "new " {
		t.Fatalf("reply %q after the handler was replaced, want the new handler's", f.Payload)
	}
	c.Doit(3, "lnew", "c") // unknown until registered
	c.Expect(frame.TypeExit, 3)
	n.HandleReply("lnew", func(args, nonce, dst []byte) ([]byte, error) { return append(dst, args...), nil })
	c.Doit(4, "lnew", "d")
	if f := c.Expect(frame.TypeReply, 4); string(f.Payload) != "d" {
		t.Fatalf("reply %q", f.Payload)
	}
	c.Doit(5, "lecho", "e") // back to the first name: the replaced handler still
	if f := c.Expect(frame.TypeReply, 5); string(f.Payload) != "new " {
		t.Fatalf("reply %q", f.Payload)
	}
}
