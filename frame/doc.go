// Package frame is the rexi wire format: the frame header, the frame types
// and their payloads, the handshake messages, checksums and S2 compression.
//
// Everything here is a pure function over byte slices: encoders append to a
// caller's buffer, the decoder reads in place and returns sub-slices of its
// input. The package does no I/O, starts no goroutines and knows nothing of
// sockets or jobs, so the same code serves the node's event loop, the
// coordinator's reader, test clients and the fuzzer. PROTOCOL.md at the
// repository root is the normative description; this package implements it.
package frame
