package frame

import (
	"github.com/klauspost/compress/s2"
)

var (
	errCompressedHeader = &ProtocolError{Code: CodeMalformed, Detail: "compressed payload has no valid S2 length header"}
	errCompressedSize   = &ProtocolError{Code: CodeTooLarge, Detail: "decompressed size exceeds the maximum payload size"}
	errCompressedData   = &ProtocolError{Code: CodeMalformed, Detail: "compressed payload is not a valid S2 block"}
)

// Payload returns f's payload ready to parse: f.Payload itself when the
// frame is not compressed, else the decompressed bytes in buf (grown if its
// capacity is too small; pass the returned buffer back next time to reuse
// it). The decompressed size is read from the S2 header and checked against
// maxPayload (0 means DefaultMaxPayload) before any byte is written, so a
// decompression bomb costs nothing.
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
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	out, err := s2.Decode(buf[:n], f.Payload)
	if err != nil {
		return nil, buf, errCompressedData
	}
	return out, buf, nil
}
