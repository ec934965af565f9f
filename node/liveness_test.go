package node

import (
	"testing"
	"time"
)

// The liveness a node states in WELCOME, as PROTOCOL.md section 3 gives
// it, examples included.
func TestLivenessAsProtocolStates(t *testing.T) {
	for _, c := range []struct {
		idle        time.Duration
		heartbeatMs uint32
		want        time.Duration
	}{
		{3 * time.Second, 300, 1200 * time.Millisecond},
		{3 * time.Second, 100, time.Second},
		{3 * time.Second, 1000, 3 * time.Second},
		{3 * time.Second, 0, 3 * time.Second},
		{500 * time.Millisecond, 1000, time.Second}, // the cap is never under 1 s
		{0, 1000, 4 * time.Second},
		{0, 0, 0},
	} {
		if got := (Config{IdleTimeout: c.idle}).liveness(c.heartbeatMs); got != c.want {
			t.Errorf("idle %v, heartbeat_ms %d: liveness %v, want %v", c.idle, c.heartbeatMs, got, c.want)
		}
	}
}
