package coord

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/rexi-go/rexi/frame"
	"github.com/rexi-go/rexi/secure"
)

// HandshakeError is a node's refusal during the handshake, or a node that
// failed to prove it knows the secret.
type HandshakeError struct {
	Node   string
	Code   frame.ErrorCode
	Reason string
}

// Error implements error.
func (e *HandshakeError) Error() string {
	return fmt.Sprintf("coord: handshake with %s failed: %s: %s", e.Node, e.Code, printable(e.Reason))
}

// Permanent reports a refusal that retrying will not fix until someone
// changes a configuration: a wrong secret or key, a protocol or
// encryption mismatch, a node shutting down. WaitConnected returns such a
// refusal at once; the client still retries in the background, so a node
// fixed (or restarted) is picked up.
func (e *HandshakeError) Permanent() bool {
	switch e.Code {
	case frame.CodeAuthFailed, frame.CodeBadVersion, frame.CodeBadHandshake, frame.CodeShuttingDown:
		return true
	}
	return false
}

// nodeRefusal is the HandshakeError for an ERROR frame the node sent
// during the handshake, given its payload.
func nodeRefusal(addr string, payload []byte) *HandshakeError {
	code, msg, _ := frame.ParseError(payload)
	return &HandshakeError{Node: addr, Code: code, Reason: string(msg)}
}

// handshakeResult is what a connection's handshake settled.
type handshakeResult struct {
	sess     *secure.Session // the record keys; nil on a plaintext connection
	enc      frame.Encoder   // for what we send
	dec      frame.Decoder   // for what the node sends
	peerMax  int             // the node's max_payload
	window   int             // the node's window: un-acked rows a job may have
	nodeName string          // from WELCOME
	// heartbeat is the interval the session's HEARTBEATs must keep:
	// heartbeatFor the configured one and WELCOME's liveness_ms.
	heartbeat time.Duration
}

// minHeartbeat bounds how often a session heartbeats however short the
// liveness a node announces: a HEARTBEAT every few milliseconds would
// cost more than the silence it guards against.
const minHeartbeat = 10 * time.Millisecond

// heartbeatFor is the heartbeat interval for a node that closes a
// connection after liveness without a frame from it (0: never): the
// configured interval, or a quarter of liveness if that is shorter, so
// that three HEARTBEATs can be late before the node gives up — the four
// intervals a node allows (PROTOCOL.md, Liveness).
func heartbeatFor(configured, liveness time.Duration) time.Duration {
	if liveness <= 0 {
		return configured
	}
	return min(configured, max(liveness/4, minHeartbeat))
}

