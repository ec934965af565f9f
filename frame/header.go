package frame

import (
	"encoding/binary"
	"fmt"

	"github.com/cespare/xxhash/v2"
)

// Sizes of the fixed parts of a frame, in bytes.
const (
	HeaderSize   = 16 // length u32, type u8, flags u8, reserved u16, ref u64
	ChecksumSize = 8  // xxhash64 trailer, present when FlagChecksum is set
)

// DefaultMaxPayload is the default largest payload a receiver accepts (16 MiB),
// both as sent and, for compressed frames, once decompressed.
const DefaultMaxPayload = 16 << 20

// Type is the frame type byte.
type Type uint8

// Frame types. Values are part of the wire format.
const (
	TypeHello      Type = 0x01 // coordinator → node, first frame
	TypeWelcome    Type = 0x02 // node → coordinator, answer to HELLO
	TypeAuth       Type = 0x03 // coordinator → node, proves the secret
	TypeNoise      Type = 0x04 // both ways: a Noise handshake message (encrypted connections)
	TypeRecord     Type = 0x05 // both ways: a sealed record of frames (encrypted connections)
	TypeDoit       Type = 0x10 // coordinator → node: run a handler
	TypeReply      Type = 0x11 // node → coordinator: a worker's reply
	TypeStreamInit Type = 0x12 // node → coordinator: worker wants to stream
	TypeStart      Type = 0x13 // coordinator → node: go ahead and stream
	TypeCancel     Type = 0x14 // coordinator → node: stop, not chosen
	TypeStream     Type = 0x15 // node → coordinator: one row
	TypeAck        Type = 0x16 // coordinator → node: n rows consumed
	TypeLast       Type = 0x17 // node → coordinator: final message of a stream
	TypePing       Type = 0x18 // node → coordinator: worker still busy
	TypeExit       Type = 0x19 // node → coordinator: worker failed
	TypeKillAll    Type = 0x1A // coordinator → node: kill these refs
	TypeHeartbeat  Type = 0x20 // both ways: connection liveness
	TypeError      Type = 0x21 // both ways: connection-fatal error, then close
)

var typeNames = [256]string{
	TypeHello: "HELLO", TypeWelcome: "WELCOME", TypeAuth: "AUTH", TypeNoise: "NOISE", TypeRecord: "RECORD",
	TypeDoit: "DOIT", TypeReply: "REPLY", TypeStreamInit: "STREAM_INIT",
	TypeStart: "START", TypeCancel: "CANCEL", TypeStream: "STREAM",
	TypeAck: "ACK", TypeLast: "LAST", TypePing: "PING", TypeExit: "EXIT",
	TypeKillAll: "KILL_ALL", TypeHeartbeat: "HEARTBEAT", TypeError: "ERROR",
}

// Known reports whether t is a type defined by this protocol version.
func (t Type) Known() bool { return typeNames[t] != "" }

// String names the type as PROTOCOL.md does.
func (t Type) String() string {
	if t.Known() {
		return typeNames[t]
	}
	return fmt.Sprintf("TYPE(0x%02x)", uint8(t))
}

// Flags is the frame flags byte.
type Flags uint8

// Frame flags. Bits not listed here are reserved and must be zero.
const (
	FlagChecksum   Flags = 1 << 0 // an 8-byte xxhash64 trailer follows the payload
	FlagCompressed Flags = 1 << 1 // the payload is an S2 block
	knownFlags           = FlagChecksum | FlagCompressed
)

// Frame is one decoded frame. Payload aliases the decoder's input: it is
// valid only as long as that buffer is (for a node, until OnTraffic returns).
// For a compressed frame Payload holds the compressed bytes; see Decompress.
type Frame struct {
	Type    Type
	Flags   Flags
	Ref     uint64
	Payload []byte
}

// Decoder decodes frames under one connection's negotiated settings.
// The zero value accepts payloads up to DefaultMaxPayload, with neither
// checksums nor compression negotiated.
type Decoder struct {
	// MaxPayload is the largest payload accepted, in bytes; 0 means
	// DefaultMaxPayload. Larger length fields are rejected from the header
	// alone, before any payload is buffered.
	MaxPayload int
	// Checksum: checksums were negotiated, so every frame must carry one.
	// When false, a frame carrying one is malformed.
	Checksum bool
	// Compression: S2 was negotiated, so FlagCompressed is allowed.
	Compression bool
}

func (d *Decoder) maxPayload() int {
	if d.MaxPayload > 0 {
		return d.MaxPayload
	}
	return DefaultMaxPayload
}

