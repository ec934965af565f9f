package frame

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"strconv"
)

// Version is the protocol version this package speaks.
const Version = 1

// Versions lists every protocol version this package speaks, newest first.
var Versions = []uint16{Version}

// VersionsMessage is how an ERROR BAD_VERSION message begins: "versions "
// and the versions the sender speaks, comma-separated, newest first
// (PROTOCOL.md section 7). A coordinator parses it with ParseVersions and
// may retry with one of them.
func VersionsMessage() string {
	var b []byte
	b = append(b, "versions "...)
	for i, v := range Versions {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendUint(b, uint64(v), 10)
	}
	return string(b)
}

// ParseVersions reads the versions from a BAD_VERSION message; ok is false
// when the message does not start with VersionsMessage's form.
func ParseVersions(msg []byte) (versions []uint16, ok bool) {
	rest, found := bytes.CutPrefix(msg, []byte("versions "))
	if !found {
		return nil, false
	}
	if i := bytes.IndexByte(rest, ':'); i >= 0 {
		rest = rest[:i]
	}
	for _, f := range bytes.Split(rest, []byte(",")) {
		v, err := strconv.ParseUint(string(f), 10, 16)
		if err != nil {
			return nil, false
		}
		versions = append(versions, uint16(v))
	}
	return versions, true
}

// Magic opens every HELLO payload, so that a peer speaking something else
// is recognised at once.
const Magic = "REXI"

// NonceSize and MACSize are the sizes of handshake nonces and HMAC-SHA256 tags.
const (
	NonceSize = 32
	MACSize   = sha256.Size
)

// MaxNodeName is the longest node name, in bytes.
const MaxNodeName = 255

// Feature is a bit in the handshake's feature mask.
type Feature uint32

// Features. Unknown bits are ignored by the receiver and never echoed.
const (
	FeatureChecksum     Feature = 1 << 0 // xxhash64 trailer on every frame
	FeatureCompression  Feature = 1 << 1 // S2 compression of large payloads
	FeatureRange        Feature = 1 << 2 // every DOIT carries its shard range
	FeatureTraceContext Feature = 1 << 3 // every DOIT carries a W3C trace context field
	knownFeatures               = FeatureChecksum | FeatureCompression | FeatureRange | FeatureTraceContext
)

// MinMaxPayload is the smallest max_payload a peer may announce: a node
// refuses a HELLO announcing less (BAD_HANDSHAKE), and fits every EXIT and
// ERROR it sends into the coordinator's maximum.
const MinMaxPayload = 64

// Hello is the coordinator's first frame.
type Hello struct {
	Version     uint16
	Features    Feature // features the coordinator wants
	MaxPayload  uint32  // largest payload the coordinator accepts
	HeartbeatMs uint32  // interval of the coordinator's HEARTBEATs; 0: it sends none
	Nonce       [NonceSize]byte
	Name        []byte // coordinator's name, 0..255 bytes
}

// Welcome is the node's answer to a valid HELLO.
type Welcome struct {
	Version    uint16
	Features   Feature // features in force: requested ∩ enabled on the node
	MaxPayload uint32  // largest payload the node accepts
	Window     uint32  // un-acked STREAM rows per job
	LivenessMs uint32  // the node closes the connection after this long without a frame from it
	Nonce      [NonceSize]byte
	Name       []byte // node's name, 0..255 bytes
	MAC        [MACSize]byte
}

// AppendHello appends a HELLO frame (never checksummed or compressed).
func AppendHello(dst []byte, h Hello) []byte {
	var e Encoder
	dst, s := e.begin(dst, TypeHello, 0)
	dst = append(dst, Magic...)
	dst = appendHelloFields(dst, h.Version, h.Features, []uint32{h.MaxPayload, h.HeartbeatMs}, h.Nonce, h.Name)
	return e.finish(dst, s, false)
}

// AppendWelcome appends a WELCOME frame. w.MAC must already be set, from
// NodeMAC over the HELLO payload and WelcomeBody(w).
func AppendWelcome(dst []byte, w Welcome) []byte {
	var e Encoder
	dst, s := e.begin(dst, TypeWelcome, 0)
	dst = appendHelloFields(dst, w.Version, w.Features, w.numbers(), w.Nonce, w.Name)
	dst = append(dst, w.MAC[:]...)
	return e.finish(dst, s, false)
}

// AppendAuth appends an AUTH frame carrying the coordinator's MAC.
func AppendAuth(dst []byte, mac [MACSize]byte) []byte {
	var e Encoder
	dst, s := e.begin(dst, TypeAuth, 0)
	dst = append(dst, mac[:]...)
	return e.finish(dst, s, false)
}

// WelcomeBody returns the WELCOME payload without its MAC: the bytes the
// node's MAC covers together with the HELLO payload.
func WelcomeBody(w Welcome) []byte {
	return appendHelloFields(nil, w.Version, w.Features, w.numbers(), w.Nonce, w.Name)
}

func (w Welcome) numbers() []uint32 { return []uint32{w.MaxPayload, w.Window, w.LivenessMs} }

