// Package wiretest is a coordinator written with frame/ and net.Conn only,
// as a third party would write one from PROTOCOL.md: tests use it to speak
// the protocol exactly, and to misbehave on purpose.
package wiretest

import (
	"crypto/rand"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/rexi-go/rexi/frame"
	"github.com/rexi-go/rexi/secure"
)

// WaitFor bounds every wait: generous, because CI runs on a busy 2-core
// machine under -race.
const WaitFor = 10 * time.Second

// Client is a coordinator written with frame/ and net.Conn only, as a
// third party would Write one from PROTOCOL.md.
type Client struct {
	t   testing.TB
	NC  net.Conn
	Enc frame.Encoder // settings negotiated by Handshake
	Dec frame.Decoder
	Out []byte // frames appended by the caller, written by Send
	in  []byte // bytes read but not yet decoded
	tmp []byte

	// Sess, once an encrypted handshake is done, seals what Send writes and
	// opens the RECORDs ReadFrame reads; plain holds opened bytes.
	Sess  *secure.Session
	plain []byte
}

// Dial connects to a node; the connection closes when the test ends.
func Dial(t testing.TB, addr string) *Client {
	t.Helper()
	return DialFrom(t, addr, "")
}

// DialFrom is Dial from the local IP address from ("" for any): a node
// counts some limits per source address.
func DialFrom(t testing.TB, addr, from string) *Client {
	t.Helper()
	d := net.Dialer{Timeout: WaitFor}
	if from != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	return dial(t, d, addr)
}

// DialReadBuffer is Dial with the socket's receive buffer set to bytes
// before it connects, so the window the node sees is small from the
// start: a peer that does not read fills it at once.
func DialReadBuffer(t testing.TB, addr string, bytes int) *Client {
	t.Helper()
	d := net.Dialer{Timeout: WaitFor, Control: func(_, _ string, rc syscall.RawConn) error {
		var err error
		if cerr := rc.Control(func(fd uintptr) {
			err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, bytes)
		}); cerr != nil {
			return cerr
		}
		return err
	}}
	return dial(t, d, addr)
}

func dial(t testing.TB, d net.Dialer, addr string) *Client {
	t.Helper()
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	c := &Client{t: t, NC: nc, Dec: frame.Decoder{MaxPayload: 1024}, tmp: make([]byte, 64<<10)}
	t.Cleanup(func() { nc.Close() })
	return c
}

// Handshake performs HELLO / WELCOME / AUTH asking for features; the
// HELLO announces no heartbeat interval.
func (c *Client) Handshake(secret []byte, features frame.Feature) frame.Welcome {
	c.t.Helper()
	return c.HandshakeHello(secret, frame.Hello{Version: frame.Version, Features: features, MaxPayload: frame.DefaultMaxPayload, Name: []byte("test-coord")})
}

// HandshakeHello performs the handshake with the given HELLO (its nonce is
// filled in).
func (c *Client) HandshakeHello(secret []byte, h frame.Hello) frame.Welcome {
	c.t.Helper()
	_, _ = rand.Read(h.Nonce[:])
	hb := frame.AppendHello(nil, h)
	c.Write(hb)
	f := c.Next()
	if f.Type != frame.TypeWelcome {
		c.t.Fatalf("Handshake: got %s, want WELCOME", f.Type)
	}
	w, err := frame.ParseWelcome(f.Payload)
	if err != nil {
		c.t.Fatalf("Handshake: %v", err)
	}
	if !frame.VerifyMAC(w.MAC, frame.NodeMAC(secret, hb[frame.HeaderSize:], frame.WelcomeBody(w))) {
		c.t.Fatalf("Handshake: node MAC does not verify")
	}
	c.Write(frame.AppendAuth(nil, frame.CoordMAC(secret, hb[frame.HeaderSize:], f.Payload)))
	c.Enc = frame.Encoder{Checksum: w.Features&frame.FeatureChecksum != 0, Compress: w.Features&frame.FeatureCompression != 0}
	c.Dec = frame.Decoder{MaxPayload: frame.DefaultMaxPayload, Checksum: c.Enc.Checksum, Compression: c.Enc.Compress}
	return w
}

