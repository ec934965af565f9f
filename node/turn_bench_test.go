package node

import (
	"log/slog"
	"net"
	"testing"

	"github.com/panjf2000/gnet/v2"
	"github.com/rexi-go/rexi/frame"
)

// turnConn is the part of gnet.Conn a loop turn uses, over a fixed inbound
// buffer: the node's own work per read, with no socket or scheduler in it.
type turnConn struct {
	gnet.Conn // nil: a turn calls nothing else
	in        []byte
	wrote     int
	last      []byte // what the last Write wrote (the node reuses it)
	keep      bool   // keep everything written in out (the fuzzer's check)
	out       []byte
}

func (t *turnConn) InboundBuffered() int       { return len(t.in) }
func (t *turnConn) Peek(int) ([]byte, error)   { return t.in, nil }
func (t *turnConn) Discard(n int) (int, error) { return n, nil }
func (t *turnConn) Write(p []byte) (int, error) {
	t.wrote += len(p)
	t.last = p
	if t.keep {
		t.out = append(t.out, p...)
	}
	return len(p), nil
}
func (t *turnConn) OutboundBuffered() int         { return 0 }
func (t *turnConn) Wake(gnet.AsyncCallback) error { return nil }
func (t *turnConn) RemoteAddr() net.Addr          { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1} }

// turnNode is a node with loop handlers echo and rows, and a connection
// to it past the handshake over a turnConn.
func turnNode(b *testing.B) (*conn, *turnConn) {
	tc := &turnConn{}
	return turnConnOf(newTurnNode(b, quietLogger()), tc, frame.FeatureRange|frame.FeatureTraceContext), tc
}

// newTurnNode is a node, never started, with loop handlers echo and rows.
func newTurnNode(tb testing.TB, log *slog.Logger) *Node {
	n, err := New(Config{Name: "n1", Secret: testSecret, Logger: log, InsecurePlaintext: true})
	if err != nil {
		tb.Fatal(err)
	}
	n.HandleReply("echo", func(args, nonce, dst []byte) ([]byte, error) { return append(dst, args...), nil })
	n.HandleStream("rows", func(args, nonce []byte) (RowSource, error) {
		count, size := parseRowsArgs(string(args))
		return &knownRows{countRows: countRows{n: count, size: size}}, nil
	})
	return n
}

// turnConnOf is a connection to n over tc, past its handshake with the
// DOIT fields fields in force.
func turnConnOf(n *Node, tc *turnConn, fields frame.Feature) *conn {
	c := newConn(n, tc)
	name := "bench"
	c.peerName.Store(&name)
	c.phase, c.peerMax, c.doitFields = phaseReady, 1<<20, fields
	c.dec = frame.Decoder{MaxPayload: 1 << 20}
	c.ready.Store(true) // past the handshake: closeAll has no handshake slot to give back
	return c
}

// runTurn is one event-loop turn that reads in; a turn that ends the
// connection fails the benchmark with the frame the node sent last.
func runTurn(b *testing.B, c *conn, tc *turnConn, in []byte) {
	tc.in = in
	if a := c.traffic(); a != gnet.None {
		var d frame.Decoder
		f, _, _ := d.Decode(tc.last)
		b.Fatalf("action %v; the node wrote %s %q", a, f.Type, f.Payload)
	}
}

// BenchmarkLoopReplyTurn: one event-loop turn that reads 64 echo DOITs (a
// W-cast node's share) and writes their 64 REPLYs, on a connection past
// its handshake. Reports ns per DOIT. The refs repeat from turn to turn:
// a reply job is never live, so that is allowed.
func BenchmarkLoopReplyTurn(b *testing.B) {
	c, tc := turnNode(b)
	enc := frame.Encoder{Doit: c.doitFields}
	const jobs = 64
	args := make([]byte, 64)
	var doits []byte
	for i := range jobs {
		doits = enc.AppendDoit(doits, uint64(i+1), frame.Doit{Handler: []byte("echo"), Nonce: []byte("nonce-12"), RangeLo: uint32(i), RangeHi: uint32(i), Args: args, TimeoutMillis: 5000})
	}
	b.ReportAllocs()
	for b.Loop() {
		runTurn(b, c, tc, doits)
	}
	if tc.wrote == 0 {
		b.Fatal("no REPLY written")
	}
	// What a turn wrote is REPLYs, not a job's ERROR each: the figure is
	// of the path it names.
	var d frame.Decoder
	if f, _, err := d.Decode(tc.last); err != nil || f.Type != frame.TypeReply {
		b.Fatalf("a turn wrote %v (%v), not REPLYs", f.Type, err)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*jobs), "ns/DOIT")
}

// BenchmarkLoopStreamTurns: a W-stream node's three turns for 64 loop
// streams of 10 rows of 100 bytes under a window of 5: the DOITs (64
// STREAM_INITs out), the STARTs (5 rows each), the ACKs (5 rows and a
// LAST each). Reports ns per job.
func BenchmarkLoopStreamTurns(b *testing.B) {
	c, tc := turnNode(b)
	enc := frame.Encoder{Doit: c.doitFields}
	const jobs = 64
	ref := uint64(0)
	var doits, starts, acks []byte
	b.ReportAllocs()
	for b.Loop() {
		doits, starts, acks = doits[:0], starts[:0], acks[:0]
		for i := 0; i < jobs; i++ {
			ref++
			doits = enc.AppendDoit(doits, ref, frame.Doit{Handler: []byte("rows"), Nonce: []byte("nonce-12"), RangeLo: uint32(i), RangeHi: uint32(i), Args: []byte("10:100"), TimeoutMillis: 5000})
			starts = enc.Append(starts, frame.TypeStart, ref, nil)
			acks = enc.AppendAck(acks, ref, 5)
		}
		runTurn(b, c, tc, doits)
		runTurn(b, c, tc, starts)
		runTurn(b, c, tc, acks)
	}
	if live := len(c.jobs); live != 0 {
		b.Fatalf("%d jobs still live after their LASTs", live)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*jobs), "ns/job")
}
