package frame

import (
	"encoding/binary"

	"github.com/cespare/xxhash/v2"
	"github.com/klauspost/compress/s2"
)

// DefaultCompressThreshold is the payload size, in bytes, above which a
// payload is S2-compressed when compression was negotiated.
const DefaultCompressThreshold = 4 << 10

// Encoder appends frames to a caller's buffer under one connection's
// negotiated settings. The zero value writes plain frames (no checksum, no
// compression). An Encoder keeps a scratch buffer for compression, so it
// must not be used by two goroutines at once; it allocates nothing in
// steady state.
type Encoder struct {
	// Checksum appends an xxhash64 trailer to every frame.
	Checksum bool
	// Compress S2-compresses payloads larger than CompressThreshold when
	// that makes them smaller. Only set it when both ends negotiated S2.
	Compress bool
	// CompressThreshold in bytes; 0 means DefaultCompressThreshold.
	// Payloads of this size or smaller are never compressed.
	CompressThreshold int
	// Doit lists the optional DOIT fields in force (FeatureRange,
	// FeatureTraceContext): AppendDoit writes those fields.
	Doit Feature

	scratch []byte
}

// begin appends a header with a zero length and returns the header offset.
func (e *Encoder) begin(dst []byte, t Type, ref uint64) ([]byte, int) {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0, byte(t), 0, 0, 0)
	dst = binary.BigEndian.AppendUint64(dst, ref)
	return dst, start
}

// finish compresses the payload written since begin if worthwhile, patches
// length and flags, and appends the checksum.
func (e *Encoder) finish(dst []byte, start int, compressible bool) []byte {
	body := start + HeaderSize
	n := len(dst) - body
	if compressible && e.Compress && n > e.threshold() {
		e.scratch = s2.Encode(e.scratch[:cap(e.scratch)], dst[body:])
		if len(e.scratch) < n && n <= MaxExpansion*len(e.scratch) { // smaller, and not more than a receiver accepts
			dst = append(dst[:body], e.scratch...)
			n = len(e.scratch)
			dst[start+5] |= byte(FlagCompressed)
		}
	}
	binary.BigEndian.PutUint32(dst[start:], uint32(n))
	if e.Checksum {
		dst[start+5] |= byte(FlagChecksum)
		dst = binary.BigEndian.AppendUint64(dst, xxhash.Sum64(dst[start:]))
	}
	return dst
}

func (e *Encoder) threshold() int {
	if e.CompressThreshold > 0 {
		return e.CompressThreshold
	}
	return DefaultCompressThreshold
}

// AppendRaw appends f exactly as given: its flags are kept (a checksum is
// computed when f.Flags has FlagChecksum) and its payload is copied
// verbatim, never compressed. Re-encoding a decoded frame with AppendRaw
// reproduces its bytes; the Encoder's settings are ignored.
func AppendRaw(dst []byte, f Frame) []byte {
	start := len(dst)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(f.Payload)))
	dst = append(dst, byte(f.Type), byte(f.Flags), 0, 0)
	dst = binary.BigEndian.AppendUint64(dst, f.Ref)
	dst = append(dst, f.Payload...)
	if f.Flags&FlagChecksum != 0 {
		dst = binary.BigEndian.AppendUint64(dst, xxhash.Sum64(dst[start:]))
	}
	return dst
}

// AppendDoit appends a DOIT frame.
func (e *Encoder) AppendDoit(dst []byte, ref uint64, d Doit) []byte {
	dst, s := e.begin(dst, TypeDoit, ref)
	dst = appendDoitPayload(dst, &d, e.Doit)
	return e.finish(dst, s, true)
}

// Append appends a frame of type t whose payload is opaque bytes: REPLY,
// STREAM, LAST, or (with an empty payload) STREAM_INIT, START, CANCEL, PING,
// HEARTBEAT. The payload is compressed when the Encoder says so.
func (e *Encoder) Append(dst []byte, t Type, ref uint64, payload []byte) []byte {
	dst, s := e.begin(dst, t, ref)
	dst = append(dst, payload...)
	return e.finish(dst, s, true)
}

// AppendReply appends a REPLY frame carrying payload.
func (e *Encoder) AppendReply(dst []byte, ref uint64, payload []byte) []byte {
	return e.Append(dst, TypeReply, ref, payload)
}

// AppendStream appends a STREAM frame carrying one row.
func (e *Encoder) AppendStream(dst []byte, ref uint64, row []byte) []byte {
	return e.Append(dst, TypeStream, ref, row)
}

// AppendLast appends a LAST frame carrying payload.
func (e *Encoder) AppendLast(dst []byte, ref uint64, payload []byte) []byte {
	return e.Append(dst, TypeLast, ref, payload)
}

// AppendEmpty appends a frame with no payload: STREAM_INIT, START, CANCEL,
// PING or HEARTBEAT.
func (e *Encoder) AppendEmpty(dst []byte, t Type, ref uint64) []byte {
	return e.Append(dst, t, ref, nil)
}

// AppendAck appends an ACK frame for n consumed rows.
func (e *Encoder) AppendAck(dst []byte, ref uint64, n uint32) []byte {
	dst, s := e.begin(dst, TypeAck, ref)
	dst = binary.BigEndian.AppendUint32(dst, n)
	return e.finish(dst, s, false)
}

// AppendExit appends an EXIT frame.
func (e *Encoder) AppendExit(dst []byte, ref uint64, x Exit) []byte {
	dst, s := e.begin(dst, TypeExit, ref)
	dst = appendExitPayload(dst, x)
	return e.finish(dst, s, true)
}

// AppendKillAll appends one KILL_ALL frame for refs. Its ref field is 0.
// Callers keep len(refs)*8 within the peer's maximum payload.
func (e *Encoder) AppendKillAll(dst []byte, refs []uint64) []byte {
	dst, s := e.begin(dst, TypeKillAll, 0)
	for _, r := range refs {
		dst = binary.BigEndian.AppendUint64(dst, r)
	}
	return e.finish(dst, s, false)
}

// AppendError appends an ERROR frame. ref names the frame that caused it,
// or is 0.
func (e *Encoder) AppendError(dst []byte, ref uint64, code ErrorCode, msg string) []byte {
	dst, s := e.begin(dst, TypeError, ref)
	dst = binary.BigEndian.AppendUint16(dst, uint16(code))
	dst = append(dst, msg...)
	return e.finish(dst, s, false)
}
