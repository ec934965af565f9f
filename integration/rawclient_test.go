package integration

import (
	"testing"

	"github.com/rexi-go/rexi/internal/wiretest"
)

// dialAuth connects a protocol-only client and completes the handshake.
func dialAuth(t testing.TB, addr string) *wiretest.Client {
	t.Helper()
	c := wiretest.Dial(t, addr)
	c.Handshake([]byte(secret), 0)
	return c
}
