package frame

import (
	"errors"
	"fmt"
)

// ErrIncomplete reports that the buffer holds the start of a frame but not
// all of it. It is not a protocol error: read more bytes and decode again.
var ErrIncomplete = errors.New("frame: incomplete, need more bytes")

// Sentinel protocol errors. Every error the decoder and the payload parsers
// return for bad input is a *ProtocolError whose Is method matches exactly
// one of these, so callers test with errors.Is and never with strings.
var (
	ErrMalformed   = errors.New("frame: malformed")
	ErrTooLarge    = errors.New("frame: exceeds maximum frame size")
	ErrBadChecksum = errors.New("frame: checksum mismatch")
	ErrUnknownType = errors.New("frame: unknown frame type")
)

// ProtocolError is a decoding failure with its wire error code and a detail
// that names the offending field. A peer that sent it is told the same code
// in an ERROR frame (see PROTOCOL.md).
type ProtocolError struct {
	Code   ErrorCode
	Detail string
}

// Error implements error.
func (e *ProtocolError) Error() string {
	return fmt.Sprintf("frame: %s: %s", e.Code, e.Detail)
}

// Is matches the sentinel that corresponds to the error's code.
func (e *ProtocolError) Is(target error) bool {
	switch target {
	case ErrMalformed:
		return e.Code == CodeMalformed
	case ErrTooLarge:
		return e.Code == CodeTooLarge
	case ErrBadChecksum:
		return e.Code == CodeBadChecksum
	case ErrUnknownType:
		return e.Code == CodeUnknownType
	}
	return false
}

// ErrorCode is the 16-bit code carried by an ERROR frame.
type ErrorCode uint16

// Error codes of ERROR frames (PROTOCOL.md, "ERROR").
const (
	CodeMalformed      ErrorCode = 1  // a frame or payload violates the format
	CodeTooLarge       ErrorCode = 2  // length field above the receiver's maximum
	CodeBadChecksum    ErrorCode = 3  // checksum trailer does not match
	CodeUnknownType    ErrorCode = 4  // type byte not defined by this version
	CodeUnexpected     ErrorCode = 5  // a valid frame in the wrong state or direction
	CodeBadHandshake   ErrorCode = 6  // first frame is not HELLO, bad magic or fields
	CodeBadVersion     ErrorCode = 7  // protocol version not supported
	CodeAuthFailed     ErrorCode = 8  // HMAC did not verify
	CodeShuttingDown   ErrorCode = 9  // node is draining and refuses work
	CodeInternal       ErrorCode = 10 // receiver failed for its own reasons
	CodeOutputOverflow ErrorCode = 11 // peer does not read; outbound bound exceeded
	CodeIdleTimeout    ErrorCode = 12 // nothing received for the idle timeout
	CodeOverloaded     ErrorCode = 13 // the node is at a connection limit
	CodeBadRecord      ErrorCode = 14 // a record does not open: forged, replayed, reordered or missing
)

var codeNames = [...]string{
	CodeMalformed:      "malformed frame",
	CodeTooLarge:       "frame too large",
	CodeBadChecksum:    "bad checksum",
	CodeUnknownType:    "unknown frame type",
	CodeUnexpected:     "unexpected frame",
	CodeBadHandshake:   "bad handshake",
	CodeBadVersion:     "unsupported protocol version",
	CodeAuthFailed:     "authentication failed",
	CodeShuttingDown:   "shutting down",
	CodeInternal:       "internal error",
	CodeOutputOverflow: "output overflow",
	CodeIdleTimeout:    "idle timeout",
	CodeOverloaded:     "overloaded",
	CodeBadRecord:      "bad record",
}

// String names the code as PROTOCOL.md does.
func (c ErrorCode) String() string {
	if int(c) < len(codeNames) && codeNames[c] != "" {
		return codeNames[c]
	}
	return fmt.Sprintf("error code %d", uint16(c))
}