// Decode decodes the frame at the start of buf and returns it with the
// number of bytes it occupies. When buf holds only part of a frame whose
// header is valid so far, it returns ErrIncomplete. Any other error is a
// *ProtocolError: the stream cannot be resynchronised and the connection
// must be closed. The header is checked as soon as its 16 bytes are present,
// so an oversize length or unknown type fails without waiting for a payload.
func (d *Decoder) Decode(buf []byte) (Frame, int, error) {
	var f Frame
	n, err := d.DecodeTo(&f, buf)
	return f, n, err
}

// DecodeTo is Decode writing the frame to *f, which it leaves alone on
// error. A loop that decodes many frames keeps one Frame this way: a
// Frame is too large for the compiler to keep in registers, and one
// returned by value is copied through a temporary with 16-byte loads of
// its 1- and 8-byte stores, which stall the CPU (a fifth of a node's
// work per DOIT: BenchmarkLoopReplyTurn 89 → 72 ns with DecodeTo).
func (d *Decoder) DecodeTo(f *Frame, buf []byte) (int, error) {
	if len(buf) < HeaderSize {
		return 0, ErrIncomplete
	}
	word := binary.BigEndian.Uint64(buf[0:8]) // length, type, flags, reserved
	n := uint32(word >> 32)
	t, fl := Type(word>>24), Flags(word>>16)
	// One comparison covers the common case; checkHeader names the failure.
	if fl&^FlagCompressed != d.checksumFlag() || uint16(word) != 0 || !t.Known() ||
		int64(n) > int64(d.maxPayload()) || (fl&FlagCompressed != 0 && !d.Compression) {
		return 0, d.checkHeader(t, fl, uint16(word), n)
	}
	end := HeaderSize + int(n)
	total := end
	if fl&FlagChecksum != 0 {
		total += ChecksumSize
	}
	if len(buf) < total {
		return 0, ErrIncomplete
	}
	if fl&FlagChecksum != 0 && xxhash.Sum64(buf[:end]) != binary.BigEndian.Uint64(buf[end:total]) {
		return 0, errBadChecksum
	}
	f.Type, f.Flags, f.Ref, f.Payload = t, fl, binary.BigEndian.Uint64(buf[8:16]), buf[HeaderSize:end:end]
	return total, nil
}

// Need returns how many bytes buf must hold before Decode can return a
// whole frame from its start (or a protocol error): the header size while
// the header is incomplete, then the whole frame's size. A buffer that
// already holds a frame, or a bad header, needs no more than it has.
func (d *Decoder) Need(buf []byte) int {
	if len(buf) < HeaderSize {
		return HeaderSize
	}
	n := int64(binary.BigEndian.Uint32(buf))
	if n > int64(d.maxPayload()) { // Decode reports it at once
		return len(buf)
	}
	total := HeaderSize + int(n)
	if Flags(buf[5])&FlagChecksum != 0 {
		total += ChecksumSize
	}
	return total
}

func (d *Decoder) checksumFlag() Flags {
	if d.Checksum {
		return FlagChecksum
	}
	return 0
}

// Preallocated so that the decoder allocates nothing, even when it fails.
var (
	errBadChecksum = &ProtocolError{Code: CodeBadChecksum, Detail: "xxhash64 trailer does not match header and payload"}
	errReserved    = &ProtocolError{Code: CodeMalformed, Detail: "reserved header bytes are not zero"}
	errFlags       = &ProtocolError{Code: CodeMalformed, Detail: "reserved flag bits set"}
	errNoChecksum  = &ProtocolError{Code: CodeMalformed, Detail: "checksums were negotiated but the frame carries none"}
	errChecksumOff = &ProtocolError{Code: CodeMalformed, Detail: "frame carries a checksum that was not negotiated"}
	errCompressOff = &ProtocolError{Code: CodeMalformed, Detail: "frame is compressed but compression was not negotiated"}
	errUnknownType = &ProtocolError{Code: CodeUnknownType, Detail: "type byte not defined by protocol version 1"}
	errTooLarge    = &ProtocolError{Code: CodeTooLarge, Detail: "length field exceeds the maximum payload size"}
)

func (d *Decoder) checkHeader(t Type, fl Flags, reserved uint16, n uint32) error {
	switch {
	case !t.Known():
		return errUnknownType
	case reserved != 0:
		return errReserved
	case fl&^knownFlags != 0:
		return errFlags
	case uint64(n) > uint64(d.maxPayload()):
		return errTooLarge
	case fl&FlagChecksum == 0 && d.Checksum:
		return errNoChecksum
	case fl&FlagChecksum != 0 && !d.Checksum:
		return errChecksumOff
	case fl&FlagCompressed != 0 && !d.Compression:
		return errCompressOff
	}
	return errFlags // unreachable: the fast path accepted nothing else
}
