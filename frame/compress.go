package frame

import (
	"fmt"

	"github.com/klauspost/compress/s2"
)

var (
	errCompressedHeader = &ProtocolError{Code: CodeMalformed, Detail: "compressed payload has no valid S2 length header"}
	errCompressedSize   = &ProtocolError{Code: CodeTooLarge, Detail: "decompressed size exceeds the maximum payload size"}
	errCompressedData   = &ProtocolError{Code: CodeMalformed, Detail: "compressed payload is not a valid S2 block"}
	errCompressedRatio  = &ProtocolError{Code: CodeMalformed, Detail: fmt.Sprintf("compressed payload expands more than %d times its size", MaxExpansion)}
)

// MaxExpansion bounds how many times its own size a compressed payload may
// decode to. S2 can encode 16 MiB in a few dozen bytes: without a bound, a
// peer could make a receiver decompress gigabytes (and, for a node, spend
// its event loop on them) for a few kilobytes sent. A sender whose
// compressed payload would expand more sends it uncompressed.
const MaxExpansion = 64

// Payload returns f's payload ready to parse: f.Payload itself when the
// frame is not compressed, else the decompressed bytes in buf (grown if its
// capacity is too small; pass the returned buffer back next time to reuse
// it). The decompressed size is read from the S2 header and checked against
// maxPayload (0 means DefaultMaxPayload) and MaxExpansion before any byte is
// written, so decompressing costs at most what reading MaxExpansion times
// the bytes uncompressed would.
func Payload(f Frame, buf []byte, maxPayload int) (payload, newBuf []byte, err error) {
	if f.Flags&FlagCompressed == 0 {
		return f.Payload, buf, nil
	}
	if maxPayload <= 0 {
		maxPayload = DefaultMaxPayload
	}
	n, err := s2.DecodedLen(f.Payload)
	if err != nil {
		return nil, buf, errCompressedHeader
	}
	if n > maxPayload {
		return nil, buf, errCompressedSize
	}
	if n > MaxExpansion*len(f.Payload) {
		return nil, buf, errCompressedRatio
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
