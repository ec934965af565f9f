package node

import (
	"crypto/rand"
	"errors"
	"time"

	"github.com/rexi-go/rexi/frame"
	"github.com/rexi-go/rexi/secure"
)

// The handshake (PROTOCOL.md section 3, and section 8 for encrypted
// connections). A node is either encrypted (the default: Noise, then
// records) or plaintext (Config.InsecurePlaintext: HELLO, WELCOME, AUTH);
// a coordinator that opens the other way is refused with a message that
// says so. Event loop only.

func (c *conn) onHello(f frame.Frame) error {
	if f.Type == frame.TypeError { // refused before it began: nothing to answer
		return newPeerError(f.Payload)
	}
	if f.Ref != 0 {
		return newConnError(frame.CodeBadHandshake, "%s carries ref %d; handshake frames have ref 0", f.Type, f.Ref)
	}
	plaintext := c.n.cfg.InsecurePlaintext
	switch {
	case f.Type == frame.TypeHello && !plaintext:
		return newConnError(frame.CodeBadHandshake, "node %s requires an encrypted connection (Noise), and the coordinator sent a plaintext HELLO: give the coordinator the cluster secret without asking for plaintext, or start the node with -insecure-plaintext", c.n.name)
	case f.Type == frame.TypeNoise && plaintext:
		return newConnError(frame.CodeBadHandshake, "node %s runs without encryption (-insecure-plaintext), and the coordinator asked for an encrypted connection: configure the coordinator for plaintext too, or the node without -insecure-plaintext", c.n.name)
	case f.Type == frame.TypeNoise:
		return c.onNoise1(f.Payload)
	case f.Type != frame.TypeHello:
		return newConnError(frame.CodeBadHandshake, "first frame must be HELLO or NOISE, got %s", f.Type)
	}
	h, err := frame.ParseHello(f.Payload)
	if err != nil {
		return err
	}
	w, err := c.agree(h, true)
	if err != nil {
		return err
	}
	c.hello = append([]byte(nil), f.Payload...)
	w.MAC = frame.NodeMAC(c.n.cfg.Secret, c.hello, frame.WelcomeBody(w))
	c.mu.Lock()
	start := len(c.out)
	c.out = frame.AppendWelcome(c.out, w)
	c.welcome = append([]byte(nil), c.out[start+frame.HeaderSize:]...)
	c.mu.Unlock()
	c.phase = phaseAuth
	return nil
}

// agree checks a HELLO and settles the connection's terms: it returns the
// WELCOME to send (without its MAC) and sets the encoder for what the node
// sends after it. Checksums are offered only on plaintext connections: a
// record's tag covers everything.
func (c *conn) agree(h frame.Hello, plaintext bool) (frame.Welcome, error) {
	if c.n.draining.Load() {
		return frame.Welcome{}, newConnError(frame.CodeShuttingDown, "node %s is shutting down", c.n.name)
	}
	if h.Version != frame.Version {
		return frame.Welcome{}, newConnError(frame.CodeBadVersion, "%s: protocol version %d not supported", frame.VersionsMessage(), h.Version)
	}
	if h.MaxPayload < frame.MinMaxPayload {
		return frame.Welcome{}, newConnError(frame.CodeBadHandshake, "HELLO max_payload %d is below the minimum %d", h.MaxPayload, frame.MinMaxPayload)
	}
	name := string(h.Name)
	c.peerName.Store(&name)
	liveness := c.n.cfg.liveness(h.HeartbeatMs)
	c.liveness.Store(int64(liveness))
	enabled := c.n.cfg.features()
	if !plaintext {
		enabled &^= frame.FeatureChecksum
	}
	w := frame.Welcome{
		Version:    frame.Version,
		Features:   frame.Negotiate(h.Features, enabled),
		MaxPayload: uint32(c.n.cfg.MaxPayload),
		Window:     uint32(c.n.cfg.Window),
		LivenessMs: uint32(liveness / time.Millisecond),
		Name:       []byte(c.n.name),
	}
	_, _ = rand.Read(w.Nonce[:])
	c.mu.Lock()
	// Features apply to what the node sends after WELCOME.
	c.enc = frame.Encoder{
		Checksum:          w.Features&frame.FeatureChecksum != 0,
		Compress:          w.Features&frame.FeatureCompression != 0,
		CompressThreshold: c.n.cfg.CompressThreshold,
	}
	c.peerMax = int(h.MaxPayload)
	c.doitFields = w.Features & (frame.FeatureRange | frame.FeatureTraceContext)
	c.mu.Unlock()
	return w, nil
}

