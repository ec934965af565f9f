package secure

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/flynn/noise"
	"github.com/rexi-go/rexi/frame"
)

// A record is a frame of type RECORD whose payload is sealed frames:
//
//	length u32   bytes of ciphertext, tag included
//	type   u8    RECORD (0x05)
//	flags  u8    0
//	reserved u16 0
//	ref    u64   key generation: 0, then +1 at every rekey
//	ciphertext   AES-256-GCM(key, nonce, ad = the 16 header bytes, plaintext), tag last
//
// The nonce is the direction's record counter (Noise: 4 zero bytes and the
// counter as a big-endian u64), starting at 0 with each key.

// Record limits.
const (
	TagSize = 16 // AES-GCM tag
	// MaxRecordPlaintext is the most plaintext one record carries; a larger
	// write is sealed as several records.
	MaxRecordPlaintext = 1 << 20
	// MaxRecordPayload is the largest RECORD payload a receiver accepts.
	MaxRecordPayload = MaxRecordPlaintext + TagSize
)

// Rekey limits: a sender moves to its next key after this many records or
// bytes of plaintext under one key, whichever comes first.
const (
	DefaultRekeyRecords = 1 << 30
	DefaultRekeyBytes   = 1 << 36 // 64 GiB
)

// Sealer seals one direction's records. It is not safe for concurrent use.
type Sealer struct {
	cs      *noise.CipherState
	gen     uint64
	records uint64 // sealed under the current key
	bytes   uint64
	// RekeyRecords and RekeyBytes bound what one key seals; zero means the
	// defaults. Tests set them tiny.
	RekeyRecords, RekeyBytes uint64
}

func newSealer(cs *noise.CipherState) *Sealer { return &Sealer{cs: cs} }

// Seal appends plaintext to dst as one record per MaxRecordPlaintext bytes
// and returns dst. It moves to the next key first when the current one has
// sealed its limit.
func (s *Sealer) Seal(dst, plaintext []byte) []byte {
	for first := true; first || len(plaintext) > 0; first = false {
		n := min(len(plaintext), MaxRecordPlaintext)
		dst = s.sealOne(dst, plaintext[:n])
		plaintext = plaintext[n:]
	}
	return dst
}

func (s *Sealer) sealOne(dst, p []byte) []byte {
	if s.records >= limit(s.RekeyRecords, DefaultRekeyRecords) || s.bytes >= limit(s.RekeyBytes, DefaultRekeyBytes) {
		s.rekey()
	}
	start := len(dst)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(p)+TagSize))
	dst = append(dst, byte(frame.TypeRecord), 0, 0, 0)
	dst = binary.BigEndian.AppendUint64(dst, s.gen)
	header := dst[start : start+frame.HeaderSize]
	dst, err := s.cs.Encrypt(dst, header, p)
	if err != nil { // the nonce space, which a rekey resets long before
		panic(fmt.Sprintf("secure: sealing a record: %v", err))
	}
	s.records++
	s.bytes += uint64(len(p))
	return dst
}

func (s *Sealer) rekey() {
	s.cs.Rekey()
	s.cs.SetNonce(0)
	s.gen++
	s.records, s.bytes = 0, 0
}

// Generation is the current key generation.
func (s *Sealer) Generation() uint64 { return s.gen }

func limit(v, def uint64) uint64 {
	if v == 0 {
		return def
	}
	return v
}

// Opener opens one direction's records, in order. It is not safe for
// concurrent use.
type Opener struct {
	cs  *noise.CipherState
	gen uint64
}

func newOpener(cs *noise.CipherState) *Opener { return &Opener{cs: cs} }

// ErrRecord is wrapped by every failure to open a record: a forged,
// corrupted, replayed, reordered or missing record (the counter nonce
// disagrees), or a key generation out of sequence. The connection must end.
var ErrRecord = errors.New("secure: record does not open")

// Open appends the plaintext of the record f (a decoded RECORD frame;
// header its 16 header bytes as received) to dst.
func (o *Opener) Open(dst []byte, header []byte, f frame.Frame) ([]byte, error) {
	switch {
	case f.Type != frame.TypeRecord:
		return dst, fmt.Errorf("%w: a %s frame where a RECORD must be", ErrRecord, f.Type)
	case f.Ref == o.gen+1: // the sender moved to its next key
		o.cs.Rekey()
		o.cs.SetNonce(0)
		o.gen++
	case f.Ref != o.gen:
		return dst, fmt.Errorf("%w: key generation %d, expected %d", ErrRecord, f.Ref, o.gen)
	}
	n := o.cs.Nonce()
	out, err := o.cs.Decrypt(dst, header, f.Payload)
	if err != nil {
		return dst, fmt.Errorf("%w: record %d of key generation %d fails authentication (forged, corrupted, replayed, reordered or a record missing)", ErrRecord, n, o.gen)
	}
	return out, nil
}

// NoiseFrame appends a handshake message as a NOISE frame (ref 0, no
// checksum).
func NoiseFrame(dst, msg []byte) []byte {
	return (&frame.Encoder{}).Append(dst, frame.TypeNoise, 0, msg)
}