// handshake settles a new connection: encrypted (Noise, PROTOCOL.md
// section 8) unless the configuration asks for plaintext (HELLO, WELCOME,
// AUTH, section 3).
func handshake(conn net.Conn, cfg *Config, addr string) (handshakeResult, error) {
	h := frame.Hello{Version: frame.Version, Features: cfg.features(), MaxPayload: uint32(cfg.MaxPayload),
		HeartbeatMs: uint32(cfg.HeartbeatInterval / time.Millisecond), Name: []byte(cfg.Name)}
	_, _ = rand.Read(h.Nonce[:])
	if !cfg.InsecurePlaintext {
		h.Features &^= frame.FeatureChecksum // a record's tag covers everything
		return noiseHandshake(conn, cfg, addr, h)
	}
	hb := frame.AppendHello(nil, h)
	if _, err := conn.Write(hb); err != nil {
		return handshakeResult{}, err
	}
	f, _, rest, err := readOneFrame(conn, frame.Decoder{MaxPayload: 1024})
	if err != nil {
		return handshakeResult{}, fmt.Errorf("reading WELCOME: %w", err)
	}
	if f.Type == frame.TypeError {
		return handshakeResult{}, nodeRefusal(addr, f.Payload)
	}
	if f.Type != frame.TypeWelcome || f.Ref != 0 {
		return handshakeResult{}, &HandshakeError{Node: addr, Code: frame.CodeBadHandshake, Reason: fmt.Sprintf("expected WELCOME with ref 0, got %s ref %d", f.Type, f.Ref)}
	}
	w, err := frame.ParseWelcome(f.Payload)
	if err != nil {
		return handshakeResult{}, err
	}
	if !frame.VerifyMAC(w.MAC, frame.NodeMAC(cfg.Secret, hb[frame.HeaderSize:], frame.WelcomeBody(w))) {
		_, _ = conn.Write((&frame.Encoder{}).AppendError(nil, 0, frame.CodeAuthFailed, "node MAC does not verify: the node's secret differs"))
		return handshakeResult{}, &HandshakeError{Node: addr, Code: frame.CodeAuthFailed, Reason: "the node does not know our secret (wrong secret on one side)"}
	}
	if err := welcomeFits(cfg, addr, h.Features, w); err != nil {
		return handshakeResult{}, err
	}
	auth := frame.AppendAuth(nil, frame.CoordMAC(cfg.Secret, hb[frame.HeaderSize:], f.Payload))
	if _, err := conn.Write(auth); err != nil {
		return handshakeResult{}, err
	}
	if len(rest) > 0 { // a node sends nothing after WELCOME until we speak
		return handshakeResult{}, &HandshakeError{Node: addr, Code: frame.CodeUnexpected, Reason: "bytes after WELCOME"}
	}
	return settled(cfg, w, nil), nil
}

// settled is what a WELCOME settles.
func settled(cfg *Config, w frame.Welcome, sess *secure.Session) handshakeResult {
	feat := w.Features
	enc := frame.Encoder{Checksum: feat&frame.FeatureChecksum != 0, Compress: feat&frame.FeatureCompression != 0, CompressThreshold: cfg.CompressThreshold,
		Doit: feat & (frame.FeatureRange | frame.FeatureTraceContext)}
	return handshakeResult{
		sess:      sess,
		enc:       enc,
		dec:       frame.Decoder{MaxPayload: cfg.MaxPayload, Checksum: enc.Checksum, Compression: enc.Compress},
		peerMax:   int(w.MaxPayload),
		window:    int(w.Window),
		nodeName:  string(w.Name),
		heartbeat: heartbeatFor(cfg.HeartbeatInterval, time.Duration(w.LivenessMs)*time.Millisecond),
	}
}

