package secure

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"
	"math"

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
// counter as a big-endian u64). It counts every record of the direction
// and does not restart with a new key, so records dropped just before a
// rekey leave the counters apart and the next record fails to open.

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

// direction is one direction's AES-256-GCM key and record counter. It
// takes the key from Noise's split and runs the cipher itself: one
// reusable nonce, no allocation per record.
type direction struct {
	aead  cipher.AEAD
	n     uint64 // records of this direction so far, across keys
	gen   uint64 // key generation
	nonce [12]byte
}

func newDirection(cs *noise.CipherState) direction {
	var d direction
	d.setKey(cs.UnsafeKey())
	return d
}

func (d *direction) setKey(k [32]byte) {
	block, err := aes.NewCipher(k[:])
	if err != nil { // only for a wrong key length
		panic(err)
	}
	if d.aead, err = cipher.NewGCM(block); err != nil {
		panic(err)
	}
}

// nonceFor is Noise's AESGCM nonce: 4 zero bytes, the counter big-endian.
func (d *direction) nonceFor(n uint64) []byte {
	binary.BigEndian.PutUint64(d.nonce[4:], n)
	return d.nonce[:]
}

// rekey is Noise's REKEY for AESGCM — the key becomes the first 32 bytes
// of the encryption of 32 zero bytes under the nonce 2^64-1 — for the next
// generation. The counter goes on: restarting it would let an attacker
// delete the records before a rekey unnoticed.
func (d *direction) rekey() {
	var zeros [32]byte
	out := d.aead.Seal(nil, d.nonceFor(math.MaxUint64), zeros[:], nil)
	d.setKey([32]byte(out[:32]))
	d.gen++
}

// Sealer seals one direction's records. It is not safe for concurrent use.
type Sealer struct {
	d       direction
	records uint64 // sealed under the current key
	bytes   uint64
	// RekeyRecords and RekeyBytes bound what one key seals; zero means the
	// defaults. Tests set them tiny.
	RekeyRecords, RekeyBytes uint64
}

func newSealer(cs *noise.CipherState) *Sealer { return &Sealer{d: newDirection(cs)} }

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
		s.d.rekey()
		s.records, s.bytes = 0, 0
	}
	start := len(dst)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(p)+TagSize))
	dst = append(dst, byte(frame.TypeRecord), 0, 0, 0)
	dst = binary.BigEndian.AppendUint64(dst, s.d.gen)
	header := dst[start : start+frame.HeaderSize]
	dst = s.d.aead.Seal(dst, s.d.nonceFor(s.d.n), p, header)
	s.d.n++
	s.records++
	s.bytes += uint64(len(p))
	return dst
}

// Generation is the current key generation.
func (s *Sealer) Generation() uint64 { return s.d.gen }

func limit(v, def uint64) uint64 {
	if v == 0 {
		return def
	}
	return v
}

// Opener opens one direction's records, in order. It is not safe for
// concurrent use.
type Opener struct{ d direction }

func newOpener(cs *noise.CipherState) *Opener { return &Opener{d: newDirection(cs)} }

// ErrRecord is wrapped by every failure to open a record: a forged,
// corrupted, replayed, reordered or missing record (the counter nonce
// disagrees), or a key generation out of sequence. The connection must end.
var ErrRecord = errors.New("secure: record does not open")

// Open appends the plaintext of the record f (a decoded RECORD frame;
// header its 16 header bytes as received) to dst.
func (o *Opener) Open(dst []byte, header []byte, f frame.Frame) ([]byte, error) {
	d := &o.d // no copy per record: the nonce it lends the AEAD would move it to the heap
	switch {
	case f.Type != frame.TypeRecord:
		return dst, fmt.Errorf("%w: a %s frame where a RECORD must be", ErrRecord, f.Type)
	case f.Ref == d.gen+1: // the sender moved to its next key, adopted only once a record opens with it
		next := o.d
		next.rekey()
		d = &next
	case f.Ref != d.gen:
		return dst, fmt.Errorf("%w: key generation %d, expected %d", ErrRecord, f.Ref, d.gen)
	}
	out, err := d.aead.Open(dst, d.nonceFor(d.n), f.Payload, header)
	if err != nil {
		return dst, fmt.Errorf("%w: record %d (key generation %d) fails authentication (forged, corrupted, replayed, reordered or a record missing)", ErrRecord, d.n, d.gen)
	}
	d.n++
	if d != &o.d {
		o.d = *d
	}
	return out, nil
}

// NoiseFrame appends a handshake message as a NOISE frame (ref 0, no
// checksum).
func NoiseFrame(dst, msg []byte) []byte {
	return (&frame.Encoder{}).Append(dst, frame.TypeNoise, 0, msg)
}
