package node

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/panjf2000/gnet/v2"
	"github.com/rexi-go/rexi/frame"
	"github.com/rexi-go/rexi/secure"
)

// panicLog records the log lines a recovered panic leaves: a turn
// recovers its own panics (a bug must not take the loop down), so the
// fuzzer finds them here.
type panicLog struct {
	mu    sync.Mutex
	lines []string
}

func (p *panicLog) Enabled(context.Context, slog.Level) bool { return true }
func (p *panicLog) WithAttrs([]slog.Attr) slog.Handler       { return p }
func (p *panicLog) WithGroup(string) slog.Handler            { return p }
func (p *panicLog) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, "panic") {
		p.mu.Lock()
		p.lines = append(p.lines, r.Message)
		p.mu.Unlock()
	}
	return nil
}

func (p *panicLog) take() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	l := p.lines
	p.lines = nil
	return l
}

// decodeEach decodes b frame by frame, calling fn on each, until it ends
// or a frame does not decode (that error). Checksums start once a
// handshake negotiated them, so each frame is held to its own flag.
func decodeEach(b []byte, fn func(frame.Frame)) error {
	d := frame.Decoder{MaxPayload: 1 << 20, Compression: true}
	for len(b) > 0 {
		d.Checksum = len(b) > 5 && frame.Flags(b[5])&frame.FlagChecksum != 0
		fr, used, err := d.Decode(b)
		if err != nil {
			return err
		}
		fn(fr)
		b = b[used:]
	}
	return nil
}

// sentError says whether the coordinator's bytes hold an ERROR, which
// ends the connection with no ERROR in answer.
func sentError(in []byte) bool {
	sent := false
	_ = decodeEach(in, func(f frame.Frame) { sent = sent || f.Type == frame.TypeError })
	return sent
}

// FuzzLoopTurn feeds arbitrary bytes, as one read, to a node connection
// past its handshake (loop handlers echo and rows; byte 0 picks the DOIT
// fields in force). Properties: no panic, recovered or not; the turn goes
// on or closes; every byte the node wrote decodes as frames; a turn that
// closes the connection wrote ERROR last, unless the coordinator sent one.
func FuzzLoopTurn(f *testing.F) {
	panics := &panicLog{}
	n := newTurnNode(f, slog.New(panics))
	const fields = frame.FeatureRange | frame.FeatureTraceContext
	enc := frame.Encoder{Doit: fields}
	echo := enc.AppendDoit(nil, 1, frame.Doit{Handler: []byte("echo"), Nonce: []byte("n"), Args: []byte("a"), TimeoutMillis: 5000})
	rows := enc.AppendDoit(nil, 2, frame.Doit{Handler: []byte("rows"), Args: []byte("3:10")})
	rows = enc.Append(rows, frame.TypeStart, 2, nil)
	rows = enc.AppendAck(rows, 2, 5)
	for _, seed := range [][]byte{
		echo,
		rows,
		append(append([]byte{}, rows...), enc.AppendKillAll(nil, []uint64{1, 2})...),
		enc.Append(nil, frame.TypeCancel, 2, nil),
		enc.AppendDoit(nil, 3, frame.Doit{Handler: []byte("nope")}),
		echo[:len(echo)-1],
		{0, 0, 0, 0, 0xff},
	} {
		f.Add(byte(fields), seed)
	}
	f.Fuzz(func(t *testing.T, sel byte, in []byte) {
		tc := &turnConn{keep: true, in: in}
		c := turnConnOf(n, tc, frame.Feature(sel)&fields)
		a := c.traffic()
		c.closeAll()
		if l := panics.take(); len(l) > 0 {
			t.Fatalf("a turn panicked: %q", l)
		}
		checkWritten(t, a, tc.out, in)
	})
}

// checkWritten: a turn either goes on or closes; every byte the node
// wrote decodes as frames; a turn that closes wrote ERROR last, unless
// the coordinator's bytes in held one.
func checkWritten(t *testing.T, a gnet.Action, out, in []byte) {
	t.Helper()
	if a != gnet.None && a != gnet.Close {
		t.Fatalf("action %v", a)
	}
	var last frame.Frame
	if err := decodeEach(out, func(f frame.Frame) { last = f }); err != nil {
		t.Fatalf("the node wrote bytes that do not decode (%v): %x", err, out)
	}
	if a == gnet.Close && last.Type != frame.TypeError && !sentError(in) {
		t.Fatalf("closed after writing %v last, not ERROR", last.Type)
	}
}

// FuzzHandshakeTurn feeds arbitrary bytes, as one read, to a connection
// that has just opened, to a plaintext node or (sel odd) one that requires
// the Noise handshake. Properties as FuzzLoopTurn's; and a connection the
// turn leaves gives its handshake place back when it goes.
func FuzzHandshakeTurn(f *testing.F) {
	panics := &panicLog{}
	plain := newTurnNode(f, slog.New(panics))
	sealed, err := New(Config{Name: "n2", Secret: testSecret, Logger: slog.New(panics)})
	if err != nil {
		f.Fatal(err)
	}
	hello := frame.AppendHello(nil, frame.Hello{Version: frame.Version, MaxPayload: 1 << 20, Name: []byte("c")})
	f.Add(byte(0), hello)
	f.Add(byte(0), append(append([]byte{}, hello...), frame.AppendAuth(nil, [frame.MACSize]byte{})...))
	f.Add(byte(1), secure.NoiseFrame(nil, make([]byte, 32)))
	f.Add(byte(1), hello)
	f.Fuzz(func(t *testing.T, sel byte, in []byte) {
		n := plain
		if sel&1 != 0 {
			n = sealed
		}
		tc := &turnConn{keep: true, in: in}
		c := newConn(n, tc)
		n.mu.Lock() // as OnOpen admits it
		n.enteredHandshakeLocked(c.source)
		n.mu.Unlock()
		a := c.traffic()
		c.closeAll()
		if l := panics.take(); len(l) > 0 {
			t.Fatalf("a turn panicked: %q", l)
		}
		n.mu.Lock()
		inHS, src := n.inHS, n.sources[c.source]
		n.mu.Unlock()
		if inHS != 0 || src != 0 {
			t.Fatalf("after the connection went: %d in the handshake, %d from its source", inHS, src)
		}
		checkWritten(t, a, tc.out, in)
	})
}
