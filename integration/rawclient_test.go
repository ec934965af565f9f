package integration

import (
	"testing"

	"github.com/rexi-go/rexi/frame"
	"github.com/rexi-go/rexi/internal/wiretest"
)

// dialAuth connects a protocol-only client and completes the (encrypted)
// handshake.
func dialAuth(t testing.TB, addr string) *wiretest.Client {
	t.Helper()
	c := wiretest.Dial(t, addr)
	c.EncryptedHandshake(attackerKey, []byte(secret), frame.Hello{Version: frame.Version, MaxPayload: frame.DefaultMaxPayload, Name: []byte("raw")})
	return c
}
