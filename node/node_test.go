package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rexi-go/rexi/frame"
	"github.com/rexi-go/rexi/secure"
)

// probe lets tests observe handlers from outside: each handler reports
// events on it.
type probe struct {
	events chan string
	causes chan error // context.Cause when a blocking handler is stopped
	seen   map[string]int
}

func newProbe() *probe {
	return &probe{events: make(chan string, 1024), causes: make(chan error, 1024), seen: map[string]int{}}
}

func (p *probe) waitEvent(t *testing.T, want string) {
	t.Helper()
	timeout := time.After(waitFor)
	for {
		if p.seen[want] > 0 {
			p.seen[want]--
			return
		}
		select {
		case e := <-p.events:
			p.seen[e]++
		case <-timeout:
			t.Fatalf("timed out waiting for handler event %q", want)
		}
	}
}

func (p *probe) waitCause(t *testing.T) error {
	t.Helper()
	select {
	case err := <-p.causes:
		return err
	case <-time.After(waitFor):
		t.Fatal("timed out waiting for a handler to be stopped")
		return nil
	}
}

// startNode runs a node with the test handlers on 127.0.0.1.
func startNode(t testing.TB, p *probe, mod func(*Config)) *Node {
	t.Helper()
	// Plaintext unless a test asks for encryption (secure_test.go): the
	// protocol after the handshake is the same either way.
	cfg := Config{Name: "n1", Secret: testSecret, Logger: quietLogger(), InsecurePlaintext: true}
	if mod != nil {
		mod(&cfg)
	}
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	n.Handle("echo", func(ctx context.Context, w *Worker) error { return w.Reply(w.Args()) })
	n.Handle("fail", func(ctx context.Context, w *Worker) error { return errors.New("bad input: " + string(w.Args())) })
	n.Handle("crash", func(ctx context.Context, w *Worker) error { panic("boom") })
	// block waits until stopped and reports why.
	n.Handle("block", func(ctx context.Context, w *Worker) error {
		p.events <- "block:" + string(w.Args())
		<-ctx.Done()
		p.causes <- context.Cause(ctx)
		return ctx.Err()
	})
	// rows streams n rows (args "n" or "n:size"), reporting each attempt
	// and each row sent, then sends LAST.
	n.Handle("rows", func(ctx context.Context, w *Worker) error {
		count, size := parseRowsArgs(string(w.Args()))
		for i := 1; i <= count; i++ {
			p.events <- fmt.Sprintf("try %d", i)
			row := bytes.Repeat([]byte{'a' + byte(i%26)}, size)
			if err := w.Stream(row); err != nil {
				p.causes <- err
				return err
			}
			p.events <- fmt.Sprintf("sent %d", i)
		}
		return w.Last([]byte("done"))
	})
	n.Handle("big", func(ctx context.Context, w *Worker) error {
		count, size := parseRowsArgs(string(w.Args()))
		for i := 0; i < count; i++ {
			if err := w.Reply(bytes.Repeat([]byte{'x'}, size)); err != nil {
				p.causes <- err
				return err
			}
		}
		p.events <- "big done"
		return nil
	})
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

func parseRowsArgs(s string) (count, size int) {
	a, b, _ := strings.Cut(s, ":")
	count, _ = strconv.Atoi(a)
	size = 16
	if b != "" {
		size, _ = strconv.Atoi(b)
	}
	return count, size
}

func connect(t testing.TB, n *Node, features frame.Feature) *rawClient {
	t.Helper()
	c := dialRaw(t, n.Addr())
	c.Handshake(testSecret, features)
	return c
}

func TestReply(t *testing.T) {
	n := startNode(t, newProbe(), nil)
	c := connect(t, n, 0)
	c.Doit(1, "echo", "hello")
	if f := c.Expect(frame.TypeReply, 1); string(f.Payload) != "hello" {
		t.Fatalf("REPLY payload %q, want %q", f.Payload, "hello")
	}
	eventually(t, "live workers back to 0", func() bool { return n.Stats().Live == 0 && n.Stats().Running == 0 })
	if s := n.Stats(); s.Started != 1 || s.Replied != 1 || s.Connections != 1 {
		t.Fatalf("stats %+v, want started=1 replied=1 connections=1", s)
	}
}

func TestStreamWindowHoldsRowsAheadThenBlocks(t *testing.T) {
	p := newProbe()
	n := startNode(t, p, nil) // default window 5
	c := connect(t, n, frame.FeatureChecksum)
	c.Doit(7, "rows", "12")
	c.Expect(frame.TypeStreamInit, 7)
	c.Control(frame.TypeStart, 7)
	for i := 1; i <= 5; i++ {
		c.Expect(frame.TypeStream, 7)
	}
	// Rows 6-10 wait in the node, off the wire; the handler is inside
	// Stream for row 11 and must stay there.
	p.waitEvent(t, "sent 10")
	p.waitEvent(t, "try 11")
	eventually(t, "job listed with 5 un-acked rows of 10", func() bool {
		js := n.Jobs()
		return len(js) == 1 && js[0].Unacked == 5 && js[0].Rows == 10 && js[0].State == "streaming"
	})
	c.ExpectQuiet(200 * time.Millisecond)
	select {
	case e := <-p.events:
		if e == "sent 11" {
			t.Fatal("row 11 was taken with 5 rows un-acked and 5 held back")
		}
	default:
	}
	c.Ack(7, 2) // a coalesced ack lets two held-back rows out, and the handler goes on
	c.Expect(frame.TypeStream, 7)
	c.Expect(frame.TypeStream, 7)
	p.waitEvent(t, "sent 12")
	c.ExpectQuiet(100 * time.Millisecond)
	c.Ack(7, 5) // rows 8-12, and the LAST behind them, which needs no ACK
	for i := 8; i <= 12; i++ {
		if f := c.Expect(frame.TypeStream, 7); f.Payload[0] != 'a'+byte(i%26) {
			t.Fatalf("row %d payload %q", i, f.Payload)
		}
	}
	if f := c.Expect(frame.TypeLast, 7); string(f.Payload) != "done" {
		t.Fatalf("LAST payload %q", f.Payload)
	}
	eventually(t, "job finished", func() bool { return n.Stats().Live == 0 })
	if s := n.Stats(); s.Streamed != 12 {
		t.Fatalf("streamed %d rows, want 12", s.Streamed)
	}
}

func TestCancelKillsWithoutExit(t *testing.T) {
	p := newProbe()
	n := startNode(t, p, nil)
	c := connect(t, n, 0)
	c.Doit(3, "rows", "5")
	c.Expect(frame.TypeStreamInit, 3)
	c.Control(frame.TypeCancel, 3)
	if err := p.waitCause(t); !errors.Is(err, ErrKilled) {
		t.Fatalf("worker stopped with %v, want ErrKilled", err)
	}
	// An echo after the cancel proves the node sent nothing for ref 3.
	c.Doit(4, "echo", "x")
	c.Expect(frame.TypeReply, 4)
	eventually(t, "live workers 0", func() bool { return n.Stats().Live == 0 })
	if s := n.Stats(); s.Killed != 1 {
		t.Fatalf("killed = %d, want 1", s.Killed)
	}
}

func TestKillAllLiveFinishedUnknown(t *testing.T) {
	p := newProbe()
	n := startNode(t, p, nil)
	c := connect(t, n, 0)
	c.Doit(1, "block", "a")
	c.Doit(2, "echo", "done")
	c.Expect(frame.TypeReply, 2)
	p.waitEvent(t, "block:a")
	eventually(t, "echo job finished", func() bool { return n.Stats().Live == 1 })
	c.KillAll(1, 2, 99)
	if err := p.waitCause(t); !errors.Is(err, ErrKilled) {
		t.Fatalf("live worker stopped with %v, want ErrKilled", err)
	}
	// 99 was killed before its DOIT: the DOIT must start nothing.
	c.Doit(99, "echo", "should not run")
	c.Doit(100, "echo", "after")
	if f := c.Expect(frame.TypeReply, 100); string(f.Payload) != "after" {
		t.Fatalf("got %q", f.Payload)
	}
	s := n.Stats()
	if s.Killed != 1 || s.Tombstoned != 1 || s.Live != 0 || s.Started != 3 {
		t.Fatalf("stats killed=%d tombstoned=%d live=%d started=%d, want 1,1,0,3", s.Killed, s.Tombstoned, s.Live, s.Started)
	}
}

func TestPanicSendsExitWithStack(t *testing.T) {
	n := startNode(t, newProbe(), nil)
	c := connect(t, n, 0)
	c.Doit(5, "crash", "")
	x := parseExit(t, c.Expect(frame.TypeExit, 5))
	if x.Kind != frame.ExitPanic || !strings.Contains(string(x.Reason), "boom") || !strings.Contains(string(x.Stack), "goroutine") {
		t.Fatalf("EXIT kind=%v reason=%q stack=%.60q, want panic with boom and a stack", x.Kind, x.Reason, x.Stack)
	}
	errs := n.RecentErrors()
	if len(errs) != 1 || errs[0].Handler != "crash" || errs[0].Nonce != "nonce-1" || errs[0].Kind != frame.ExitPanic || errs[0].Time.IsZero() {
		t.Fatalf("recent errors %+v", errs)
	}
	if s := n.Stats(); s.Errors != 1 || s.Panics != 1 {
		t.Fatalf("errors=%d panics=%d, want 1 1", s.Errors, s.Panics)
	}
}

func TestErrorSendsExitAndRingKeepsLastN(t *testing.T) {
	n := startNode(t, newProbe(), func(c *Config) { c.ErrorRing = 3 })
	c := connect(t, n, 0)
	for i := 1; i <= 5; i++ {
		c.Doit(uint64(i), "fail", strconv.Itoa(i))
		x := parseExit(t, c.Expect(frame.TypeExit, uint64(i)))
		if x.Kind != frame.ExitError || string(x.Reason) != "bad input: "+strconv.Itoa(i) {
			t.Fatalf("EXIT %v %q", x.Kind, x.Reason)
		}
	}
	errs := n.RecentErrors()
	if len(errs) != 3 || errs[0].Reason != "bad input: 3" || errs[2].Reason != "bad input: 5" {
		t.Fatalf("ring holds %+v, want errors 3..5", errs)
	}
}

// A failure's record keeps a bounded part of its reason: handlers quote
// their input, and the ring lives as long as the node.
func TestErrorRecordIsBounded(t *testing.T) {
	n := startNode(t, newProbe(), nil)
	c := connect(t, n, 0)
	c.Doit(1, "fail", strings.Repeat("z", 100_000))
	c.Expect(frame.TypeExit, 1)
	errs := n.RecentErrors()
	if len(errs) != 1 || len(errs[0].Reason) > recordMaxReason+len("…") || !strings.HasPrefix(errs[0].Reason, "bad input: zzz") {
		t.Fatalf("recorded a reason of %d bytes, want it cut to %d", len(errs[0].Reason), recordMaxReason)
	}
}

func TestUnknownHandler(t *testing.T) {
	n := startNode(t, newProbe(), nil)
	c := connect(t, n, 0)
	c.Doit(1, "os/exec", "rm -rf /")
	x := parseExit(t, c.Expect(frame.TypeExit, 1))
	if x.Kind != frame.ExitUnknownHandler || !strings.Contains(string(x.Reason), "os/exec") {
		t.Fatalf("EXIT %v %q", x.Kind, x.Reason)
	}
	c.Doit(2, "echo", "still serving")
	c.Expect(frame.TypeReply, 2)
	if s := n.Stats(); s.Unknown != 1 || s.Started != 1 {
		t.Fatalf("unknown=%d started=%d", s.Unknown, s.Started)
	}
}

func TestTimeoutsStopWorkersAndCount(t *testing.T) {
	p := newProbe()
	n := startNode(t, p, func(c *Config) {
		c.InitTimeout = 50 * time.Millisecond
		c.AckTimeout = 50 * time.Millisecond
		c.Window = 1
	})
	c := connect(t, n, 0)

	c.Doit(1, "rows", "3") // never STARTed
	c.Expect(frame.TypeStreamInit, 1)
	if x := parseExit(t, c.Expect(frame.TypeExit, 1)); x.Kind != frame.ExitInitTimeout {
		t.Fatalf("EXIT kind %v, want init timeout", x.Kind)
	}
	if err := p.waitCause(t); !errors.Is(err, ErrInitTimeout) {
		t.Fatalf("Stream returned %v, want ErrInitTimeout", err)
	}

	c.Doit(2, "rows", "3") // STARTed, never acked
	c.Expect(frame.TypeStreamInit, 2)
	c.Control(frame.TypeStart, 2)
	c.Expect(frame.TypeStream, 2)
	if x := parseExit(t, c.Expect(frame.TypeExit, 2)); x.Kind != frame.ExitAckTimeout {
		t.Fatalf("EXIT kind %v, want ack timeout", x.Kind)
	}
	if err := p.waitCause(t); !errors.Is(err, ErrAckTimeout) {
		t.Fatalf("Stream returned %v, want ErrAckTimeout", err)
	}

	// DOIT deadline: the worker is stopped even though nobody kills it.
	c.Out = c.Enc.AppendDoit(c.Out, 3, frame.Doit{TimeoutMillis: 50, Handler: []byte("block"), Args: []byte("d")})
	c.Send()
	if x := parseExit(t, c.Expect(frame.TypeExit, 3)); x.Kind != frame.ExitDeadline {
		t.Fatalf("EXIT kind %v, want deadline", x.Kind)
	}
	if err := p.waitCause(t); !errors.Is(err, ErrDeadline) {
		t.Fatalf("worker stopped with %v, want ErrDeadline", err)
	}
	s := n.Stats()
	if s.InitTimeouts != 1 || s.AckTimeouts != 1 || s.Deadlines != 1 {
		t.Fatalf("init=%d ack=%d deadline=%d, want 1 each", s.InitTimeouts, s.AckTimeouts, s.Deadlines)
	}
}

func TestConnectionDropKillsOnlyItsWorkers(t *testing.T) {
	p := newProbe()
	n := startNode(t, p, nil)
	a := connect(t, n, 0)
	b := connect(t, n, 0)
	a.Doit(1, "block", "a")
	p.waitEvent(t, "block:a")
	b.Doit(1, "rows", "3") // same ref on another connection: independent
	b.Expect(frame.TypeStreamInit, 1)
	a.NC.Close()
	if err := p.waitCause(t); !errors.Is(err, ErrKilled) {
		t.Fatalf("a's worker stopped with %v, want ErrKilled", err)
	}
	b.Control(frame.TypeStart, 1)
	for i := 0; i < 3; i++ {
		b.Expect(frame.TypeStream, 1)
	}
	b.Ack(1, 3)
	b.Expect(frame.TypeLast, 1)
	eventually(t, "no live workers", func() bool { return n.Stats().Live == 0 })
	if s := n.Stats(); s.Killed != 1 {
		t.Fatalf("killed=%d, want 1", s.Killed)
	}
}

func TestHeartbeatEchoed(t *testing.T) {
	n := startNode(t, newProbe(), nil)
	c := connect(t, n, frame.FeatureChecksum)
	c.Control(frame.TypeHeartbeat, 0xabc)
	f, err := c.ReadFrame(waitFor)
	if err != nil || f.Type != frame.TypeHeartbeat || f.Ref != 0xabc {
		t.Fatalf("got %s ref %#x err %v, want HEARTBEAT 0xabc", f.Type, f.Ref, err)
	}
}

func TestCompressionNegotiated(t *testing.T) {
	n := startNode(t, newProbe(), func(c *Config) { c.CompressThreshold = 1024 })
	c := connect(t, n, frame.FeatureChecksum|frame.FeatureCompression)
	var b strings.Builder // compressible, and within frame.MaxExpansion
	for i := range 1000 {
		fmt.Fprintf(&b, "word%d ", i*7919%1009)
	}
	big := b.String()
	c.Doit(1, "echo", big)
	f, err := c.ReadFrame(waitFor) // readFrame decompresses; look at the flags
	if err != nil || f.Type != frame.TypeReply || string(f.Payload) != big {
		t.Fatalf("reply: %s err %v, payload %d bytes", f.Type, err, len(f.Payload))
	}
	if f.Flags&frame.FlagCompressed == 0 || f.Flags&frame.FlagChecksum == 0 {
		t.Fatalf("flags %v, want compressed and checksummed", f.Flags)
	}
	// A payload that compresses too well goes uncompressed: a receiver
	// refuses one that expands more than frame.MaxExpansion times.
	zeros := strings.Repeat("\x00", 64<<10)
	c.Doit(2, "echo", zeros)
	if f, err := c.ReadFrame(waitFor); err != nil || f.Flags&frame.FlagCompressed != 0 || string(f.Payload) != zeros {
		t.Fatalf("reply: %s flags %v err %v, want it uncompressed", f.Type, f.Flags, err)
	}
}

func TestNodeRefusesFeaturesItDisabled(t *testing.T) {
	n := startNode(t, newProbe(), func(c *Config) { c.DisableCompression = true })
	c := dialRaw(t, n.Addr())
	w := c.Handshake(testSecret, frame.FeatureChecksum|frame.FeatureCompression)
	if w.Features != frame.FeatureChecksum {
		t.Fatalf("features in force %#x, want checksum only", w.Features)
	}
	c.Doit(1, "echo", "ok")
	c.Expect(frame.TypeReply, 1)
}

func TestOutboundLimitMakesWorkersWait(t *testing.T) {
	p := newProbe()
	n := startNode(t, p, func(c *Config) { c.OutboundLimit = 256 << 10 })
	c := connect(t, n, 0)
	// 400 replies of 64 KiB = 25 MiB, far beyond socket buffers and the
	// limit: the worker must wait while the client does not read.
	c.Doit(1, "big", "400:65536")
	eventually(t, "a worker waiting for output room", func() bool { return n.Stats().OutputWaits > 0 })
	for i := 0; i < 400; i++ {
		if f := c.Expect(frame.TypeReply, 1); len(f.Payload) != 65536 {
			t.Fatalf("reply %d has %d bytes", i, len(f.Payload))
		}
	}
	p.waitEvent(t, "big done")
}

func TestCloseKillsWorkersAndWaits(t *testing.T) {
	p := newProbe()
	n := startNode(t, p, nil)
	c := connect(t, n, 0)
	for i := 1; i <= 10; i++ {
		c.Doit(uint64(i), "block", strconv.Itoa(i))
	}
	for i := 1; i <= 10; i++ {
		p.waitEvent(t, "block:"+strconv.Itoa(i))
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if s := n.Stats(); s.Running != 0 || s.Live != 0 || s.Killed != 10 {
		t.Fatalf("after Close running=%d live=%d killed=%d", s.Running, s.Live, s.Killed)
	}
	if err := n.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	bad := []Config{
		{},
		{Secret: []byte("s"), Window: -1},
		{Secret: []byte("s"), AckTimeout: -time.Second},
		{Secret: []byte("s"), Name: strings.Repeat("x", 256)},
		{Secret: []byte("s"), MaxPayload: -5},
		{Secret: []byte("s"), InsecurePlaintext: true, AllowedKeys: []secure.PublicKey{{1}}}, // pinning needs Noise
		{Secret: []byte("s"), MaxConnArgBytes: 1 << 20},                                      // below the 16 MiB default payload
		{Secret: []byte("s"), MaxPayload: 4096, MaxPartialBytes: 4095},
		{Secret: []byte("s"), OutboundLimit: 1 << 20, MaxPayload: 1 << 20, MaxOutputBytes: 4<<20 - 1}, // below twice the 2 MiB one connection may hold
		{Secret: []byte("s"), MaxOutputBytes: -1},
	}
	for i, cfg := range bad {
		if err := cfg.Validate(); !errors.Is(err, ErrConfig) {
			t.Errorf("config %d: err %v, want ErrConfig", i, err)
		}
	}
	if _, err := New(Config{Secret: []byte("s")}); err != nil {
		t.Errorf("minimal config refused: %v", err)
	}
	if c := (Config{Secret: []byte("s"), MaxPayload: 100 << 20}).withDefaults(); c.MaxConnArgBytes < c.MaxPayload || c.MaxPartialBytes < c.MaxPayload {
		t.Errorf("defaults below a raised MaxPayload: args %d, partial %d", c.MaxConnArgBytes, c.MaxPartialBytes)
	}
	if c := (Config{Secret: []byte("s"), OutboundLimit: 1 << 30}).withDefaults(); c.MaxOutputBytes < c.OutboundHardLimit {
		t.Errorf("default MaxOutputBytes %d below a raised hard limit %d", c.MaxOutputBytes, c.OutboundHardLimit)
	}
}

func TestListenErrorIsReported(t *testing.T) {
	a := startNode(t, newProbe(), nil)
	b, err := New(Config{Secret: testSecret, Addr: a.Addr(), Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	// gnet listens with SO_REUSEPORT; a second listener on the same port
	// may succeed. Either way nothing may hang or panic.
	if err := b.Start(); err != nil && !strings.Contains(err.Error(), a.Addr()) {
		t.Fatalf("listen error %q does not name the address", err)
	}
}

func TestDrainRefusesWorkAndWaitsForWorkers(t *testing.T) {
	p := newProbe()
	n := startNode(t, p, nil)
	c := connect(t, n, 0)
	c.Doit(1, "block", "x")
	p.waitEvent(t, "block:x")
	drained := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		drained <- n.Drain(ctx)
	}()
	eventually(t, "node draining", n.Draining)
	c.Doit(2, "echo", "late")
	if x := parseExit(t, c.Expect(frame.TypeExit, 2)); x.Kind != frame.ExitShuttingDown {
		t.Fatalf("EXIT kind %v, want shutting down", x.Kind)
	}
	late := dialRaw(t, n.Addr())
	late.Write(frame.AppendHello(nil, frame.Hello{Version: frame.Version, MaxPayload: 1024}))
	late.ExpectClosedWith(frame.CodeShuttingDown)
	c.KillAll(1) // the running worker ends: the drain completes
	select {
	case err := <-drained:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(waitFor):
		t.Fatal("Drain did not return after the last worker ended")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	c.Doit(3, "block", "y") // refused, so nothing live: Drain returns at once
	if err := n.Drain(ctx); err != nil {
		t.Fatalf("second Drain: %v", err)
	}
}

// Frames split at every byte boundary across writes must reassemble:
// a read holding only part of a frame keeps it for the next read.
func TestFramesSplitAcrossReads(t *testing.T) {
	n := startNode(t, newProbe(), nil)
	c := connect(t, n, frame.FeatureChecksum)
	var b []byte
	for ref := uint64(1); ref <= 20; ref++ {
		b = c.Enc.AppendDoit(b, ref, frame.Doit{Handler: []byte("echo"), Args: []byte(strings.Repeat("x", int(ref)*7))})
	}
	for i := range b { // one byte per write, each flushed on its own
		c.Write(b[i : i+1])
		if i%50 == 0 {
			time.Sleep(time.Millisecond) // let the node see a partial frame alone
		}
	}
	seen := map[uint64]bool{}
	for len(seen) < 20 { // jobs run concurrently: replies come in any order
		f := c.Next()
		if f.Type != frame.TypeReply || len(f.Payload) != int(f.Ref)*7 || seen[f.Ref] {
			t.Fatalf("got %s ref %d with %d bytes", f.Type, f.Ref, len(f.Payload))
		}
		seen[f.Ref] = true
	}
}

// A KILL_ALL longer than the tombstone bound leaves tombstones for its
// last refs only (adding past the bound drops the oldest, so the earlier
// ones are not tombstoned at all), and still kills every live job it
// names, wherever in the list.
func TestLongKillAllTombstonesItsLastRefs(t *testing.T) {
	p := newProbe()
	n := startNode(t, p, func(c *Config) { c.MaxTombstones = 16 }) // a connection holds 4
	c := connect(t, n, 0)
	c.Doit(1, "block", "a")
	p.waitEvent(t, "block:a")
	refs := []uint64{1}
	for r := uint64(10); r < 20; r++ {
		refs = append(refs, r)
	}
	c.KillAll(refs...)
	if err := p.waitCause(t); !errors.Is(err, ErrKilled) {
		t.Fatalf("live worker stopped with %v, want ErrKilled", err)
	}
	c.Doit(15, "echo", "not tombstoned") // before the last four
	c.Expect(frame.TypeReply, 15)
	for r := uint64(16); r < 20; r++ {
		c.Doit(r, "echo", "tombstoned")
	}
	c.Doit(20, "echo", "after")
	c.Expect(frame.TypeReply, 20)
	if s := n.Stats(); s.Tombstoned != 4 || s.Tombstones != 0 || s.Killed != 1 {
		t.Fatalf("tombstoned %d, held %d, killed %d; want 4, 0, 1", s.Tombstoned, s.Tombstones, s.Killed)
	}
}