// Write writes b at once, failing the test on error.
func (c *Client) Write(b []byte) {
	c.t.Helper()
	_ = c.NC.SetWriteDeadline(time.Now().Add(WaitFor))
	if _, err := c.NC.Write(b); err != nil {
		c.t.Fatalf("Write: %v", err)
	}
}

// Send writes the frames appended to c.Out so far (sealed in one record
// on an encrypted connection).
func (c *Client) Send() {
	c.t.Helper()
	if c.Sess != nil {
		c.Write(c.Sess.Send.Seal(nil, c.Out))
	} else {
		c.Write(c.Out)
	}
	c.Out = c.Out[:0]
}

// EncryptedHandshake runs the Noise handshake (PROTOCOL.md section 8) with
// key and secret, sending h as message 3's payload, and returns the
// node's WELCOME, read from the first record. A refusal fails the test
// unless the caller reads it: see NoiseHandshake.
func (c *Client) EncryptedHandshake(key secure.PrivateKey, secret []byte, h frame.Hello) frame.Welcome {
	c.t.Helper()
	if err := c.NoiseHandshake(secure.Config{Key: key, Secret: secret}, h); err != nil {
		c.t.Fatalf("Noise handshake: %v", err)
	}
	f := c.Next()
	if f.Type != frame.TypeWelcome {
		c.t.Fatalf("EncryptedHandshake: got %s (%q), want WELCOME", f.Type, f.Payload)
	}
	w, err := frame.ParseWelcome(f.Payload)
	if err != nil {
		c.t.Fatalf("EncryptedHandshake: %v", err)
	}
	c.Enc = frame.Encoder{Compress: w.Features&frame.FeatureCompression != 0}
	c.Dec = frame.Decoder{MaxPayload: frame.DefaultMaxPayload, Compression: c.Enc.Compress}
	return w
}

// NoiseHandshake sends messages 1 and 3 and reads message 2; after it the
// client reads and writes records. It returns the error of the handshake
// itself (the node's ERROR frame, if it sent one instead of message 2, is
// left to ReadFrame).
func (c *Client) NoiseHandshake(cfg secure.Config, h frame.Hello) error {
	c.t.Helper()
	hs, err := secure.NewHandshake(cfg, true)
	if err != nil {
		return err
	}
	m1, _, err := hs.Write(nil, nil)
	if err != nil {
		return err
	}
	c.Write(secure.NoiseFrame(nil, m1))
	f, err := c.ReadFrame(WaitFor)
	if err != nil {
		return err
	}
	if f.Type != frame.TypeNoise {
		c.pushBack(f)
		return errors.New("node answered " + f.Type.String() + " instead of NOISE")
	}
	if _, _, err := hs.Read(nil, f.Payload); err != nil {
		return err
	}
	_, _ = rand.Read(h.Nonce[:])
	hp := frame.AppendHello(nil, h)[frame.HeaderSize:]
	m3, sess, err := hs.Write(nil, hp)
	if err != nil {
		return err
	}
	c.Write(secure.NoiseFrame(nil, m3))
	c.Sess = sess
	c.Dec = frame.Decoder{MaxPayload: frame.DefaultMaxPayload}
	return nil
}

// Buffered is how many bytes were read and not yet returned as frames:
// when it is 0, the next ReadFrame reads the socket.
func (c *Client) Buffered() int { return len(c.in) + len(c.plain) }

// pushBack returns a frame to the front of the input (re-encoded).
func (c *Client) pushBack(f frame.Frame) {
	c.in = append(frame.AppendRaw(nil, f), c.in...)
}

// Doit sends a DOIT for handler with args and the nonce "nonce-1".
func (c *Client) Doit(ref uint64, handler string, args string) {
	c.Out = c.Enc.AppendDoit(c.Out, ref, frame.Doit{Handler: []byte(handler), Nonce: []byte("nonce-1"), Args: []byte(args)})
	c.Send()
}

// Control sends a frame without payload (START, CANCEL, HEARTBEAT...).
func (c *Client) Control(t frame.Type, ref uint64) {
	c.Out = c.Enc.AppendEmpty(c.Out, t, ref)
	c.Send()
}

// Ack sends ACK{n} for ref.
func (c *Client) Ack(ref uint64, n uint32) {
	c.Out = c.Enc.AppendAck(c.Out, ref, n)
	c.Send()
}

