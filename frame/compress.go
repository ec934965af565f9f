package frame

import (
	"fmt"

	"github.com/klauspost/compress/s2"
)

var (
	errCompressedHeader = &ProtocolError{Code: CodeMalformed, Detail: "compressed payload has no valid S2 length header"}
	errCompressedSize   = &ProtocolError{Code: CodeTooLarge, Detail: "decompressed size exceeds the maximum payload size"}
	errCompressedData   = &ProtocolError{Code: CodeMalformed, Detail: "compressed payload is not a valid S2 block"}
	errCompressedRatio  = &ProtocolError{Code: CodeMalformed, Detail: fmt.Sprintf("compressed payloads decode to more than %d times what was received, plus %d MiB", MaxExpansion, ExpansionAllowance>>20)}
)

// S2 can encode 16 MiB in a few dozen bytes: without a bound, a peer could
// make a receiver decompress gigabytes (and, for a node, spend its event
// loop on them) for a few kilobytes sent. So a connection's compressed
// payloads may decode, all together, to at most MaxExpansion times the
// compressed bytes received plus ExpansionAllowance (ExpansionBudget); a
// sender stays within it by sending raw any payload that would expand
// more than MaxExpansion times.
const (
	MaxExpansion       = 64
	ExpansionAllowance = 32 << 20
)

// ExpansionBudget is one connection's bound on what its compressed
// payloads decode to. The zero value is ready to use.
type ExpansionBudget struct {
	left    int64
	started bool
}

// Payload is the package's Payload, refusing (MALFORMED, before
// decompressing) a compressed frame that would take the connection past
// its budget.
func (b *ExpansionBudget) Payload(f Frame, buf []byte, maxPayload int) (payload, newBuf []byte, err error) {
	if f.Flags&FlagCompressed != 0 {
		if !b.started {
			b.started, b.left = true, ExpansionAllowance
		}
		b.left += MaxExpansion * int64(len(f.Payload))
		if n, err := s2.DecodedLen(f.Payload); err == nil {
			if n > orDefaultMax(maxPayload) {
				return nil, buf, errCompressedSize // over the maximum is TOO_LARGE, whatever the budget says
			}
			if int64(n) > b.left {
				return nil, buf, errCompressedRatio
			}
			b.left -= int64(n)
		}
	}
	return Payload(f, buf, maxPayload)
}

// Payload returns f's payload ready to parse: f.Payload itself when the
// frame is not compressed, else the decompressed bytes in buf (grown if its
// capacity is too small; pass the returned buffer back next time to reuse
// it). The decompressed size is read from the S2 header and checked against
// maxPayload (0 means DefaultMaxPayload) before any byte is written. A
// connection bounds what its frames decode to all together with
// ExpansionBudget.Payload.
func Payload(f Frame, buf []byte, maxPayload int) (payload, newBuf []byte, err error) {
	if f.Flags&FlagCompressed == 0 {
		return f.Payload, buf, nil
	}
	n, err := s2.DecodedLen(f.Payload)
	if err != nil {
		return nil, buf, errCompressedHeader
	}
	if n > orDefaultMax(maxPayload) {
		return nil, buf, errCompressedSize
	}
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	out, err := s2.Decode(buf[:n], f.Payload)
	if err != nil {
		return nil, buf, errCompressedData
	}
	return out, buf, nil
}

// orDefaultMax is maxPayload, or DefaultMaxPayload for 0.
func orDefaultMax(maxPayload int) int {
	if maxPayload <= 0 {
		return DefaultMaxPayload
	}
	return maxPayload
}
