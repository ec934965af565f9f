package coord

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/rexi-go/rexi/frame"
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
	return fmt.Sprintf("coord: handshake with %s failed: %s: %s", e.Node, e.Code, e.Reason)
}

// handshakeResult is what a connection's handshake settled.
type handshakeResult struct {
	enc      frame.Encoder // for what we send
	dec      frame.Decoder // for what the node sends
	peerMax  int           // the node's max_payload
	nodeName string        // from WELCOME
	window   int           // un-acked rows per job, from WELCOME
	liveness time.Duration // silence after which the node closes us, from WELCOME
}

// handshake runs HELLO, WELCOME, AUTH on conn (PROTOCOL.md section 3).
func handshake(conn net.Conn, cfg *Config, addr string) (handshakeResult, error) {
	h := frame.Hello{Version: frame.Version, Features: cfg.features(), MaxPayload: uint32(cfg.MaxPayload),
		HeartbeatMs: uint32(cfg.HeartbeatInterval / time.Millisecond), Name: []byte(cfg.Name)}
	_, _ = rand.Read(h.Nonce[:])
	hb := frame.AppendHello(nil, h)
	if _, err := conn.Write(hb); err != nil {
		return handshakeResult{}, err
	}
	f, rest, err := readOneFrame(conn, frame.Decoder{MaxPayload: 1024})
	if err != nil {
		return handshakeResult{}, fmt.Errorf("reading WELCOME: %w", err)
	}
	if f.Type == frame.TypeError {
		code, msg, _ := frame.ParseError(f.Payload)
		return handshakeResult{}, &HandshakeError{Node: addr, Code: code, Reason: string(msg)}
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
	auth := frame.AppendAuth(nil, frame.CoordMAC(cfg.Secret, hb[frame.HeaderSize:], f.Payload))
	if _, err := conn.Write(auth); err != nil {
		return handshakeResult{}, err
	}
	if len(rest) > 0 { // a node sends nothing after WELCOME until we speak
		return handshakeResult{}, &HandshakeError{Node: addr, Code: frame.CodeUnexpected, Reason: "bytes after WELCOME"}
	}
	feat := w.Features
	enc := frame.Encoder{Checksum: feat&frame.FeatureChecksum != 0, Compress: feat&frame.FeatureCompression != 0, CompressThreshold: cfg.CompressThreshold}
	return handshakeResult{
		enc:      enc,
		dec:      frame.Decoder{MaxPayload: cfg.MaxPayload, Checksum: enc.Checksum, Compression: enc.Compress},
		peerMax:  int(w.MaxPayload),
		nodeName: string(w.Name),
		window:   int(w.Window),
		liveness: time.Duration(w.LivenessMs) * time.Millisecond,
	}, nil
}

// readOneFrame reads exactly one handshake frame; it returns any bytes
// read beyond it.
func readOneFrame(conn net.Conn, dec frame.Decoder) (frame.Frame, []byte, error) {
	buf := make([]byte, 0, 2048)
	tmp := make([]byte, 2048)
	for {
		f, n, err := dec.Decode(buf)
		if err == nil {
			f.Payload = append([]byte(nil), f.Payload...)
			return f, buf[n:], nil
		}
		if !errors.Is(err, frame.ErrIncomplete) {
			return f, nil, err
		}
		m, err := conn.Read(tmp)
		buf = append(buf, tmp[:m]...)
		if err != nil {
			return frame.Frame{}, nil, err
		}
	}
}
