package integration

import (
	"crypto/rand"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/rexi-go/rexi/frame"
)

// rawConn is a coordinator connection written with frame/ only, for
// clients that misbehave on purpose.
type rawConn struct {
	nc  net.Conn
	enc frame.Encoder
	dec frame.Decoder
	in  []byte
	tmp []byte
}

// dialAuth connects and completes the handshake.
func dialAuth(t testing.TB, addr string) *rawConn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	c := &rawConn{nc: nc, tmp: make([]byte, 64<<10), dec: frame.Decoder{MaxPayload: 1024}}
	h := frame.Hello{Version: frame.Version, MaxPayload: frame.DefaultMaxPayload, Name: []byte("raw")}
	rand.Read(h.Nonce[:])
	hb := frame.AppendHello(nil, h)
	c.write(hb)
	f, err := c.read(5 * time.Second)
	if err != nil || f.Type != frame.TypeWelcome {
		t.Fatalf("handshake: %v %v", f.Type, err)
	}
	c.write(frame.AppendAuth(nil, frame.CoordMAC([]byte(secret), hb[frame.HeaderSize:], f.Payload)))
	c.dec = frame.Decoder{MaxPayload: frame.DefaultMaxPayload}
	return c
}

func (c *rawConn) write(b []byte) error {
	_ = c.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, err := c.nc.Write(b)
	return err
}

func (c *rawConn) read(d time.Duration) (frame.Frame, error) {
	deadline := time.Now().Add(d)
	for {
		f, n, err := c.dec.Decode(c.in)
		if err == nil {
			f.Payload = append([]byte(nil), f.Payload...)
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
