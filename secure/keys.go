package secure

import (
	"bytes"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// KeySize is the size of a Curve25519 key, private or public.
const KeySize = 32

// PrivateKey is a node's or a coordinator's static Curve25519 private key.
type PrivateKey [KeySize]byte

// PublicKey is a static Curve25519 public key.
type PublicKey [KeySize]byte

// GenerateKey returns a new private key from crypto/rand.
func GenerateKey() (PrivateKey, error) { return generateKey(rand.Reader) }

func generateKey(r io.Reader) (PrivateKey, error) {
	var k PrivateKey
	if _, err := io.ReadFull(r, k[:]); err != nil {
		return k, fmt.Errorf("secure: generating a key: %w", err)
	}
	return k, nil
}

// Public returns the key's public half.
func (k PrivateKey) Public() PublicKey {
	priv, err := ecdh.X25519().NewPrivateKey(k[:])
	if err != nil { // only for a wrong length, which the array rules out
		panic(err)
	}
	var p PublicKey
	copy(p[:], priv.PublicKey().Bytes())
	return p
}

// IsZero reports whether the key is unset.
func (k PrivateKey) IsZero() bool { return k == PrivateKey{} }

// String encodes a public key as standard base64 (44 characters).
func (p PublicKey) String() string { return base64.StdEncoding.EncodeToString(p[:]) }

// ErrBadKey is wrapped by every error about a key's encoding.
var ErrBadKey = errors.New("secure: bad key")

// ParsePublicKey decodes a public key written by PublicKey.String.
func ParsePublicKey(s string) (PublicKey, error) {
	var p PublicKey
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil || len(b) != KeySize {
		return p, fmt.Errorf("%w: %q is not a base64 Curve25519 public key (32 bytes)", ErrBadKey, s)
	}
	copy(p[:], b)
	return p, nil
}

// Key files hold one base64 line: "rexi-private-key " and the private key,
// or "rexi-public-key " and a public key. Lists of public keys (the peers a
// side accepts) hold one public key per line, in either form; blank lines
// and lines starting with # are ignored.
const (
	privatePrefix = "rexi-private-key "
	publicPrefix  = "rexi-public-key "
)

// MarshalPrivateKey is the content of a private key file.
func MarshalPrivateKey(k PrivateKey) []byte {
	return []byte(privatePrefix + base64.StdEncoding.EncodeToString(k[:]) + "\n")
}

// MarshalPublicKey is the content of a public key file.
func MarshalPublicKey(p PublicKey) []byte { return []byte(publicPrefix + p.String() + "\n") }

// ParsePrivateKey decodes a private key file's content.
func ParsePrivateKey(b []byte) (PrivateKey, error) {
	var k PrivateKey
	s, ok := strings.CutPrefix(strings.TrimSpace(string(b)), privatePrefix)
	if !ok {
		return k, fmt.Errorf("%w: a private key file starts with %q", ErrBadKey, strings.TrimSpace(privatePrefix))
	}
	raw, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(raw) != KeySize {
		return k, fmt.Errorf("%w: the private key is not 32 bytes of base64", ErrBadKey)
	}
	copy(k[:], raw)
	return k, nil
}

// ErrKeyFileMode: a private key file any user may read.
var ErrKeyFileMode = errors.New("secure: private key file readable by every user")

// ReadPrivateKeyFile reads a private key file. A file that any user may
// read or write is refused (ErrKeyFileMode). (Group access is allowed: a
// Kubernetes Secret reaches a non-root process through its group.)
func ReadPrivateKeyFile(path string) (PrivateKey, error) {
	st, err := os.Stat(path)
	if err != nil {
		return PrivateKey{}, err
	}
	if st.Mode().Perm()&0o007 != 0 {
		return PrivateKey{}, fmt.Errorf("%w: %s has mode %v; chmod 600 it", ErrKeyFileMode, path, st.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return PrivateKey{}, err
	}
	k, err := ParsePrivateKey(b)
	if err != nil {
		return k, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// ParsePublicKeys decodes a list of public keys, one per line.
func ParsePublicKeys(b []byte) ([]PublicKey, error) {
	var out []PublicKey
	for i, line := range bytes.Split(b, []byte("\n")) {
		s := strings.TrimSpace(string(line))
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		if strings.HasPrefix(s, privatePrefix) { // never echo a private key into an error
			return nil, fmt.Errorf("line %d: %w: a private key, where public keys must be (give the .pub file)", i+1, ErrBadKey)
		}
		p, err := ParsePublicKey(strings.TrimPrefix(s, publicPrefix))
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", i+1, err)
		}
		out = append(out, p)
	}
	return out, nil
}

// ReadPublicKeysFile reads a list of public keys. A file with none is an
// error: an empty list pins nothing, and a file emptied to revoke every
// key must not let every key in.
func ReadPublicKeysFile(path string) ([]PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	keys, err := ParsePublicKeys(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%s: %w: no public key in the file (an empty list would accept every key)", path, ErrBadKey)
	}
	return keys, nil
}

// PSK derives the handshake's pre-shared key from the cluster secret:
// HKDF-SHA256 with no salt and the info "rexi noise psk v1".
func PSK(secret []byte) [32]byte {
	b, err := hkdf.Key(sha256.New, secret, nil, "rexi noise psk v1", 32)
	if err != nil { // only for an impossible length
		panic(err)
	}
	var k [32]byte
	copy(k[:], b)
	return k
}
