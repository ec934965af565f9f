package coord

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/rexi-go/rexi/frame"
	"github.com/rexi-go/rexi/node"
	"github.com/rexi-go/rexi/secure"
)

// A node that closes a connection with ERROR leaves its code where
// errors.As finds it, and a client closed under a fan-out fails its jobs
// with an error that matches ErrClosed.
func TestConnectionEndingsAreTyped(t *testing.T) {
	c := newCluster(t, 1, nil, nil)
	co := mustNew(t, c.cl, context.Background(), 1)
	defer co.Close()
	co.Submit(Job{Node: c.addrs[0], Handler: "block"})
	c.waitLive(t, 1)
	go c.nodes[0].Close() // sends ERROR SHUTTING_DOWN to every connection
	var got error
	co.Recv(RecvOptions{Timeout: waitFor}, func(m Message) (bool, error) { got = m.Err; return true, nil })
	var ne *NodeError
	if !errors.Is(got, ErrNodeDown) || !errors.As(got, &ne) || ne.Code != frame.CodeShuttingDown || ne.Node != c.addrs[0] {
		t.Fatalf("job ended with %v; want node-down caused by a NodeError SHUTTING_DOWN from %s", got, c.addrs[0])
	}

	d := newCluster(t, 1, nil, nil)
	co2 := mustNew(t, d.cl, context.Background(), 1)
	defer co2.Close()
	co2.Submit(Job{Node: d.addrs[0], Handler: "block"})
	d.waitLive(t, 1)
	go d.cl.Close()
	got = nil
	co2.Recv(RecvOptions{Timeout: waitFor}, func(m Message) (bool, error) { got = m.Err; return true, nil })
	if !errors.Is(got, ErrNodeDown) || !errors.Is(got, ErrClosed) {
		t.Fatalf("job ended with %v; want node-down matching ErrClosed", got)
	}
}

// A deadline shorter than a millisecond stays a deadline on the wire,
// where 0 means none.
func TestTimeoutMillisRoundsUp(t *testing.T) {
	for d, want := range map[time.Duration]uint32{0: 0, time.Microsecond: 1, 500 * time.Microsecond: 1,
		time.Millisecond: 1, 1500 * time.Microsecond: 2, time.Second: 1000} {
		if got := timeoutMillis(d); got != want {
			t.Errorf("timeoutMillis(%v) = %d, want %d", d, got, want)
		}
	}
}

// A node whose liveness bound (WELCOME liveness_ms) is shorter than four
// of our heartbeat intervals is heartbeaten often enough to keep the
// connection: an idle fan-out's job outlives several of those bounds.
func TestHeartbeatKeepsToTheNodesLivenessBound(t *testing.T) {
	c := newCluster(t, 1, func(cfg *Config) { cfg.HeartbeatInterval, cfg.HeartbeatTimeout = 10*time.Second, 30*time.Second },
		func(cfg *node.Config) { cfg.IdleTimeout = time.Second })
	co := mustNew(t, c.cl, context.Background(), 1)
	defer co.Close()
	co.Submit(Job{Node: c.addrs[0], Handler: "block"})
	c.waitLive(t, 1)
	var got error
	err := co.Recv(RecvOptions{Timeout: 3 * time.Second}, func(m Message) (bool, error) { got = m.Err; return true, nil })
	var te *TimeoutError
	if !errors.As(err, &te) || got != nil {
		t.Fatalf("Recv %v, message error %v; want the job still running after 3 s (the node's bound is 1 s)", err, got)
	}
	if live := c.live(); live != 1 {
		t.Fatalf("%d live workers, want 1", live)
	}
}

// Pinned node keys need encryption: with a plaintext client they would be
// silently ignored, so the configuration is refused.
func TestPinnedKeysNeedEncryption(t *testing.T) {
	cfg := Config{Nodes: []string{"127.0.0.1:1"}, Secret: secret, InsecurePlaintext: true, NodeKeys: []secure.PublicKey{{1}}}
	if err := cfg.Validate(); !errors.Is(err, ErrConfig) {
		t.Fatalf("Validate %v, want ErrConfig", err)
	}
}

// A node's text reaches the application's error messages quoted when it
// holds anything that does not print (terminal escapes, forged lines);
// ordinary text reads as it was sent, and the field keeps it raw.
func TestNodeTextsPrintSafely(t *testing.T) {
	hostile := "boom\x1b[2J\nlevel=INFO msg=forged"
	for _, err := range []error{
		&WorkerError{Kind: frame.ExitError, Reason: hostile},
		&NodeError{Node: "n1", Code: frame.CodeMalformed, Reason: hostile},
		&HandshakeError{Node: "n1", Code: frame.CodeAuthFailed, Reason: hostile},
	} {
		msg := err.Error()
		if strings.ContainsAny(msg, "\x1b\n") || !strings.Contains(msg, `"boom\x1b[2J\nlevel=INFO msg=forged"`) {
			t.Errorf("%T: %q, want the reason quoted with escapes", err, msg)
		}
	}
	if msg := (&WorkerError{Kind: frame.ExitError, Reason: "disk full: ünïcode ok"}).Error(); !strings.HasSuffix(msg, ": disk full: ünïcode ok") {
		t.Errorf("plain reason changed: %q", msg)
	}
}
