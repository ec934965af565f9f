package node

import (
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
}

func (t *turnConn) InboundBuffered() int          { return len(t.in) }
func (t *turnConn) Peek(int) ([]byte, error)      { return t.in, nil }
func (t *turnConn) Discard(n int) (int, error)    { return n, nil }
func (t *turnConn) Write(p []byte) (int, error)   { t.wrote += len(p); return len(p), nil }
func (t *turnConn) OutboundBuffered() int         { return 0 }
func (t *turnConn) Wake(gnet.AsyncCallback) error { return nil }
func (t *turnConn) RemoteAddr() net.Addr          { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1} }

// BenchmarkLoopReplyTurn: one event-loop turn that reads 64 echo DOITs (a
// W-cast node's share) and writes their 64 REPLYs, on a connection past
// its handshake. Reports ns per DOIT.
func BenchmarkLoopReplyTurn(b *testing.B) {
	n, err := New(Config{Name: "n1", Secret: testSecret, Logger: quietLogger(), InsecurePlaintext: true})
	if err != nil {
		b.Fatal(err)
	}
	n.HandleReply("echo", func(args, nonce, dst []byte) ([]byte, error) { return append(dst, args...), nil })
	tc := &turnConn{}
	c := newConn(n, tc)
	name := "bench"
	c.peerName.Store(&name)
	c.phase, c.peerMax, c.doitFields = phaseReady, 1<<20, frame.FeatureRange|frame.FeatureTraceContext
	c.dec = frame.Decoder{MaxPayload: 1 << 20}
	var enc frame.Encoder
	const jobs = 64
	args := make([]byte, 64)
	ref := uint64(0)
	fill := func() {
		tc.in = tc.in[:0]
		for i := 0; i < jobs; i++ {
			ref++
			tc.in = enc.AppendDoit(tc.in, ref, frame.Doit{Handler: []byte("echo"), Nonce: []byte("nonce-12"), RangeLo: uint32(i), RangeHi: uint32(i), Args: args, TimeoutMillis: 5000})
		}
	}
	fill()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if a := c.traffic(); a != gnet.None {
			b.Fatalf("turn %d: action %v", i, a)
		}
	}
	b.StopTimer()
	if tc.wrote == 0 {
		b.Fatal("no REPLY written")
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*jobs), "ns/DOIT")
}