// noiseHandshake runs the three Noise messages, then reads the node's
// WELCOME from its first record.
func noiseHandshake(conn net.Conn, cfg *Config, addr string, h frame.Hello) (handshakeResult, error) {
	refused := func(code frame.ErrorCode, format string, args ...any) error {
		return &HandshakeError{Node: addr, Code: code, Reason: fmt.Sprintf(format, args...)}
	}
	hs, err := secure.NewHandshake(secure.Config{Key: cfg.Key, Secret: cfg.Secret, Allowed: cfg.NodeKeys}, true)
	if err != nil {
		return handshakeResult{}, err
	}
	m1, _, err := hs.Write(nil, nil)
	if err != nil {
		return handshakeResult{}, err
	}
	if _, err := conn.Write(secure.NoiseFrame(nil, m1)); err != nil {
		return handshakeResult{}, err
	}
	f, _, rest, err := readOneFrame(conn, frame.Decoder{MaxPayload: 1024})
	if err != nil {
		return handshakeResult{}, fmt.Errorf("reading Noise message 2: %w", err)
	}
	if f.Type == frame.TypeError {
		return handshakeResult{}, nodeRefusal(addr, f.Payload)
	}
	if f.Type != frame.TypeNoise || f.Ref != 0 || len(rest) > 0 {
		return handshakeResult{}, refused(frame.CodeBadHandshake, "expected one NOISE frame (message 2), got %s ref %d", f.Type, f.Ref)
	}
	if _, _, err := hs.Read(nil, f.Payload); err != nil {
		code := frame.CodeAuthFailed
		reason := "the node does not know the cluster secret or its handshake is corrupt"
		if errors.Is(err, secure.ErrPeerKey) {
			reason = "the node's key is not among the keys this client requires (NodeKeys)"
		}
		_, _ = conn.Write((&frame.Encoder{}).AppendError(nil, 0, code, reason))
		return handshakeResult{}, refused(code, "%s: %v", reason, err)
	}
	m3, sess, err := hs.Write(nil, frame.AppendHello(nil, h)[frame.HeaderSize:])
	if err != nil {
		return handshakeResult{}, err
	}
	if _, err := conn.Write(secure.NoiseFrame(nil, m3)); err != nil {
		return handshakeResult{}, err
	}
	// The first record holds WELCOME; a refusal of message 3 comes as a
	// plaintext ERROR (the node had no keys), a later one sealed.
	f, header, rest, err := readOneFrame(conn, frame.Decoder{MaxPayload: secure.MaxRecordPayload})
	if err != nil {
		return handshakeResult{}, fmt.Errorf("reading the node's first record: %w", err)
	}
	if f.Type == frame.TypeError {
		return handshakeResult{}, nodeRefusal(addr, f.Payload)
	}
	var plain []byte
	if plain, err = sess.Recv.Open(nil, header, f); err != nil {
		return handshakeResult{}, refused(frame.CodeBadRecord, "%v", err)
	}
	g, n, err := (&frame.Decoder{MaxPayload: cfg.MaxPayload}).Decode(plain)
	if err != nil {
		return handshakeResult{}, refused(frame.CodeBadHandshake, "the node's first record: %v", err)
	}
	if g.Type == frame.TypeError {
		return handshakeResult{}, nodeRefusal(addr, g.Payload)
	}
	if g.Type != frame.TypeWelcome || n != len(plain) || len(rest) > 0 {
		return handshakeResult{}, refused(frame.CodeBadHandshake, "expected WELCOME alone in the node's first record, got %s", g.Type)
	}
	w, err := frame.ParseWelcome(g.Payload)
	if err != nil {
		return handshakeResult{}, err
	}
	if err := welcomeFits(cfg, addr, h.Features, w); err != nil {
		return handshakeResult{}, err
	}
	return settled(cfg, w, sess), nil
}

// welcomeFits refuses a node whose window is over MaxWindow (the rows
// per job it could make us hold), or whose features in force include one
// we did not request: a node may only drop requested features, and one
// that turned on compression or checksums we did not ask for would be
// deciding how we read and write.
func welcomeFits(cfg *Config, addr string, requested frame.Feature, w frame.Welcome) error {
	if int64(w.Window) > int64(cfg.MaxWindow) {
		return &HandshakeError{Node: addr, Code: frame.CodeBadHandshake,
			Reason: fmt.Sprintf("the node's window of %d rows is over this coordinator's MaxWindow of %d", w.Window, cfg.MaxWindow)}
	}
	if extra := w.Features &^ requested; extra != 0 {
		return &HandshakeError{Node: addr, Code: frame.CodeBadHandshake,
			Reason: fmt.Sprintf("the node's features %#x include %#x, which we did not request (%#x)", uint32(w.Features), uint32(extra), uint32(requested))}
	}
	return nil
}

// readOneFrame reads exactly one handshake frame; it returns its header
// bytes and any bytes read beyond it.
func readOneFrame(conn net.Conn, dec frame.Decoder) (f frame.Frame, header, rest []byte, err error) {
	buf := make([]byte, 0, 2048)
	tmp := make([]byte, 2048)
	for {
		f, n, err := dec.Decode(buf)
		if err == nil {
			f.Payload = append([]byte(nil), f.Payload...)
			return f, buf[:frame.HeaderSize], buf[n:], nil
		}
		if !errors.Is(err, frame.ErrIncomplete) {
			return f, nil, nil, err
		}
		m, err := conn.Read(tmp)
		buf = append(buf, tmp[:m]...)
		if err != nil {
			return frame.Frame{}, nil, nil, err
		}
	}
}
