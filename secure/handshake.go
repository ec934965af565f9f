package secure

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/flynn/noise"
)

// ProtocolName is the Noise protocol rexi runs.
const ProtocolName = "Noise_XXpsk3_25519_AESGCM_SHA256"

// Prologue is mixed into the handshake by both sides: a peer speaking
// another version of the protocol fails the handshake.
const Prologue = "rexi/1"

var suite = noise.NewCipherSuite(noise.DH25519, noise.CipherAESGCM, noise.HashSHA256)

// Config is one side's handshake settings.
type Config struct {
	Key PrivateKey // this side's static key
	// Secret is the cluster secret; the PSK is derived from it.
	Secret []byte
	// Allowed, when not empty, are the only peer static keys accepted.
	Allowed []PublicKey
	// Random replaces crypto/rand for the ephemeral key (golden vectors).
	Random io.Reader

	pub   PublicKey // Key's public half and the PSK, once Prepared
	psk   [32]byte
	ready bool
}

// Prepared returns the settings with the static public key and the PSK
// computed: a node that starts a handshake for every connection (before
// knowing who is there) passes it to NewHandshake and so skips an X25519
// operation and a key derivation per connection.
func (cfg Config) Prepared() Config {
	cfg.pub, cfg.psk, cfg.ready = cfg.Key.Public(), PSK(cfg.Secret), true
	return cfg
}

// Errors a handshake reports. Each is wrapped with detail.
var (
	// ErrAuth: the peer did not prove it knows the cluster secret, or a
	// handshake message does not decrypt.
	ErrAuth = errors.New("secure: handshake authentication failed")
	// ErrPeerKey: the peer's static key is not one of the allowed keys.
	ErrPeerKey = errors.New("secure: peer key not allowed")
)

// Handshake is one side of a Noise handshake in progress: the coordinator
// initiates (messages 1 and 3), the node responds (message 2).
type Handshake struct {
	hs        *noise.HandshakeState
	allowed   []PublicKey
	initiator bool
}

// NewHandshake starts a handshake; initiator is the coordinator's side.
func NewHandshake(cfg Config, initiator bool) (*Handshake, error) {
	if !cfg.ready {
		cfg = cfg.Prepared()
	}
	psk, pub := cfg.psk, cfg.pub
	r := cfg.Random
	if r == nil {
		r = rand.Reader
	}
	hs, err := noise.NewHandshakeState(noise.Config{
		CipherSuite:           suite,
		Random:                r,
		Pattern:               noise.HandshakeXX,
		Initiator:             initiator,
		Prologue:              []byte(Prologue),
		PresharedKey:          psk[:],
		PresharedKeyPlacement: 3,
		StaticKeypair:         noise.DHKey{Private: cfg.Key[:], Public: pub[:]},
	})
	if err != nil {
		return nil, fmt.Errorf("secure: %w", err)
	}
	return &Handshake{hs: hs, allowed: cfg.Allowed, initiator: initiator}, nil
}

// Write appends the next handshake message, carrying payload, to dst.
// After the last message it also returns the session.
func (h *Handshake) Write(dst, payload []byte) ([]byte, *Session, error) {
	out, c1, c2, err := h.hs.WriteMessage(dst, payload)
	if err != nil {
		return dst, nil, fmt.Errorf("secure: writing a handshake message: %w", err)
	}
	return out, h.session(c1, c2), nil
}

// Read processes the peer's next handshake message and appends its payload
// to dst. Once the peer's static key is known it is checked against the
// allowed keys. After the last message it also returns the session.
func (h *Handshake) Read(dst, msg []byte) ([]byte, *Session, error) {
	out, c1, c2, err := h.hs.ReadMessage(dst, msg)
	if err != nil {
		return dst, nil, fmt.Errorf("%w: %v (a wrong cluster secret, or a corrupted message)", ErrAuth, err)
	}
	if rs := h.hs.PeerStatic(); len(rs) == KeySize && len(h.allowed) > 0 {
		var p PublicKey
		copy(p[:], rs)
		if !slices.Contains(h.allowed, p) {
			return dst, nil, fmt.Errorf("%w: %s", ErrPeerKey, p)
		}
	}
	return out, h.session(c1, c2), nil
}

// PeerKey is the peer's static public key, once a message carried it.
func (h *Handshake) PeerKey() (PublicKey, bool) {
	var p PublicKey
	rs := h.hs.PeerStatic()
	if len(rs) != KeySize {
		return p, false
	}
	copy(p[:], rs)
	return p, true
}

// session turns the split cipher states into this side's send and
// receive halves: c1 carries initiator → responder.
func (h *Handshake) session(c1, c2 *noise.CipherState) *Session {
	if c1 == nil {
		return nil
	}
	if h.initiator {
		return &Session{Send: newSealer(c1), Recv: newOpener(c2)}
	}
	return &Session{Send: newSealer(c2), Recv: newOpener(c1)}
}

// Session is an established connection's two directions.
type Session struct {
	Send *Sealer
	Recv *Opener
}
