package coord

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/rexi-go/rexi/frame"
	"github.com/rexi-go/rexi/secure"
	"go.opentelemetry.io/otel/trace"
)

// Config configures a Client. Zero values mean the documented defaults,
// except Nodes and Secret, which are required.
type Config struct {
	// Nodes are the nodes' addresses (host:port). A Job names its node by
	// one of these strings. The set can change later (Client.SetNodes,
	// Resolver).
	Nodes []string
	// Resolver, when set, is polled every ResolveInterval (default 5 s)
	// and its answer replaces the node set: DNSResolver and SRVResolver
	// follow a Kubernetes headless Service. Nodes may then be empty.
	Resolver        Resolver
	ResolveInterval time.Duration
	// RemoveGrace is how long a node removed from the set keeps its
	// connection for the jobs still running on it, before they fail with
	// node-down (cause ErrNodeRemoved). Default 30 s.
	RemoveGrace time.Duration
	// Secret is the cluster's shared secret.
	Secret []byte
	// Key is this client's static Curve25519 key for encrypted
	// connections. Zero: a random key is made at NewClient (nothing is
	// derived from the secret); Client.PublicKey tells it.
	Key secure.PrivateKey
	// NodeKeys, when not empty, are the only node static keys accepted: a
	// node presenting another is refused (AUTH_FAILED).
	NodeKeys []secure.PublicKey
	// InsecurePlaintext connects without encryption (the HELLO, WELCOME,
	// AUTH handshake: the secret authenticates both sides, but frames
	// travel in clear with no integrity). For loopback benchmarks and
	// debugging; the nodes must be plaintext too. Default: encrypted.
	InsecurePlaintext bool
	// Name is sent in HELLO. Default "rexi-coord".
	Name string

	// Checksum and Compression ask the nodes for those features.
	Checksum    bool
	Compression bool
	// CompressThreshold: payloads above it are S2-compressed when
	// negotiated. Default frame.DefaultCompressThreshold.
	CompressThreshold int
	// MaxPayload is the largest payload accepted from nodes. Default
	// frame.DefaultMaxPayload.
	MaxPayload int
	// MaxWindow is the largest window (un-acked rows per job, announced
	// in WELCOME) accepted from a node: past what a fan-out acknowledges
	// on receipt, a coordinator holds up to a window of rows per job, each
	// up to MaxPayload, so a node announcing a larger one is refused at
	// the handshake. Default 64 (a rexinode's is 5).
	MaxWindow int
	// MaxHeldBytes bounds the memory of what nodes sent that the client
	// holds for its coordinators and they have not consumed yet (rows,
	// replies, final frames: payload bytes plus 16 a frame). When a
	// frame takes the client past it, the open coordinator holding the
	// most is ended at once: what it holds is dropped (its receive loop
	// stops after the callback in progress and returns ErrHeldBytes), its
	// context is cancelled with ErrHeldBytes, and the reaper kills its
	// jobs. Within the protocol a node may send a window of rows per job,
	// each up to MaxPayload, before the coordinator consumes any. The
	// process's memory for what is counted may be several times it (its
	// buffers grow by doubling, and the garbage collector leaves
	// headroom: 3–4× measured with 16 MiB rows; GOMEMLIMIT narrows it).
	// What an ended coordinator holds goes at once, what an earlier
	// receive loop stopped before included, whether or not the
	// application receives again; only the batch a callback is running
	// on waits for that callback to return. Default 1 GiB.
	MaxHeldBytes int

	// DialTimeout bounds connecting plus the handshake. Default 5 s.
	DialTimeout time.Duration
	// HeartbeatInterval is how often a HEARTBEAT is sent. Default 1 s.
	HeartbeatInterval time.Duration
	// HeartbeatTimeout declares a node down after this long without any
	// frame from it (and bounds each socket write). Default 5 s.
	HeartbeatTimeout time.Duration
	// ReconnectMin and ReconnectMax bound the exponential backoff between
	// connection attempts. Defaults 50 ms and 5 s.
	ReconnectMin time.Duration
	ReconnectMax time.Duration

	// OutboundLimit bounds the bytes queued for one node and not yet
	// written. A DOIT that would exceed it fails its job with ErrOverloaded.
	// Control frames (START, CANCEL, ACK, KILL_ALL) are always queued.
	// Default 8 MiB.
	OutboundLimit int

	// Logger receives connection events. Default slog.Default().
	Logger *slog.Logger

	// TracerProvider, when set, traces fan-outs with OpenTelemetry: each
	// coordinator is a span "rexi.fanout" (a child of the span in New's
	// ctx, if any), and every DOIT carries its W3C trace context, so that
	// a node with tracing makes each job a child span. Nil: no tracing,
	// and DOITs carry no context.
	TracerProvider trace.TracerProvider
}