// HELLO and WELCOME share a layout: version u16, features u32, then their
// u32 numbers (HELLO: max_payload, heartbeat_ms; WELCOME: max_payload,
// window, liveness_ms), nonce, name_len u8, name.
func appendHelloFields(dst []byte, v uint16, f Feature, nums []uint32, nonce [NonceSize]byte, name []byte) []byte {
	if len(name) > MaxNodeName {
		name = name[:MaxNodeName]
	}
	dst = binary.BigEndian.AppendUint16(dst, v)
	dst = binary.BigEndian.AppendUint32(dst, uint32(f))
	for _, n := range nums {
		dst = binary.BigEndian.AppendUint32(dst, n)
	}
	dst = append(dst, nonce[:]...)
	dst = append(dst, byte(len(name)))
	return append(dst, name...)
}

func badHandshake(format string, args ...any) error {
	return &ProtocolError{Code: CodeBadHandshake, Detail: fmt.Sprintf(format, args...)}
}

// parseHelloFields parses the shared layout with len(nums) numbers.
func parseHelloFields(p []byte, what string, nums []*uint32) (v uint16, f Feature, nonce [NonceSize]byte, name, rest []byte, err error) {
	fixed := 2 + 4 + 4*len(nums) + NonceSize + 1
	if len(p) < fixed {
		err = badHandshake("%s payload too short (%d bytes)", what, len(p))
		return
	}
	v = binary.BigEndian.Uint16(p)
	f = Feature(binary.BigEndian.Uint32(p[2:]))
	for i, n := range nums {
		*n = binary.BigEndian.Uint32(p[6+4*i:])
	}
	copy(nonce[:], p[6+4*len(nums):])
	nl := int(p[fixed-1])
	p = p[fixed:]
	if len(p) < nl {
		err = badHandshake("%s name longer than payload", what)
		return
	}
	return v, f, nonce, p[:nl:nl], p[nl:], nil
}

// ParseHello parses a HELLO payload. It checks the magic and the layout; the
// version is the caller's to judge (reply CodeBadVersion).
func ParseHello(p []byte) (Hello, error) {
	var h Hello
	if len(p) < len(Magic) || string(p[:len(Magic)]) != Magic {
		return h, badHandshake("HELLO does not start with magic %q", Magic)
	}
	var rest []byte
	var err error
	h.Version, h.Features, h.Nonce, h.Name, rest, err = parseHelloFields(p[len(Magic):], "HELLO", []*uint32{&h.MaxPayload, &h.HeartbeatMs})
	if err == nil && len(rest) != 0 {
		err = badHandshake("HELLO has %d trailing bytes", len(rest))
	}
	return h, err
}

// ParseWelcome parses a WELCOME payload.
func ParseWelcome(p []byte) (Welcome, error) {
	var w Welcome
	var rest []byte
	var err error
	w.Version, w.Features, w.Nonce, w.Name, rest, err = parseHelloFields(p, "WELCOME", []*uint32{&w.MaxPayload, &w.Window, &w.LivenessMs})
	if err != nil {
		return w, err
	}
	if len(rest) != MACSize {
		return w, badHandshake("WELCOME MAC is %d bytes, want %d", len(rest), MACSize)
	}
	copy(w.MAC[:], rest)
	return w, nil
}

// ParseAuth parses an AUTH payload.
func ParseAuth(p []byte) ([MACSize]byte, error) {
	var mac [MACSize]byte
	if len(p) != MACSize {
		return mac, badHandshake("AUTH payload is %d bytes, want %d", len(p), MACSize)
	}
	copy(mac[:], p)
	return mac, nil
}

// Negotiate returns the features in force for a connection: those both
// asked for and enabled, limited to the ones this version knows.
func Negotiate(requested, enabled Feature) Feature {
	return requested & enabled & knownFeatures
}

// NodeMAC is the tag a node puts in WELCOME: HMAC-SHA256 keyed with the
// shared secret over "rexi-node-v1", the whole HELLO payload and the WELCOME
// payload without its MAC. It proves the node knows the secret and binds
// both nonces and every negotiated field.
func NodeMAC(secret, helloPayload, welcomeBody []byte) [MACSize]byte {
	return mac(secret, "rexi-node-v1", helloPayload, welcomeBody)
}

// CoordMAC is the tag a coordinator sends in AUTH: HMAC-SHA256 keyed with
// the shared secret over "rexi-coord-v1", the HELLO payload and the whole
// WELCOME payload (MAC included).
func CoordMAC(secret, helloPayload, welcomePayload []byte) [MACSize]byte {
	return mac(secret, "rexi-coord-v1", helloPayload, welcomePayload)
}

func mac(secret []byte, label string, a, b []byte) [MACSize]byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(label))
	m.Write(a)
	m.Write(b)
	var out [MACSize]byte
	m.Sum(out[:0])
	return out
}

// VerifyMAC compares two tags in constant time.
func VerifyMAC(got, want [MACSize]byte) bool { return hmac.Equal(got[:], want[:]) }