func (c *conn) onAuth(f frame.Frame) error {
	if f.Type == frame.TypeError { // the coordinator refused us, e.g. our secret differs
		return newPeerError(f.Payload)
	}
	if c.hs != nil {
		return c.onNoise3(f)
	}
	if f.Type != frame.TypeAuth {
		return newConnError(frame.CodeBadHandshake, "expected AUTH after WELCOME, got %s", f.Type)
	}
	if f.Ref != 0 {
		return newConnError(frame.CodeBadHandshake, "AUTH carries ref %d; handshake frames have ref 0", f.Ref)
	}
	mac, err := frame.ParseAuth(f.Payload)
	if err != nil {
		return err
	}
	if !frame.VerifyMAC(mac, frame.CoordMAC(c.n.cfg.Secret, c.hello, c.welcome)) {
		return newConnError(frame.CodeAuthFailed, "authentication failed: the coordinator's secret differs from the node's")
	}
	c.hello, c.welcome = nil, nil
	c.authenticated()
	return nil
}

// onNoise1 answers the Noise handshake's first message with the second.
func (c *conn) onNoise1(msg []byte) error {
	hs, err := secure.NewHandshake(c.n.noise, false)
	if err != nil {
		return newConnError(frame.CodeInternal, "%v", err)
	}
	if _, _, err := hs.Read(nil, msg); err != nil {
		return newConnError(frame.CodeBadHandshake, "Noise message 1: %v", err)
	}
	m2, _, err := hs.Write(nil, nil)
	if err != nil {
		return newConnError(frame.CodeInternal, "%v", err)
	}
	c.hs = hs
	c.mu.Lock()
	c.out = secure.NoiseFrame(c.out, m2)
	c.mu.Unlock()
	c.phase = phaseAuth
	return nil
}

// onNoise3 completes the handshake: message 3 proves the coordinator knows
// the cluster secret, shows its static key, and carries its HELLO. The
// node answers WELCOME in the first record.
func (c *conn) onNoise3(f frame.Frame) error {
	if f.Type != frame.TypeNoise || f.Ref != 0 {
		return newConnError(frame.CodeBadHandshake, "expected NOISE (message 3) with ref 0, got %s ref %d", f.Type, f.Ref)
	}
	hello, sess, err := c.hs.Read(nil, f.Payload)
	switch {
	case errors.Is(err, secure.ErrAuth):
		return newConnError(frame.CodeAuthFailed, "authentication failed: the coordinator does not know the cluster secret (%v)", err)
	case errors.Is(err, secure.ErrPeerKey):
		return newConnError(frame.CodeAuthFailed, "authentication failed: %v is not among the node's allowed coordinator keys", err)
	case err != nil:
		return newConnError(frame.CodeBadHandshake, "Noise message 3: %v", err)
	}
	c.hs = nil
	c.sess = sess
	c.sess.Send.RekeyRecords, c.sess.Send.RekeyBytes = c.n.cfg.rekeyRecords, c.n.cfg.rekeyBytes
	c.recDec = frame.Decoder{MaxPayload: secure.MaxRecordPayload}
	h, err := frame.ParseHello(hello)
	if err != nil {
		return err
	}
	w, err := c.agree(h, false)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.out = frame.AppendWelcome(c.out, w) // MAC all zero: Noise authenticated both sides
	c.mu.Unlock()
	c.authenticated()
	return nil
}

// authenticated switches the connection to the settled terms.
func (c *conn) authenticated() {
	c.phase = phaseReady
	c.dec = frame.Decoder{
		MaxPayload:  c.n.cfg.MaxPayload,
		Checksum:    c.enc.Checksum,
		Compression: c.enc.Compress,
	}
	c.ready.Store(true)
	c.n.leftHandshake(c.source)
	c.n.stats.connections.Add(1)
	c.n.log.Debug("rexi node: coordinator connected", "remote", c.remote, "name", *c.peerName.Load(), "encrypted", c.sess != nil)
}

// openRecord opens one RECORD (raw is its header as received) and handles
// the frames its plaintext completes; a frame may span records.
func (c *conn) openRecord(header []byte, f frame.Frame) error {
	var err error
	if c.plain, err = c.sess.Recv.Open(c.plain, header, f); err != nil {
		return newConnError(frame.CodeBadRecord, "%v", err)
	}
	off := 0
	var g frame.Frame
	for off < len(c.plain) {
		n, err := c.dec.DecodeTo(&g, c.plain[off:])
		if err == frame.ErrIncomplete {
			break
		}
		if err != nil {
			return err
		}
		off += n
		if err := c.handle(g); err != nil {
			return err
		}
		if ce := c.closing.Load(); ce != nil {
			return ce
		}
	}
	c.plain = c.plain[:copy(c.plain, c.plain[off:])]
	if len(c.plain) == 0 && cap(c.plain) > keepBuffer {
		c.plain = nil
	}
	return nil
}