// KillAll sends one KILL_ALL for refs.
func (c *Client) KillAll(refs ...uint64) {
	c.Out = c.Enc.AppendKillAll(c.Out, refs)
	c.Send()
}

// ReadFrame returns the Next frame (payload copied and decompressed), or
// an error: io.EOF when the node closed, a timeout after d.
func (c *Client) ReadFrame(d time.Duration) (frame.Frame, error) {
	deadline := time.Now().Add(d)
	for {
		buf := &c.in // frames arrive in the clear, or opened from RECORDs into c.plain
		if c.Sess != nil {
			if err := c.openRecords(); err != nil {
				return frame.Frame{}, err
			}
			buf = &c.plain
		}
		f, n, err := c.Dec.Decode(*buf)
		if err == nil {
			p, _, err := frame.Payload(f, nil, 0)
			if err != nil {
				return f, err
			}
			f.Payload = append([]byte(nil), p...)
			*buf = (*buf)[n:]
			return f, nil
		}
		if !errors.Is(err, frame.ErrIncomplete) {
			return f, err
		}
		if c.Sess != nil {
			if f, ok := c.plaintextError(); ok { // a refusal sent before the keys existed
				return f, nil
			}
		}
		_ = c.NC.SetReadDeadline(deadline)
		m, err := c.NC.Read(c.tmp)
		c.in = append(c.in, c.tmp[:m]...)
		if err != nil && m == 0 {
			return frame.Frame{}, err
		}
	}
}

// openRecords opens every whole RECORD in the input into c.plain.
func (c *Client) openRecords() error {
	dec := frame.Decoder{MaxPayload: secure.MaxRecordPayload}
	for {
		f, n, err := dec.Decode(c.in)
		if errors.Is(err, frame.ErrIncomplete) || (err == nil && f.Type != frame.TypeRecord) {
			return nil
		}
		if err != nil {
			return err
		}
		if c.plain, err = c.Sess.Recv.Open(c.plain, c.in[:frame.HeaderSize], f); err != nil {
			return err
		}
		c.in = c.in[n:]
	}
}

// plaintextError takes an ERROR frame sent in the clear (a node refusing
// message 3 has no keys to seal it with).
func (c *Client) plaintextError() (frame.Frame, bool) {
	f, n, err := (&frame.Decoder{MaxPayload: 1024}).Decode(c.in)
	if err != nil || f.Type != frame.TypeError {
		return frame.Frame{}, false
	}
	f.Payload = append([]byte(nil), f.Payload...)
	c.in = c.in[n:]
	return f, true
}

// Next returns the Next frame that is not a HEARTBEAT, failing the test
// if none arrives in time.
func (c *Client) Next() frame.Frame {
	c.t.Helper()
	for {
		f, err := c.ReadFrame(WaitFor)
		if err != nil {
			c.t.Fatalf("waiting for a frame: %v", err)
		}
		if f.Type != frame.TypeHeartbeat {
			return f
		}
	}
}

// Expect reads the Next frame and checks its type and ref.
func (c *Client) Expect(t frame.Type, ref uint64) frame.Frame {
	c.t.Helper()
	f := c.Next()
	if f.Type != t || f.Ref != ref {
		c.t.Fatalf("got %s ref %d (payload %q), want %s ref %d", f.Type, f.Ref, f.Payload, t, ref)
	}
	return f
}

// ExpectQuiet checks that nothing arrives for d: used only for "must not
// happen" assertions, after the event that would cause it has been seen.
func (c *Client) ExpectQuiet(d time.Duration) {
	c.t.Helper()
	f, err := c.ReadFrame(d)
	if err == nil {
		c.t.Fatalf("got %s ref %d (payload %q), want no frame", f.Type, f.Ref, f.Payload)
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		c.t.Fatalf("want silence, got %v", err)
	}
}

// ExpectClosedWith reads an ERROR with code and then EOF.
func (c *Client) ExpectClosedWith(code frame.ErrorCode) string {
	c.t.Helper()
	f, err := c.ReadFrame(WaitFor)
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
	if _, err := c.ReadFrame(WaitFor); err != io.EOF && !IsReset(err) {
		c.t.Fatalf("after ERROR: %v, want the connection closed", err)
	}
	return string(msg)
}

// IsReset reports a connection error other than a timeout.
func IsReset(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && !oe.Timeout()
}
