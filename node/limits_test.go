package node

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/s2"
	"github.com/rexi-go/rexi/frame"
	"github.com/rexi-go/rexi/internal/wiretest"
)

func heapInUse() int64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapInuse)
}

// A peer that writes 100 MiB of echo DOITs and HEARTBEATs and reads
// nothing: every answer passes the output gate, so the node's heap stays
// within the hard limit plus a small constant; the peer gets ERROR
// OUTPUT_OVERFLOW (once it reads), and another connection is served all
// along.
func TestNeverReadingPeerOverflows(t *testing.T) {
	const limit = 1 << 20 // hard limit 2 MiB
	n := startLoopNode(t, func(c *Config) { c.OutboundLimit = limit })
	good := connect(t, n, 0)
	peer := connect(t, n, 0)
	runtime.GC()
	base := heapInUse()

	var peak atomic.Int64
	stop := make(chan struct{})
	var sampler, writer sync.WaitGroup
	sampler.Add(1)
	writer.Add(1)
	go func() { // heap sampler
		defer sampler.Done()
		for {
			peak.Store(max(peak.Load(), heapInUse()))
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	var sent atomic.Int64
	go func() { // the greedy peer: writes until the node closes on it
		defer writer.Done()
		args := bytes.Repeat([]byte("x"), 64<<10)
		var buf []byte
		for ref := uint64(1); sent.Load() < 100<<20; ref++ {
			buf = peer.Enc.AppendDoit(buf[:0], ref, frame.Doit{Handler: []byte("lecho"), Args: args})
			buf = peer.Enc.AppendEmpty(buf, frame.TypeHeartbeat, ref)
			_ = peer.NC.SetWriteDeadline(time.Now().Add(waitFor))
			if _, err := peer.NC.Write(buf); err != nil {
				return
			}
			sent.Add(int64(len(buf)))
		}
	}()
	for i := uint64(1); n.Stats().Overflows == 0; i++ { // served meanwhile
		good.Doit(i, "lecho", "still served")
		good.Expect(frame.TypeReply, i)
		if i > 100_000 {
			t.Fatal("the greedy peer never overflowed")
		}
	}
	writer.Wait() // 100 MiB went (the overflowed node drops them), or the node closed
	close(stop)
	sampler.Wait()
	good.Doit(1<<40, "lecho", "after")
	good.Expect(frame.TypeReply, 1<<40)

	// The peer reads at last: the answers up to the bound, then the ERROR.
	code := readUntilError(t, peer)
	if code != frame.CodeOutputOverflow {
		t.Fatalf("peer got ERROR %v, want OUTPUT_OVERFLOW", code)
	}
	grew := peak.Load() - base
	const constant = 8 << 20
	t.Logf("peer wrote %d MiB; node heap peaked %.1f MiB above its start (hard limit %d MiB)", sent.Load()>>20, float64(grew)/(1<<20), 2*limit>>20)
	if grew > 2*limit+constant {
		t.Fatalf("heap grew by %d MiB, bound %d MiB + %d MiB", grew>>20, 2*limit>>20, constant>>20)
	}
}

// TestOverflowedPeerStillSendingGetsTheError: a peer with a small window
// sends HEARTBEATs and reads nothing until the node gave up on it; its
// bytes the node has not read yet are still in the node's socket. The peer
// then reads the echoes the node queued, the ERROR OUTPUT_OVERFLOW and the
// connection's orderly end. Closing with input unread reset the
// connection, and the reset made the peer's kernel drop what the peer had
// not read: the ERROR first.
func TestOverflowedPeerStillSendingGetsTheError(t *testing.T) {
	n := startLoopNode(t, func(c *Config) { c.OutboundLimit, c.OutboundHardLimit = 2048, 4096 })
	peer := wiretest.DialReadBuffer(t, n.Addr(), 4096)
	peer.Handshake(testSecret, 0)
	var beats []byte
	for ref := uint64(1); ref <= 5000; ref++ {
		beats = peer.Enc.AppendEmpty(beats, frame.TypeHeartbeat, ref)
	}
	_ = peer.NC.SetWriteDeadline(time.Now().Add(waitFor))
	if _, err := peer.NC.Write(beats); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the node to give up on the peer", func() bool { return n.Stats().Overflows == 1 })
	if code := readUntilError(t, peer); code != frame.CodeOutputOverflow {
		t.Fatalf("peer got ERROR %v, want OUTPUT_OVERFLOW", code)
	}
}

// readUntilError skips answers until the ERROR, and returns its code.
func readUntilError(t *testing.T, c *rawClient) frame.ErrorCode {
	t.Helper()
	for {
		f, err := c.ReadFrame(waitFor)
		if err != nil {
			t.Fatalf("no ERROR before %v", err)
		}
		if f.Type == frame.TypeError {
			code, _, _ := frame.ParseError(f.Payload)
			if _, err := c.ReadFrame(waitFor); err != io.EOF && !errors.Is(err, io.ErrUnexpectedEOF) {
				var ne interface{ Timeout() bool }
				if errors.As(err, &ne) && ne.Timeout() {
					t.Fatal("the connection stayed open after the ERROR")
				}
			}
			return code
		}
	}
}

// Live jobs are capped per connection and per node: a DOIT over a cap is
// answered at once with EXIT OVERLOADED and never started; replies
// computed on the loop are never live and always served.
func TestLiveJobCaps(t *testing.T) {
	p := newProbe()
	n := startNode(t, p, func(c *Config) { c.MaxConnJobs = 3; c.MaxJobs = 5 })
	n.HandleReply("lecho", func(args, nonce, dst []byte) ([]byte, error) { return append(dst, args...), nil })
	a := connect(t, n, 0)
	for ref := uint64(1); ref <= 3; ref++ {
		a.Doit(ref, "block", "a")
		p.waitEvent(t, "block:a")
	}
	a.Doit(4, "block", "a")
	if x := parseExit(t, a.Expect(frame.TypeExit, 4)); x.Kind != frame.ExitOverloaded {
		t.Fatalf("EXIT %v %q, want overloaded (connection cap)", x.Kind, x.Reason)
	}
	a.Doit(5, "lecho", "loop replies are never live")
	a.Expect(frame.TypeReply, 5)

	b := connect(t, n, 0)
	b.Doit(1, "block", "b")
	b.Doit(2, "block", "b")
	p.waitEvent(t, "block:b")
	p.waitEvent(t, "block:b")
	b.Doit(3, "block", "b")
	if x := parseExit(t, b.Expect(frame.TypeExit, 3)); x.Kind != frame.ExitOverloaded {
		t.Fatalf("EXIT %v %q, want overloaded (node cap)", x.Kind, x.Reason)
	}
	a.KillAll(1)
	p.waitCause(t)
	b.Doit(4, "block", "b") // room again
	p.waitEvent(t, "block:b")
	if s := n.Stats(); s.Overloaded != 2 || s.Started != 7 || s.Live != 5 { // started: 6 blocks and the loop reply
		t.Fatalf("overloaded %d, started %d, live %d; want 2, 7, 5", s.Overloaded, s.Started, s.Live)
	}
}

// What live jobs hold of their DOITs (nonce and args, kept for the job's
// life) is capped per connection and per node: a few compressed DOITs
// could otherwise pin gigabytes.
func TestArgBytesCaps(t *testing.T) {
	p := newProbe()
	n := startNode(t, p, func(c *Config) { c.MaxPayload = 2048; c.MaxConnArgBytes = 3000; c.MaxArgBytes = 5000 })
	a := connect(t, n, 0)
	big := strings.Repeat("x", 1000-len("nonce-1")) // 1000 bytes held with the nonce
	for ref := uint64(1); ref <= 3; ref++ {
		a.Doit(ref, "block", big)
		p.waitEvent(t, "block:"+big)
	}
	a.Doit(4, "block", "y") // one byte over the connection's cap
	if x := parseExit(t, a.Expect(frame.TypeExit, 4)); x.Kind != frame.ExitOverloaded || !strings.Contains(string(x.Reason), "connection") {
		t.Fatalf("EXIT %v %q, want overloaded (connection cap)", x.Kind, x.Reason)
	}
	b := connect(t, n, 0)
	b.Doit(1, "block", big)
	b.Doit(2, "block", big)
	p.waitEvent(t, "block:"+big)
	p.waitEvent(t, "block:"+big)
	b.Doit(3, "block", "y")
	if x := parseExit(t, b.Expect(frame.TypeExit, 3)); x.Kind != frame.ExitOverloaded || !strings.Contains(string(x.Reason), "node") {
		t.Fatalf("EXIT %v %q, want overloaded (node cap)", x.Kind, x.Reason)
	}
	if s := n.Stats(); s.ArgBytes != 5000 || s.Overloaded != 2 {
		t.Fatalf("arg bytes %d, overloaded %d; want 5000 and 2", s.ArgBytes, s.Overloaded)
	}
	a.KillAll(1)
	p.waitCause(t)
	b.Doit(3, "block", big) // room again
	p.waitEvent(t, "block:"+big)
	b.NC.Close()
	a.NC.Close()
	eventually(t, "every job gone and its bytes given back", func() bool {
		s := n.Stats()
		return s.Live == 0 && s.ArgBytes == 0
	})
}

// Connections in the handshake are capped: one more is refused at once
// with ERROR OVERLOADED, and a slot frees when a handshake completes.
func TestHandshakeCap(t *testing.T) {
	n := startNode(t, newProbe(), func(c *Config) { c.MaxHandshakes = 2 })
	first := dialRaw(t, n.Addr())
	_ = dialRaw(t, n.Addr())
	eventually(t, "2 connections in the handshake", func() bool { return n.Stats().Handshaking == 2 })
	extra := dialRaw(t, n.Addr())
	extra.ExpectClosedWith(frame.CodeOverloaded)
	first.Handshake(testSecret, 0)
	eventually(t, "a slot freed", func() bool { return n.Stats().Handshaking == 1 })
	servedAfterOneRefusal(t, n)
}

// servedAfterOneRefusal checks that a coordinator connecting now, a slot
// having freed, is served, and that one connection was refused at accept.
func servedAfterOneRefusal(t *testing.T, n *Node) {
	t.Helper()
	late := connect(t, n, 0)
	late.Doit(1, "echo", "in")
	late.Expect(frame.TypeReply, 1)
	if s := n.Stats(); s.HandshakeRefusals != 1 {
		t.Fatalf("refusals at accept %d, want 1", s.HandshakeRefusals)
	}
}

// Connections in the handshake are capped per source address too: one
// host's half-open connections leave room for others.
func TestSourceHandshakeCap(t *testing.T) {
	n := startNode(t, newProbe(), func(c *Config) { c.MaxSourceHandshakes = 2 })
	first := wiretest.DialFrom(t, n.Addr(), "127.0.0.1")
	_ = wiretest.DialFrom(t, n.Addr(), "127.0.0.1")
	eventually(t, "2 connections in the handshake", func() bool { return n.Stats().Handshaking == 2 })
	extra := wiretest.DialFrom(t, n.Addr(), "127.0.0.1")
	if msg := extra.ExpectClosedWith(frame.CodeOverloaded); !strings.Contains(msg, "from 127.0.0.1") {
		t.Fatalf("refused with %q", msg)
	}
	other := wiretest.DialFrom(t, n.Addr(), "127.0.0.2") // another host is let in
	other.Handshake(testSecret, 0)
	other.Doit(1, "echo", "in")
	other.Expect(frame.TypeReply, 1)
	first.Handshake(testSecret, 0)
	eventually(t, "a slot of 127.0.0.1 freed", func() bool { return n.Stats().Handshaking == 1 })
	servedAfterOneRefusal(t, n)
}

// Open connections are capped, authenticated or not: one more is refused
// at accept with ERROR OVERLOADED, and a slot frees when one closes.
func TestConnCap(t *testing.T) {
	n := startNode(t, newProbe(), func(c *Config) { c.MaxConns = 2 })
	first := connect(t, n, 0)
	_ = dialRaw(t, n.Addr()) // in the handshake: it counts too
	eventually(t, "2 connections open", func() bool { return n.Stats().Open == 2 })
	extra := dialRaw(t, n.Addr())
	msg := extra.ExpectClosedWith(frame.CodeOverloaded)
	if !strings.Contains(msg, "2 connections are open") {
		t.Fatalf("refused with %q", msg)
	}
	first.NC.Close()
	eventually(t, "a slot freed", func() bool { return n.Stats().Open == 1 })
	servedAfterOneRefusal(t, n)
}

// The handshake timeout alone governs a connection until it has
// authenticated: a shorter idle timeout does not pre-empt it.
func TestHandshakeTimeoutIndependentOfIdleTimeout(t *testing.T) {
	n := startNode(t, newProbe(), func(c *Config) {
		c.HandshakeTimeout = 300 * time.Millisecond
		c.IdleTimeout = 20 * time.Millisecond
	})
	c := dialRaw(t, n.Addr())
	msg := c.ExpectClosedWith(frame.CodeBadHandshake)
	if !bytes.Contains([]byte(msg), []byte("handshake not completed")) {
		t.Fatalf("closed with %q", msg)
	}
}

// A coordinator announcing the smallest max_payload (64) still gets a
// panicking job's EXIT, cut to fit, and keeps its connection.
func TestExitFitsTheSmallestMaxPayload(t *testing.T) {
	n := startNode(t, newProbe(), nil)
	c := dialRaw(t, n.Addr())
	c.HandshakeHello(testSecret, frame.Hello{Version: frame.Version, MaxPayload: frame.MinMaxPayload})
	c.Doit(1, "crash", "")
	f := c.Expect(frame.TypeExit, 1)
	if x := parseExit(t, f); x.Kind != frame.ExitPanic || len(f.Payload) > frame.MinMaxPayload {
		t.Fatalf("EXIT %v of %d bytes, want PANIC within %d", x.Kind, len(f.Payload), frame.MinMaxPayload)
	}
	c.Doit(2, "echo", "alive")
	c.Expect(frame.TypeReply, 2)
	// ERRORs fit too.
	c.Write([]byte{0, 0, 0, 0, 0x7f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1})
	f, err := c.ReadFrame(waitFor)
	if err != nil || f.Type != frame.TypeError || len(f.Payload) > frame.MinMaxPayload {
		t.Fatalf("ERROR of %d bytes (%v), want at most %d", len(f.Payload), err, frame.MinMaxPayload)
	}
	// Below the minimum is refused.
	low := dialRaw(t, n.Addr())
	low.Write(frame.AppendHello(nil, frame.Hello{Version: frame.Version, MaxPayload: frame.MinMaxPayload - 1}))
	low.ExpectClosedWith(frame.CodeBadHandshake)
}

// A coordinator that announced a heartbeat interval and then goes silent
// (frozen: neither reading nor writing, socket open) loses its workers
// after a few missed heartbeats, long before the 30 s idle timeout.
func TestSilentCoordinatorLosesItsWorkersWithinSeconds(t *testing.T) {
	p := newProbe()
	n := startNode(t, p, nil) // IdleTimeout: the 30 s default
	c := dialRaw(t, n.Addr())
	w := c.HandshakeHello(testSecret, frame.Hello{Version: frame.Version, MaxPayload: frame.DefaultMaxPayload, HeartbeatMs: 100})
	if w.LivenessMs != 1000 || w.Window != DefaultWindow {
		t.Fatalf("WELCOME liveness %d ms, window %d; want 1000 (4 × 100 ms, at least 1 s) and %d", w.LivenessMs, w.Window, DefaultWindow)
	}
	c.Doit(1, "block", "frozen")
	p.waitEvent(t, "block:frozen")
	start := time.Now()
	if err := p.waitCause(t); !errors.Is(err, ErrKilled) { // within waitFor (10 s), far below 30 s
		t.Fatalf("worker stopped by %v, want killed", err)
	}
	t.Logf("worker killed %v after the coordinator went silent", time.Since(start).Round(time.Millisecond))
	c.ExpectClosedWith(frame.CodeIdleTimeout)
}

// The node's name defaults to its address, set before any connection
// reads it (the race detector watches this).
func TestNameDefaultsToTheAddress(t *testing.T) {
	n := startNode(t, newProbe(), func(c *Config) { c.Name = "" })
	c := dialRaw(t, n.Addr())
	if w := c.Handshake(testSecret, 0); string(w.Name) != n.Addr() || n.Name() != n.Addr() {
		t.Fatalf("WELCOME name %q, Name() %q, want %q", w.Name, n.Name(), n.Addr())
	}
}

// A burst's output buffer is not kept for the connection's life.
func TestOutputBufferGivenBackAfterABurst(t *testing.T) {
	n := startLoopNode(t, nil)
	c := connect(t, n, 0)
	c.Doit(1, "lecho", string(bytes.Repeat([]byte("b"), 4<<20)))
	c.Expect(frame.TypeReply, 1)
	for ref := uint64(2); ref < 5; ref++ {
		c.Doit(ref, "lecho", "small")
		c.Expect(frame.TypeReply, ref)
	}
	conns := n.connList()
	if len(conns) != 1 {
		t.Fatalf("%d connections", len(conns))
	}
	conns[0].mu.Lock()
	size := cap(conns[0].out)
	conns[0].mu.Unlock()
	if size > keepBuffer {
		t.Fatalf("output buffer kept %d bytes after the burst", size)
	}
}

// Connections let into the handshake are capped per second too: past the
// burst, one more is refused at once with ERROR OVERLOADED.
func TestHandshakeRate(t *testing.T) {
	n := startNode(t, newProbe(), func(c *Config) { c.MaxHandshakeRate = 1 })
	refused := 0
	for i := range 5 {
		c := dialRaw(t, n.Addr())
		eventually(t, "the connection admitted or refused", func() bool {
			s := n.Stats()
			return s.Handshaking+int64(s.HandshakeRefusals) == int64(i+1)
		})
		if int(n.Stats().HandshakeRefusals) > refused {
			refused++
			if msg := c.ExpectClosedWith(frame.CodeOverloaded); !strings.Contains(msg, "handshakes a second") {
				t.Fatalf("refusal %q", msg)
			}
		}
	}
	// The first fits the burst of one; five dials cannot all be a second apart.
	if refused == 0 || refused == 5 {
		t.Fatalf("%d of 5 connections refused at 1 handshake a second", refused)
	}
}

func TestTokenBucket(t *testing.T) {
	var b tokenBucket
	const sec = int64(time.Second)
	now := 10 * sec
	for i := range 3 {
		if !b.take(now, 3) {
			t.Fatalf("take %d of a burst of 3 refused", i)
		}
	}
	if b.take(now, 3) {
		t.Fatal("a fourth take in the same instant admitted")
	}
	if !b.take(now+sec/3+1, 3) || b.take(now+sec/3+1, 3) {
		t.Fatal("a third of a second should refill one token at 3 a second")
	}
	if !b.take(now+100*sec, 3) || !b.take(now+100*sec, 3) || !b.take(now+100*sec, 3) || b.take(now+100*sec, 3) {
		t.Fatal("a long pause refills to the burst, not beyond")
	}
}

// An answer larger than the hard limit still goes out when nothing else
// is queued: a coordinator that reads is never cut off for one reply of
// the largest payload it accepts.
func TestLoneAnswerLargerThanTheHardLimit(t *testing.T) {
	const size = 3 << 20
	n := startLoopNode(t, func(c *Config) { c.OutboundLimit = 1 << 20; c.MaxPayload = 4 << 20 }) // hard limit 2 MiB
	c := connect(t, n, 0)
	c.Dec.MaxPayload = 4 << 20
	c.Doit(1, "lecho", strings.Repeat("e", size))
	if f := c.Expect(frame.TypeReply, 1); len(f.Payload) != size {
		t.Fatalf("reply of %d bytes, want %d", len(f.Payload), size)
	}
	if s := n.Stats(); s.Overflows != 0 {
		t.Fatalf("%d overflows, want none", s.Overflows)
	}
}

// Frames still arriving are held until whole: their bytes are capped for
// the whole node. An honest burst over the cap is refused its newest
// frame (OVERLOADED); a frame that has stalled — no 64 KiB of progress
// for partialStall — gives way to one that grows, so peers pinning frames
// half-sent cannot lock out every connection whose read ends mid-frame.
func TestPartialFramesCapped(t *testing.T) {
	n, doit := partialNode(t)
	held := partialHeld(t, n)
	six := len(doit) * 6 / 10
	n.partialStall.Store(int64(time.Hour)) // however slow the test, a's frame is not stalled
	a, b := connectBig(t, n), connectBig(t, n)
	a.Write(doit[:six])
	held("a's partial frame counted", six)
	b.Write(doit[:six]) // together over the cap, a's not stalled: b is refused
	b.ExpectClosedWith(frame.CodeOverloaded)
	servedBig(t, a, doit[six:])
	held("nothing held", 0)

	n.partialStall.Store(int64(partialStall))
	c, d := connectBig(t, n), connectBig(t, n)
	c.Write(doit[:six])
	held("c's partial frame counted", six)
	time.Sleep(2 * partialStall) // c's frame stalls
	c.Write(doit[six : six+1])   // a byte is no progress
	held("c's byte counted", six+1)
	d.Write(doit[:six]) // over the cap: c's frame has stalled, c goes
	c.ExpectClosedWith(frame.CodeOverloaded)
	servedBig(t, d, doit[six:])
	held("nothing held at the end", 0)
	if s := n.Stats(); s.PartialShed != 2 {
		t.Fatalf("PartialShed %d, want 2 (b refused, c ended)", s.PartialShed)
	}
}

// Of two stalled frames, the one holding six times the bytes for about
// as long goes, not the older small one: a frame's cost is its bytes
// times the time since its last progress.
func TestPartialFramesShedTheCostliest(t *testing.T) {
	n, doit := partialNode(t)
	held := partialHeld(t, n)
	slow, pinned, next := connectBig(t, n), connectBig(t, n), connectBig(t, n)
	one, six, five := len(doit)/10, len(doit)*6/10, len(doit)*5/10
	t0 := time.Now()
	slow.Write(doit[:one])
	held("the slow frame counted", one)
	pinned.Write(doit[:six])
	held("the pinned frame counted", one+six)
	// Both stall, the pinned one for at least half as long as the slow
	// one, whatever the scheduling: it then costs at least three times as
	// much.
	time.Sleep(max(time.Since(t0), 2*partialStall))
	next.Write(doit[:five])
	pinned.ExpectClosedWith(frame.CodeOverloaded)
	servedBig(t, next, doit[five:])
	servedBig(t, slow, doit[one:])
	held("nothing held", 0)
}

// partialNode starts a node whose frames still arriving are capped at
// 1 MiB, and returns a DOIT of about 900 KiB for it.
func partialNode(t *testing.T) (*Node, []byte) {
	const limit = 1 << 20
	n := startLoopNode(t, func(c *Config) { c.MaxPartialBytes = limit; c.MaxPayload = limit })
	var enc frame.Encoder
	return n, enc.AppendDoit(nil, 1, frame.Doit{Handler: []byte("lecho"), Args: bytes.Repeat([]byte("a"), bigArgs)})
}

const bigArgs = 900 << 10

func partialHeld(t *testing.T, n *Node) func(what string, want int) {
	return func(what string, want int) {
		t.Helper()
		eventually(t, what, func() bool { return n.Stats().PartialBytes == int64(want) })
	}
}

// connectBig connects a client that accepts partialNode's replies.
func connectBig(t *testing.T, n *Node) *rawClient {
	c := connect(t, n, 0)
	c.Dec.MaxPayload = 1 << 20
	return c
}

// servedBig sends the rest of partialNode's DOIT and expects its reply.
func servedBig(t *testing.T, c *rawClient, rest []byte) {
	t.Helper()
	c.Write(rest)
	if f := c.Expect(frame.TypeReply, 1); len(f.Payload) != bigArgs {
		t.Fatalf("reply of %d bytes", len(f.Payload))
	}
}

// What a connection's compressed frames decode to is bounded all
// together (64 times the compressed bytes, plus 32 MiB): one frame that
// compresses 20 000 times is taken, a stream of them ends the connection
// with MALFORMED before it costs the node more, and others are served.
func TestCompressionBombsEndTheConnection(t *testing.T) {
	n := startNode(t, newProbe(), nil)
	good := connect(t, n, 0)
	c := connect(t, n, frame.FeatureCompression)
	var enc frame.Encoder
	dec := frame.Decoder{MaxPayload: 2 << 20}
	f, _, err := dec.Decode(enc.AppendDoit(nil, 1, frame.Doit{Handler: []byte("nosuch"), Args: make([]byte, 1<<20)}))
	if err != nil {
		t.Fatal(err)
	}
	f.Flags, f.Payload = frame.FlagCompressed, s2.Encode(nil, f.Payload) // 1 MiB in a few dozen bytes
	bomb := frame.AppendRaw(nil, f)
	c.Write(bomb)
	if x := parseExit(t, c.Expect(frame.TypeExit, 1)); x.Kind != frame.ExitUnknownHandler {
		t.Fatalf("EXIT %v, want the one bomb decoded and answered", x.Kind)
	}
	for ref := uint64(2); ref <= 40; ref++ {
		binary.BigEndian.PutUint64(bomb[8:], ref)
		c.Out = append(c.Out, bomb...)
	}
	c.Send()
	for {
		g := c.Next()
		if g.Type == frame.TypeError {
			if code, _, _ := frame.ParseError(g.Payload); code != frame.CodeMalformed {
				t.Fatalf("ERROR %v, want MALFORMED", code)
			}
			break
		}
		if g.Type != frame.TypeExit || g.Ref > 34 {
			t.Fatalf("%s for ref %d: the budget (32 MiB and 64 times what came) was passed", g.Type, g.Ref)
		}
	}
	good.Doit(1, "echo", "still served")
	good.Expect(frame.TypeReply, 1)
}

// Output held for peers is bounded node-wide: when a write takes the total
// past MaxOutputBytes, the connection holding the most (a peer that asks
// and does not read) ends at once, whichever connection's write went
// over, and the others are served all along.
func TestOutputBudgetShedsTheLargestHolder(t *testing.T) {
	const limit = 1 << 20  // hard limit 2 MiB per connection
	const budget = 6 << 20 // counted as twice the bytes held
	n := startLoopNode(t, func(c *Config) { c.OutboundLimit, c.MaxPayload, c.MaxOutputBytes = limit, limit, budget })
	good, greedy, other := connect(t, n, 0), connect(t, n, 0), connect(t, n, 0)
	ask := unreadEchoes(t, n)
	// The greedy peer gets the node to hold 1.75 MiB for it, under its own
	// hard limit; once its sockets are full, each echo adds 64 KiB.
	ref := uint64(1)
	for ; n.Stats().OutputBytes < 2*7*limit/4; ref++ {
		ask(greedy, ref)
		if ref > 10_000 {
			t.Fatal("the node never held output for the greedy peer")
		}
	}
	// Another peer asks without reading until the node is over its budget:
	// that write goes over, but the greedy peer holds more.
	asked := 0
	for n.Stats().Shed == 0 {
		asked++
		ask(other, uint64(asked))
		if asked > 10_000 {
			t.Fatal("the node never shed output")
		}
	}
	for {
		f, err := greedy.ReadFrame(waitFor)
		if err != nil {
			if err != io.EOF && !wiretest.IsReset(err) {
				t.Fatalf("the greedy peer was not closed: %v", err)
			}
			break
		}
		if f.Type == frame.TypeError {
			if code, _, _ := frame.ParseError(f.Payload); code != frame.CodeOutputOverflow {
				t.Fatalf("greedy peer got ERROR %v, want OUTPUT_OVERFLOW", code)
			}
		}
	}
	good.Doit(1, "lecho", "served")
	good.Expect(frame.TypeReply, 1)
	for i := 1; i <= asked; i++ { // the connection whose write went over lost nothing
		if f := other.Expect(frame.TypeReply, uint64(i)); len(f.Payload) != 64<<10 {
			t.Fatalf("reply %d has %d bytes", i, len(f.Payload))
		}
	}
	eventually(t, "the shed output given back", func() bool { return n.Stats().OutputBytes <= budget })
	if s := n.Stats(); s.Shed != 1 || s.Overflows != 1 {
		t.Fatalf("shed %d, overflows %d; want 1, 1", s.Shed, s.Overflows)
	}
}

// unreadEchoes returns a function that sends one 64 KiB echo DOIT on a
// connection that does not read, and waits until the node has read it.
func unreadEchoes(t *testing.T, n *Node) func(c *rawClient, ref uint64) {
	args := strings.Repeat("x", 64<<10)
	in := n.Stats().BytesIn
	return func(c *rawClient, ref uint64) {
		c.Doit(ref, "lecho", args)
		in += uint64(len(c.Enc.AppendDoit(nil, ref, frame.Doit{Handler: []byte("lecho"), Nonce: []byte("nonce-1"), Args: []byte(args)})))
		eventually(t, "the DOIT read", func() bool { return n.Stats().BytesIn >= in })
	}
}

// A connection already ending after passing its own hard limit (it
// lingers, holding its output, for its peer to read the ERROR) is the
// first the output budget ends, at once, and counted once.
func TestOutputBudgetEndsALingeringConnectionOnce(t *testing.T) {
	const limit = 1 << 20 // hard limit 2 MiB per connection
	n := startLoopNode(t, func(c *Config) { c.OutboundLimit, c.MaxPayload, c.MaxOutputBytes = limit, limit, 6<<20 })
	lingering, other := connect(t, n, 0), connect(t, n, 0)
	ask := unreadEchoes(t, n)
	for ref := uint64(1); n.Stats().Overflows == 0; ref++ {
		ask(lingering, ref)
		if ref > 10_000 {
			t.Fatal("never overflowed")
		}
	}
	for ref := uint64(1); n.Stats().Open == 2; ref++ { // until the budget ends the lingering one
		ask(other, ref)
		if n.Stats().Overflows > 1 || ref > 10_000 {
			t.Fatalf("the lingering connection was not shed: %+v", n.Stats())
		}
	}
	if s := n.Stats(); s.Overflows != 1 || s.Shed != 0 {
		t.Fatalf("overflows %d, shed %d; want 1, 0", s.Overflows, s.Shed)
	}
}

// The output budget counts what gnet held at a connection's last write,
// and gnet drains a reader's output without telling: a connection chosen
// for holding the most is ended only if its own loop, re-reading, finds
// it still holds it. A peer that fell behind and then read everything is
// spared, and the ones that do not read are ended, largest first.
func TestOutputBudgetSparesAPeerThatRead(t *testing.T) {
	const limit = 1 << 20 // hard limit 2 MiB per connection
	n := startLoopNode(t, func(c *Config) { c.OutboundLimit, c.MaxPayload, c.MaxOutputBytes = limit, limit, 6<<20 })
	caughtUp, greedy, other := connect(t, n, 0), connect(t, n, 0), connect(t, n, 0)
	ask := unreadEchoes(t, n)
	asked := uint64(0)
	for n.Stats().OutputBytes < 2*7*limit/4 { // it falls 1.75 MiB behind...
		asked++
		ask(caughtUp, asked)
	}
	for i := uint64(1); i <= asked; i++ { // ...and reads it all, then says nothing
		caughtUp.Expect(frame.TypeReply, i)
	}
	// The greedy peer takes the node over the budget while the count
	// still has the one that caught up at 1.75 MiB: that one is chosen,
	// found empty and spared.
	stale := n.Stats().OutputBytes // the caught-up peer's, as of its last write
	for ref := uint64(1); ; ref++ {
		ask(greedy, ref)
		s := n.Stats()
		if s.OutputBytes < stale { // its loop re-read it
			stale = 0
		}
		if s.OutputBytes-stale >= 2*7*limit/4 { // greedy is 1.75 MiB behind
			break
		}
		if s.Overflows > 0 || ref > 10_000 {
			t.Fatalf("ended a connection: %+v", s)
		}
	}
	if stale != 0 {
		t.Fatal("the budget never chose the peer that had caught up")
	}
	for ref := uint64(1); n.Stats().Shed == 0; ref++ { // then another takes it over: greedy goes
		ask(other, ref)
		if ref > 10_000 {
			t.Fatalf("never shed: %+v", n.Stats())
		}
	}
	for { // greedy's replies, then the end
		if _, err := greedy.ReadFrame(waitFor); err != nil {
			break
		}
	}
	caughtUp.Doit(asked+1, "lecho", "still here")
	caughtUp.Expect(frame.TypeReply, asked+1)
	if s := n.Stats(); s.Shed != 1 || s.Overflows != 1 {
		t.Fatalf("shed %d, overflows %d; want 1, 1", s.Shed, s.Overflows)
	}
}
