package coord

import (
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rexi-go/rexi/frame"
)

// flappingNode completes every handshake (plaintext) and then ends the
// session at once: with ERROR IDLE_TIMEOUT when sayWhy, else by just
// closing. It counts the handshakes.
func flappingNode(t *testing.T, sayWhy bool) (addr string, handshakes *atomic.Int64) {
	t.Helper()
	handshakes = new(atomic.Int64)
	addr = fakeNode(t, func(conn net.Conn) {
		_ = conn.SetDeadline(time.Now().Add(waitFor))
		w := frame.Welcome{Version: frame.Version, MaxPayload: frame.DefaultMaxPayload, LivenessMs: 1000, Name: []byte("flapping")}
		if _, err := welcomeAs(conn, w); err == nil {
			handshakes.Add(1)
			if sayWhy {
				_, _ = conn.Write((&frame.Encoder{}).AppendError(nil, 0, frame.CodeIdleTimeout, "no frame for 1s"))
			}
		}
	})
	return addr, handshakes
}

// A node that accepts the handshake and then drops the session is
// redialled with a growing backoff, not in a tight loop of handshakes.
func TestLostSessionsAreRedialledWithBackoff(t *testing.T) {
	for _, c := range []struct {
		name   string
		sayWhy bool
	}{{"closed", false}, {"IDLE_TIMEOUT", true}} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			addr, handshakes := flappingNode(t, c.sayWhy)
			// The default backoff, 50 ms doubling to 5 s, jittered over
			// [d/2, d): the waits add up to at least 25+50+...+800 ms =
			// 1.575 s after 6 of them, so 2 s hold at most 7 handshakes
			// (plus the one NewClient waits for). Redialling at once makes
			// hundreds.
			const window, most = 2 * time.Second, 10
			cl, err := NewClient(Config{Nodes: []string{addr}, Secret: secret, InsecurePlaintext: true, Logger: testLogger()})
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			first := handshakes.Load()
			time.Sleep(window) // the measurement itself: count what the window holds
			n := handshakes.Load() - first
			t.Logf("%d handshakes in %v after the first", n, window)
			if n > most {
				t.Fatalf("%d handshakes in %v after the first, want at most %d: lost sessions are redialled without backoff", n, window, most)
			}
			if n < 1 {
				t.Fatalf("no handshake in %v after the first: the lost node is not redialled", window)
			}
		})
	}
}

// Close ends a peer's wait before it redials a lost node at once, however
// long the backoff.
func TestCloseCutsTheRedialWait(t *testing.T) {
	addr, _ := flappingNode(t, false)
	cl, err := NewClient(Config{Nodes: []string{addr}, Secret: secret, InsecurePlaintext: true, Logger: testLogger(),
		ReconnectMin: time.Minute, ReconnectMax: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the session lost", func() bool { return nodeStates(cl)[addr] == NodeDown })
	start := time.Now()
	cl.Close()
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("Close took %v while the peer waited to redial: the wait does not end on Close", took)
	}
}
