// Package secure is rexi's transport security: a Noise handshake that
// authenticates both ends of a connection and the record layer that seals
// every batch of frames that one write sends. Node and coordinator both
// use it; it does no I/O and starts no goroutine, so the node's event loop
// and the coordinator's blocking sockets drive it alike.
//
// The handshake is Noise_XXpsk3_25519_AESGCM_SHA256 (PROTOCOL.md section
// 8): each side proves it holds its Curve25519 static key, and both prove
// they know the cluster secret, from which the pre-shared key is derived.
// Either side may pin the other's public key. The transport keys it yields
// seal records with AES-256-GCM and a per-direction counter nonce; a
// forged, replayed, reordered or missing record fails to open, and the
// connection must end.
//
// The package knows frames only as far as records are frames themselves
// (type RECORD, and NOISE for handshake messages).
package secure
