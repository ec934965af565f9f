package node

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"testing"
	"time"

	"github.com/rexi-go/rexi/frame"
)

// waitFor bounds every wait in these tests: generous, because CI runs on a
// busy 2-core machine under -race.
const waitFor = 10 * time.Second

var testSecret = []byte("node-test-secret")

func quietLogger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// rawClient is a coordinator written with frame/ and net.Conn only, as a
// third party would write one from PROTOCOL.md.
type rawClient struct {
	t   testing.TB
	nc  net.Conn
	enc frame.Encoder
	dec frame.Decoder
	in  []byte // bytes read but not yet decoded
	tmp []byte
	out []byte
}

func dialRaw(t testing.TB, addr string) *rawClient {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, waitFor)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	c := &rawClient{t: t, nc: nc, dec: frame.Decoder{MaxPayload: 1024}, tmp: make([]byte, 64<<10)}
	t.Cleanup(func() { nc.Close() })
	return c
}

// handshake performs HELLO / WELCOME / AUTH asking for features.
func (c *rawClient) handshake(secret []byte, features frame.Feature) frame.Welcome {
	c.t.Helper()
	h := frame.Hello{Version: frame.Version, Features: features, MaxPayload: frame.DefaultMaxPayload, Name: []byte("test-coord")}
	_, _ = rand.Read(h.Nonce[:])
	hb := frame.AppendHello(nil, h)
	c.write(hb)
	f := c.next()
	if f.Type != frame.TypeWelcome {
		c.t.Fatalf("handshake: got %s, want WELCOME", f.Type)
	}
	w, err := frame.ParseWelcome(f.Payload)
	if err != nil {
		c.t.Fatalf("handshake: %v", err)
	}
	if !frame.VerifyMAC(w.MAC, frame.NodeMAC(secret, hb[frame.HeaderSize:], frame.WelcomeBody(w))) {
		c.t.Fatalf("handshake: node MAC does not verify")
	}
	c.write(frame.AppendAuth(nil, frame.CoordMAC(secret, hb[frame.HeaderSize:], f.Payload)))
	c.enc = frame.Encoder{Checksum: w.Features&frame.FeatureChecksum != 0, Compress: w.Features&frame.FeatureCompression != 0}
	c.dec = frame.Decoder{MaxPayload: frame.DefaultMaxPayload, Checksum: c.enc.Checksum, Compression: c.enc.Compress}
	return w
}

func (c *rawClient) write(b []byte) {
	c.t.Helper()
	_ = c.nc.SetWriteDeadline(time.Now().Add(waitFor))
	if _, err := c.nc.Write(b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// send writes the frames appended to c.out so far.
func (c *rawClient) send() {
	c.t.Helper()
	c.write(c.out)
	c.out = c.out[:0]
}

func (c *rawClient) doit(ref uint64, handler string, args string) {
	c.out = c.enc.AppendDoit(c.out, ref, frame.Doit{Handler: []byte(handler), Nonce: []byte("nonce-1"), Args: []byte(args)})
	c.send()
}

func (c *rawClient) control(t frame.Type, ref uint64) {
	c.out = c.enc.AppendEmpty(c.out, t, ref)
	c.send()
}

func (c *rawClient) ack(ref uint64, n uint32) {
	c.out = c.enc.AppendAck(c.out, ref, n)
	c.send()
}

func (c *rawClient) killAll(refs ...uint64) {
	c.out = c.enc.AppendKillAll(c.out, refs)
	c.send()
}

// readFrame returns the next frame (payload copied and decompressed), or
// an error: io.EOF when the node closed, a timeout after d.
func (c *rawClient) readFrame(d time.Duration) (frame.Frame, error) {
	deadline := time.Now().Add(d)
	for {
		f, n, err := c.dec.Decode(c.in)
		if err == nil {
			p, _, err := frame.Payload(f, nil, 0)
			if err != nil {
				return f, err
			}
			f.Payload = append([]byte(nil), p...)
			c.in = c.in[n:]
			return f, nil
		}
		if !errors.Is(err, frame.ErrIncomplete) {
			return f, err
		}
		_ = c.nc.SetReadDeadline(deadline)
		m, err := c.nc.Read(c.tmp)
		c.in = append(c.in, c.tmp[:m]...)
		if err != nil && m == 0 {
			return frame.Frame{}, err
		}
	}
}

// next returns the next frame that is not a HEARTBEAT, failing the test
// if none arrives in time.
func (c *rawClient) next() frame.Frame {
	c.t.Helper()
	for {
		f, err := c.readFrame(waitFor)
		if err != nil {
			c.t.Fatalf("waiting for a frame: %v", err)
		}
		if f.Type != frame.TypeHeartbeat {
			return f
		}
	}
}

// expect reads the next frame and checks its type and ref.
func (c *rawClient) expect(t frame.Type, ref uint64) frame.Frame {
	c.t.Helper()
	f := c.next()
	if f.Type != t || f.Ref != ref {
		c.t.Fatalf("got %s ref %d (payload %q), want %s ref %d", f.Type, f.Ref, f.Payload, t, ref)
	}
	return f
}

// expectQuiet checks that nothing arrives for d: used only for "must not
// happen" assertions, after the event that would cause it has been seen.
func (c *rawClient) expectQuiet(d time.Duration) {
	c.t.Helper()
	f, err := c.readFrame(d)
	if err == nil {
		c.t.Fatalf("got %s ref %d (payload %q), want no frame", f.Type, f.Ref, f.Payload)
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		c.t.Fatalf("want silence, got %v", err)
	}
}

// expectClosedWith reads an ERROR with code and then EOF.
func (c *rawClient) expectClosedWith(code frame.ErrorCode) string {
	c.t.Helper()
	f, err := c.readFrame(waitFor)
	if err != nil {
		c.t.Fatalf("want ERROR %s, got %v", code, err)
	}
	if f.Type != frame.TypeError {
		c.t.Fatalf("want ERROR %s, got %s", code, f.Type)
	}
	got, msg, err := frame.ParseError(f.Payload)
	if err != nil || got != code {
		c.t.Fatalf("ERROR code %s (%q), want %s", got, msg, code)
	}
	if _, err := c.readFrame(waitFor); err != io.EOF && !isReset(err) {
		c.t.Fatalf("after ERROR: %v, want the connection closed", err)
	}
	return string(msg)
}

func isReset(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && !oe.Timeout()
}

func parseExit(t testing.TB, f frame.Frame) frame.Exit {
	t.Helper()
	if f.Type != frame.TypeExit {
		t.Fatalf("got %s, want EXIT", f.Type)
	}
	x, err := frame.ParseExit(f.Payload)
	if err != nil {
		t.Fatalf("EXIT payload: %v", err)
	}
	return x
}

// eventually polls cond until it holds or waitFor passes. Used for node
// stats, which have no event to wait on from outside the node.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", waitFor, what)
		}
		time.Sleep(time.Millisecond)
	}
}

var _ = bytes.Equal
