package coord

import (
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/rexi-go/rexi/frame"
)

// The session heartbeats often enough for the liveness the node announces
// in WELCOME, however long the configured interval, but never absurdly
// often.
func TestHeartbeatFitsTheNodesLiveness(t *testing.T) {
	for _, c := range []struct {
		configured, liveness, want time.Duration
	}{
		{time.Second, 0, time.Second},                                      // the node never closes a silent connection
		{time.Second, 4 * time.Second, time.Second},                        // what a node derives from our HELLO
		{time.Second, 2 * time.Second, 500 * time.Millisecond},             // a node with a shorter idle timeout
		{100 * time.Millisecond, 2 * time.Second, 100 * time.Millisecond},  // configured shorter: kept
		{time.Second, 4 * time.Millisecond, minHeartbeat},                  // floor
		{5 * time.Millisecond, 4 * time.Millisecond, 5 * time.Millisecond}, // the floor never raises the configured interval
	} {
		if got := heartbeatFor(c.configured, c.liveness); got != c.want {
			t.Errorf("heartbeatFor(%v, liveness %v) = %v, want %v", c.configured, c.liveness, got, c.want)
		}
	}
}

// The handshake result carries the heartbeat for WELCOME's liveness_ms.
func TestHandshakeTakesTheHeartbeatFromWelcome(t *testing.T) {
	for _, c := range []struct {
		livenessMs uint32
		want       time.Duration
	}{{1000, 250 * time.Millisecond}, {0, time.Second}} {
		coordSide, nodeSide := net.Pipe()
		served := make(chan error, 1)
		go func() {
			defer nodeSide.Close()
			_, err := welcomeAs(nodeSide, frame.Welcome{Version: frame.Version, MaxPayload: frame.DefaultMaxPayload,
				LivenessMs: c.livenessMs, Name: []byte("n")})
			served <- err
		}()
		cfg := Config{Secret: secret, InsecurePlaintext: true, HeartbeatInterval: time.Second}.withDefaults()
		_ = coordSide.SetDeadline(time.Now().Add(waitFor))
		hs, err := handshake(coordSide, &cfg, "pipe")
		coordSide.Close()
		if err := <-served; err != nil {
			t.Fatal(err)
		}
		if err != nil {
			t.Fatal(err)
		}
		if hs.heartbeat != c.want {
			t.Errorf("liveness_ms %d: heartbeat %v, want %v", c.livenessMs, hs.heartbeat, c.want)
		}
	}
}

// A node announcing a window over MaxWindow is refused at the handshake,
// before AUTH: it could make the coordinator hold that many rows per job.
func TestHandshakeRefusesAWindowOverMaxWindow(t *testing.T) {
	for _, c := range []struct {
		window uint32
		ok     bool
	}{{DefaultMaxWindow, true}, {DefaultMaxWindow + 1, false}, {1<<32 - 1, false}} {
		coordSide, nodeSide := net.Pipe()
		go func() {
			defer nodeSide.Close()
			_, _ = welcomeAs(nodeSide, frame.Welcome{Version: frame.Version, MaxPayload: frame.DefaultMaxPayload, Window: c.window, Name: []byte("n")})
		}()
		cfg := Config{Secret: secret, InsecurePlaintext: true}.withDefaults()
		_ = coordSide.SetDeadline(time.Now().Add(waitFor))
		hs, err := handshake(coordSide, &cfg, "pipe")
		coordSide.Close()
		var he *HandshakeError
		switch {
		case c.ok && (err != nil || hs.window != int(c.window)):
			t.Errorf("window %d: %v, window %d", c.window, err, hs.window)
		case !c.ok && (!errors.As(err, &he) || !strings.Contains(he.Reason, "MaxWindow")):
			t.Errorf("window %d: %v, want a HandshakeError naming MaxWindow", c.window, err)
		}
	}
}

// A node may only drop features the coordinator requested: one that turns
// on compression or checksums we did not ask for is refused at the
// handshake, since it would decide how we read and write.
func TestHandshakeRefusesFeaturesNotRequested(t *testing.T) {
	for _, c := range []struct {
		features frame.Feature
		ok       bool
	}{{frame.FeatureRange, true}, {frame.FeatureCompression, false}, {frame.FeatureChecksum, false}, {1 << 31, false}} {
		coordSide, nodeSide := net.Pipe()
		go func() {
			defer nodeSide.Close()
			_, _ = welcomeAs(nodeSide, frame.Welcome{Version: frame.Version, Features: c.features, MaxPayload: frame.DefaultMaxPayload, Window: 5, Name: []byte("n")})
		}()
		cfg := Config{Secret: secret, InsecurePlaintext: true}.withDefaults() // asks for neither checksums nor compression
		_ = coordSide.SetDeadline(time.Now().Add(waitFor))
		hs, err := handshake(coordSide, &cfg, "pipe")
		coordSide.Close()
		var he *HandshakeError
		switch {
		case c.ok && (err != nil || hs.enc.Checksum || hs.enc.Compress):
			t.Errorf("features %#x: %v, encoder %+v", c.features, err, hs.enc)
		case !c.ok && (!errors.As(err, &he) || !strings.Contains(he.Reason, "did not request")):
			t.Errorf("features %#x: %v, want a HandshakeError naming the features not requested", c.features, err)
		}
	}
}