// Defaults for Config fields.
const (
	DefaultDialTimeout       = 5 * time.Second
	DefaultHeartbeatInterval = time.Second
	DefaultHeartbeatTimeout  = 5 * time.Second
	DefaultReconnectMin      = 50 * time.Millisecond
	DefaultReconnectMax      = 5 * time.Second
	DefaultOutboundLimit     = 8 << 20
	DefaultMaxWindow         = 64
	DefaultMaxHeldBytes      = 1 << 30
)

// ErrConfig is wrapped by every error Validate returns.
var ErrConfig = errors.New("coord: invalid config")

// Validate reports the first nonsensical setting.
func (c Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, args...))
	}
	seen := map[string]bool{}
	for _, n := range c.Nodes {
		if n == "" || seen[n] {
			return bad("node addresses must be non-empty and distinct, got %q", c.Nodes)
		}
		seen[n] = true
	}
	switch {
	case len(c.Nodes) == 0 && c.Resolver == nil:
		return bad("Nodes is empty and there is no Resolver")
	case len(c.Secret) == 0:
		return bad("Secret is required")
	case len(c.Name) > frame.MaxNodeName:
		return bad("Name is %d bytes, at most %d", len(c.Name), frame.MaxNodeName)
	case c.DialTimeout < 0 || c.HeartbeatInterval < 0 || c.HeartbeatTimeout < 0 || c.ReconnectMin < 0 || c.ReconnectMax < 0 ||
		c.ResolveInterval < 0 || c.RemoveGrace < 0:
		return bad("durations must not be negative")
	case c.CompressThreshold < 0 || c.MaxPayload < 0 || c.OutboundLimit < 0 || c.MaxWindow < 0 || c.MaxHeldBytes < 0:
		return bad("sizes must not be negative")
	case c.InsecurePlaintext && len(c.NodeKeys) > 0:
		return bad("NodeKeys need encryption: a plaintext connection carries no static key to check")
	}
	d := c.withDefaults()
	if d.HeartbeatTimeout <= d.HeartbeatInterval {
		return bad("HeartbeatTimeout %v must exceed HeartbeatInterval %v", d.HeartbeatTimeout, d.HeartbeatInterval)
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.Name == "" {
		c.Name = "rexi-coord"
	}
	setD := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	setI := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	setD(&c.DialTimeout, DefaultDialTimeout)
	setD(&c.HeartbeatInterval, DefaultHeartbeatInterval)
	setD(&c.HeartbeatTimeout, DefaultHeartbeatTimeout)
	setD(&c.ReconnectMin, DefaultReconnectMin)
	setD(&c.ReconnectMax, DefaultReconnectMax)
	setD(&c.ResolveInterval, 5*time.Second)
	setD(&c.RemoveGrace, 30*time.Second)
	setI(&c.CompressThreshold, frame.DefaultCompressThreshold)
	setI(&c.MaxPayload, frame.DefaultMaxPayload)
	setI(&c.MaxHeldBytes, DefaultMaxHeldBytes)
	setI(&c.OutboundLimit, DefaultOutboundLimit)
	setI(&c.MaxWindow, DefaultMaxWindow)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

func (c Config) features() frame.Feature {
	var f frame.Feature
	if c.Checksum {
		f |= frame.FeatureChecksum
	}
	if c.Compression {
		f |= frame.FeatureCompression
	}
	f |= frame.FeatureRange // a node's workers learn the range they serve
	if c.TracerProvider != nil {
		f |= frame.FeatureTraceContext
	}
	return f
}
