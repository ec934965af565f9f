package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/rexi-go/rexi/frame"
	"github.com/rexi-go/rexi/internal/wiretest"
)

// goodStream is a well-behaved coordinator streaming from a worker that
// never stops: after each hostile case it must still receive rows.
type goodStream struct {
	t *testing.T
	c *rawClient
}

func startGoodStream(t *testing.T, n *Node) *goodStream {
	c := connect(t, n, frame.FeatureChecksum)
	c.Doit(1, "flow", "")
	c.Expect(frame.TypeStreamInit, 1)
	c.Control(frame.TypeStart, 1)
	return &goodStream{t: t, c: c}
}

// rows reads k rows, acking each.
func (g *goodStream) rows(k int) {
	g.t.Helper()
	for i := 0; i < k; i++ {
		g.c.Expect(frame.TypeStream, 1)
		g.c.Ack(1, 1)
	}
}

func hexFrame(t *testing.T, s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestMalformedInputClosesOnlyThatConnection(t *testing.T) {
	n := startNode(t, newProbe(), func(c *Config) { c.HandshakeTimeout = 200 * time.Millisecond })
	n.Handle("flow", func(ctx context.Context, w *Worker) error {
		for {
			if err := w.Stream([]byte("row")); err != nil {
				return err
			}
		}
	})
	good := startGoodStream(t, n)
	good.rows(10)

	var plain, sum frame.Encoder
	sum.Checksum = true
	cases := []struct {
		name      string
		handshake frame.Feature // -1: no handshake
		noHello   bool
		send      func(t *testing.T) []byte
		code      frame.ErrorCode
	}{
		{name: "garbage instead of HELLO", noHello: true, code: frame.CodeBadHandshake,
			send: func(t *testing.T) []byte { return []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n") }},
		{name: "DOIT before the handshake", noHello: true, code: frame.CodeBadHandshake,
			send: func(t *testing.T) []byte {
				return plain.AppendDoit(nil, 1, frame.Doit{Handler: []byte("echo")})
			}},
		{name: "HELLO with a non-zero ref", noHello: true, code: frame.CodeBadHandshake,
			send: func(t *testing.T) []byte {
				b := frame.AppendHello(nil, frame.Hello{Version: frame.Version, MaxPayload: 1024})
				b[15] = 7
				return b
			}},
		{name: "oversize length before the handshake", noHello: true, code: frame.CodeTooLarge,
			send: func(t *testing.T) []byte { return hexFrame(t, "7fffffff010000000000000000000000") }},
		{name: "random bytes", noHello: true, code: frame.CodeBadHandshake,
			send: func(t *testing.T) []byte {
				b := make([]byte, 64)
				_, _ = rand.Read(b)
				b[4] = 0x7f // an undefined type, whatever the rest says
				return b
			}},
		{name: "oversize length", code: frame.CodeTooLarge,
			send: func(t *testing.T) []byte { return hexFrame(t, "7fffffff100000000000000000000001") }},
		{name: "unknown type", code: frame.CodeUnknownType,
			send: func(t *testing.T) []byte { return hexFrame(t, "000000007f0000000000000000000001") }},
		{name: "bad checksum", handshake: frame.FeatureChecksum, code: frame.CodeBadChecksum,
			send: func(t *testing.T) []byte {
				b := sum.AppendAck(nil, 1, 1)
				b[len(b)-1] ^= 0xff
				return b
			}},
		{name: "missing checksum after negotiating it", handshake: frame.FeatureChecksum, code: frame.CodeMalformed,
			send: func(t *testing.T) []byte { return plain.AppendAck(nil, 1, 1) }},
		{name: "reserved flag bits", code: frame.CodeMalformed,
			send: func(t *testing.T) []byte { return hexFrame(t, "00000000138000000000000000000001") }},
		{name: "truncated DOIT payload", code: frame.CodeMalformed,
			send: func(t *testing.T) []byte { return hexFrame(t, "0000000310000000000000000000000100000a") }},
		{name: "ACK of zero rows", code: frame.CodeMalformed,
			send: func(t *testing.T) []byte { return plain.AppendAck(nil, 1, 0) }},
		{name: "ragged KILL_ALL", code: frame.CodeMalformed,
			send: func(t *testing.T) []byte { return hexFrame(t, "000000031a000000000000000000000001020304") }},
		{name: "KILL_ALL with a non-zero ref", code: frame.CodeMalformed,
			send: func(t *testing.T) []byte {
				b := plain.AppendKillAll(nil, []uint64{1})
				b[15] = 9
				return b
			}},
		{name: "REPLY sent to a node", code: frame.CodeUnexpected,
			send: func(t *testing.T) []byte { return plain.AppendReply(nil, 1, []byte("x")) }},
		{name: "HELLO replayed after the handshake", code: frame.CodeUnexpected,
			send: func(t *testing.T) []byte {
				return frame.AppendHello(nil, frame.Hello{Version: 1, Name: []byte("replay")})
			}},
		{name: "DOIT with ref 0", code: frame.CodeUnexpected,
			send: func(t *testing.T) []byte { return plain.AppendDoit(nil, 0, frame.Doit{Handler: []byte("echo")}) }},
		{name: "compressed without negotiation", code: frame.CodeMalformed,
			send: func(t *testing.T) []byte { return hexFrame(t, "00000000130200000000000000000001") }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := dialRaw(t, n.Addr())
			if !tc.noHello {
				c.Handshake(testSecret, tc.handshake)
			}
			c.Write(tc.send(t))
			c.ExpectClosedWith(tc.code)
			good.rows(5)
		})
	}
	if s := n.Stats(); s.Refused != 5 || s.ProtocolErrors != uint64(len(cases)-5) {
		t.Fatalf("refused=%d protocolErrors=%d, want 5 and %d", s.Refused, s.ProtocolErrors, len(cases)-5)
	}
}

// An empty KILL_ALL is a no-op; an ERROR as the very first frame is not
// answered; a node that stops tells its open connections.
func TestEdgesOfTheSpec(t *testing.T) {
	p := newProbe()
	n := startNode(t, p, nil)
	c := connect(t, n, 0)
	c.Doit(1, "block", "x")
	p.waitEvent(t, "block:x")
	c.KillAll()
	c.Doit(2, "echo", "after an empty KILL_ALL")
	c.Expect(frame.TypeReply, 2)

	first := dialRaw(t, n.Addr())
	first.Write((&frame.Encoder{}).AppendError(nil, 0, frame.CodeShuttingDown, "coordinator going away"))
	if f, err := first.ReadFrame(waitFor); err != io.EOF && !wiretest.IsReset(err) {
		t.Fatalf("an ERROR as the first frame was answered: %s %v", f.Type, err)
	}

	n.Close()
	c.ExpectClosedWith(frame.CodeShuttingDown)
	if err := p.waitCause(t); !errors.Is(err, ErrKilled) {
		t.Fatalf("worker stopped by %v", err)
	}
}

func TestHandshakeRefusals(t *testing.T) {
	n := startNode(t, newProbe(), func(c *Config) { c.HandshakeTimeout = 200 * time.Millisecond })
	good := connect(t, n, 0)

	t.Run("wrong secret", func(t *testing.T) {
		c := dialRaw(t, n.Addr())
		h := frame.Hello{Version: frame.Version, MaxPayload: 1024, Name: []byte("intruder")}
		hb := frame.AppendHello(nil, h)
		c.Write(hb)
		f := c.Expect(frame.TypeWelcome, 0)
		w, _ := frame.ParseWelcome(f.Payload)
		wrong := []byte("not-the-secret")
		if frame.VerifyMAC(w.MAC, frame.NodeMAC(wrong, hb[frame.HeaderSize:], frame.WelcomeBody(w))) {
			t.Fatal("node MAC verifies under a wrong secret")
		}
		c.Write(frame.AppendAuth(nil, frame.CoordMAC(wrong, hb[frame.HeaderSize:], f.Payload)))
		c.ExpectClosedWith(frame.CodeAuthFailed)
	})
	t.Run("wrong version", func(t *testing.T) {
		c := dialRaw(t, n.Addr())
		c.Write(frame.AppendHello(nil, frame.Hello{Version: 9}))
		if msg := c.ExpectClosedWith(frame.CodeBadVersion); msg == "" {
			t.Fatal("BAD_VERSION without a message naming the supported version")
		}
	})
	t.Run("DOIT instead of AUTH", func(t *testing.T) {
		c := dialRaw(t, n.Addr())
		c.Write(frame.AppendHello(nil, frame.Hello{Version: frame.Version, MaxPayload: 1024}))
		c.Expect(frame.TypeWelcome, 0)
		c.Write((&frame.Encoder{}).AppendDoit(nil, 1, frame.Doit{Handler: []byte("echo")}))
		c.ExpectClosedWith(frame.CodeBadHandshake)
	})
	t.Run("silent peer", func(t *testing.T) {
		c := dialRaw(t, n.Addr())
		c.ExpectClosedWith(frame.CodeBadHandshake)
	})
	// After WELCOME, a header the decoder refuses keeps the decoder's code
	// (PROTOCOL.md section 3, rule 3), an undefined type included.
	for _, tc := range []struct {
		name   string
		header []byte
		code   frame.ErrorCode
	}{
		{"unknown type after WELCOME", []byte{0, 0, 0, 0, 0x7f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, frame.CodeUnknownType},
		{"length over 1024 after WELCOME", []byte{0, 0, 4, 1, byte(frame.TypeAuth), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, frame.CodeTooLarge},
		{"AUTH with a flag after WELCOME", []byte{0, 0, 0, 32, byte(frame.TypeAuth), 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, frame.CodeMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialRaw(t, n.Addr())
			c.Write(frame.AppendHello(nil, frame.Hello{Version: frame.Version, MaxPayload: 1024}))
			c.Expect(frame.TypeWelcome, 0)
			c.Write(tc.header)
			c.ExpectClosedWith(tc.code)
		})
	}
	good.Doit(1, "echo", "still here")
	good.Expect(frame.TypeReply, 1)
	if s := n.Stats(); s.Refused != 7 || s.Connections != 1 {
		t.Fatalf("refused=%d connections=%d, want 7 and 1", s.Refused, s.Connections)
	}
}

func TestIdleConnectionClosed(t *testing.T) {
	n := startNode(t, newProbe(), func(c *Config) { c.IdleTimeout = 100 * time.Millisecond })
	c := connect(t, n, 0)
	c.ExpectClosedWith(frame.CodeIdleTimeout)
}

// The liveness bound is never applied early: a coordinator heartbeating
// a little within it is never cut off (the janitor dated the last frame
// with its own clock, up to a tick early, and closed such connections up
// to 250 ms before their time), and one that goes silent is.
func TestLivenessNeverClosesEarly(t *testing.T) {
	n := startNode(t, newProbe(), nil)
	c := dialRaw(t, n.Addr())
	c.HandshakeHello(testSecret, frame.Hello{Version: frame.Version, MaxPayload: frame.DefaultMaxPayload, HeartbeatMs: 100, Name: []byte("hb")}) // liveness 1 s
	for i := range 4 {
		for until := time.Now().Add(850 * time.Millisecond); time.Now().Before(until); {
			f, err := c.ReadFrame(time.Until(until))
			if err == nil && f.Type == frame.TypeError {
				t.Fatalf("heartbeat %d: closed with %q after 850 ms of silence, within the 1 s liveness bound", i, f.Payload)
			}
			if err != nil && !isTimeout(err) {
				t.Fatalf("heartbeat %d: %v", i, err)
			}
		}
		c.Control(frame.TypeHeartbeat, uint64(i+1))
	}
	if f, err := c.ReadFrame(waitFor); err != nil || f.Type != frame.TypeHeartbeat {
		t.Fatalf("got %s, %v; want the last heartbeat's echo", f.Type, err)
	}
	c.ExpectClosedWith(frame.CodeIdleTimeout) // silent now
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestKillAllNeverTouchesOtherConnections(t *testing.T) {
	p := newProbe()
	n := startNode(t, p, nil)
	a := connect(t, n, 0)
	b := connect(t, n, 0)
	a.Doit(5, "block", "a")
	p.waitEvent(t, "block:a")
	b.KillAll(5, 6, 7)
	b.Doit(1, "echo", "sync") // once b's reply is back, b's KILL_ALL was handled
	b.Expect(frame.TypeReply, 1)
	if js := n.Jobs(); len(js) != 1 || js[0].Ref != 5 {
		t.Fatalf("jobs %+v, want a's job 5 still live", js)
	}
	a.KillAll(5)
	if err := p.waitCause(t); err != ErrKilled {
		t.Fatalf("cause %v", err)
	}
}

// A goroutine job accepted earlier in a read that then fails is never
// started: it must still be accounted for (not left running, not live).
func TestJobQueuedInAFailingReadIsReleased(t *testing.T) {
	n := startNode(t, newProbe(), nil)
	c := connect(t, n, 0)
	c.Out = c.Enc.AppendDoit(c.Out, 1, frame.Doit{Handler: []byte("echo"), Args: []byte("x")})
	c.Out = c.Enc.AppendEmpty(c.Out, frame.TypeStreamInit, 1) // not valid from a coordinator
	c.Send()
	c.ExpectClosedWith(frame.CodeUnexpected)
	deadline := time.Now().Add(10 * time.Second)
	for s := n.Stats(); s.Running != 0 || s.Live != 0; s = n.Stats() {
		if time.Now().After(deadline) {
			t.Fatalf("running %d live %d after the connection failed, want 0 and 0", s.Running, s.Live)
		}
		time.Sleep(time.Millisecond)
	}
}
