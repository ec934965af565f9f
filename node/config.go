package node

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/rexi-go/rexi/frame"
	"github.com/rexi-go/rexi/secure"
	"go.opentelemetry.io/otel/trace"
)

// Config configures a Node. The zero value of every field but Secret means
// its documented default.
type Config struct {
	// Name is the node's name, sent in WELCOME (at most 255 bytes).
	// Default: the listen address.
	Name string
	// Addr is the TCP listen address. Default "127.0.0.1:0" (any free port).
	Addr string
	// Secret is the cluster's shared secret. Required; never sent.
	Secret []byte
	// Key is the node's static Curve25519 key for encrypted connections.
	// Zero: a random key is made at New (nothing is derived from the
	// secret); PublicKey tells it.
	Key secure.PrivateKey
	// AllowedKeys, when not empty, are the only coordinator static keys
	// the node accepts; others are refused with ERROR AUTH_FAILED.
	AllowedKeys []secure.PublicKey
	// InsecurePlaintext makes the node accept plaintext connections only
	// (HELLO, WELCOME, AUTH: the secret authenticates, nothing is
	// encrypted or integrity-protected). For loopback benchmarks and
	// debugging. An encrypted coordinator is refused with a message that
	// says so, as a plaintext one is by an encrypted node.
	InsecurePlaintext bool
	// rekeyRecords and rekeyBytes bound what one record key seals (tests).
	rekeyRecords, rekeyBytes uint64

	// Window is the most un-acked STREAM rows per worker. Default 5.
	Window int
	// InitTimeout bounds the wait for START or CANCEL after STREAM_INIT.
	// Default 5 minutes.
	InitTimeout time.Duration
	// AckTimeout bounds the wait for an ACK while the window is full, and
	// the wait for room under OutboundLimit (a coordinator that stopped
	// reading). Default 5 minutes.
	AckTimeout time.Duration
	// HandshakeTimeout bounds HELLO + AUTH after the TCP accept, whatever
	// IdleTimeout is. Default 10 s.
	HandshakeTimeout time.Duration
	// MaxConns caps the node's open connections, in the handshake or
	// authenticated; one more is refused at accept with ERROR OVERLOADED.
	// The per-connection bounds times MaxConns bound what peers can make
	// the node hold where no node-wide bound (MaxOutputBytes,
	// MaxPartialBytes, MaxArgBytes, MaxJobs) does. Default 1 024.
	MaxConns int
	// MaxHandshakes caps the connections accepted and not yet
	// authenticated; further ones are refused at once with ERROR
	// OVERLOADED. Default 256.
	MaxHandshakes int
	// MaxSourceHandshakes caps the connections from one source address
	// (IP) in the handshake at once, so that one host holding half-open
	// connections leaves the rest of MaxHandshakes to others; further
	// ones from it are refused at once with ERROR OVERLOADED. Default 64.
	MaxSourceHandshakes int
	// MaxHandshakeRate caps the connections let into the handshake per
	// second (a burst of one second's worth is allowed); further ones are
	// refused at once with ERROR OVERLOADED. An encrypted handshake costs
	// the event loop X25519 work before the peer is known, and the cap on
	// connections at once does not bound how often a peer can connect,
	// send its first message and hang up. Default 1 000.
	MaxHandshakeRate int
	// IdleTimeout closes an authenticated connection that has sent nothing
	// for this long, when its coordinator announced no heartbeat interval
	// in HELLO. A coordinator that announced one is closed after four
	// intervals of silence (at least 1 s, at most IdleTimeout when set),
	// so a partitioned coordinator's workers die within seconds. Default
	// 30 s; negative disables.
	IdleTimeout time.Duration

	// MaxPayload is the largest payload accepted, in bytes, also after
	// decompression. Default frame.DefaultMaxPayload (16 MiB).
	MaxPayload int
	// OutboundLimit bounds the bytes waiting to be written per connection.
	// A worker whose frame would exceed it waits. Default 8 MiB.
	OutboundLimit int
	// OutboundHardLimit bounds them for frames that cannot wait (replies
	// computed on the event loop, HEARTBEAT echoes, EXITs): a connection
	// past it ends with ERROR OUTPUT_OVERFLOW and its workers are killed.
	// Default 2 × OutboundLimit; at least OutboundLimit.
	OutboundHardLimit int
	// MaxOutputBytes bounds the memory of the output the node holds
	// unwritten for all its connections together (what the sockets did
	// not take), counted as twice its bytes: gnet keeps it in buffers
	// rounded up to powers of two. When a write takes the total past it,
	// the connection holding the most ends at once with ERROR
	// OUTPUT_OVERFLOW, its unread output dropped: many peers that do not
	// read cannot together take what each alone may. Default 1 GiB (at
	// least 4 × (OutboundHardLimit + MaxPayload)); not below twice what
	// one connection may hold within its own bounds, 2 ×
	// max(OutboundHardLimit, OutboundLimit + MaxPayload).
	MaxOutputBytes int

	// MaxJobs caps the live jobs of the node, all connections together,
	// and MaxConnJobs those of one connection. A DOIT over either cap is
	// answered at once with EXIT OVERLOADED and never started. Jobs that
	// answer on the event loop (HandleReply) are never live and do not
	// count. Defaults 10 000 and 4 096.
	MaxJobs     int
	MaxConnJobs int
	// MaxArgBytes caps the bytes of nonce and arguments that the node's
	// live goroutine jobs hold (Worker.Args stays valid for the job's
	// life), all connections together, and MaxConnArgBytes those of one
	// connection's jobs. A DOIT over either is answered at once with EXIT
	// OVERLOADED. Defaults 256 MiB and 64 MiB (at least 4 and 1 ×
	// MaxPayload); neither may be below MaxPayload.
	MaxArgBytes     int
	MaxConnArgBytes int
	// MaxPartialBytes caps the bytes of frames still arriving (received,
	// not yet whole) that the node holds, all connections together: each
	// connection may send frames up to MaxPayload, and its partial frame
	// sits in memory until the rest comes. When a frame's bytes would
	// take the node past it, connections whose frames have stalled (no
	// 64 KiB of progress for 200 ms) end with ERROR OVERLOADED, costliest
	// first (bytes times the time without progress), to make room; if
	// none has, or the growing frame is itself the costliest, that
	// connection ends instead. So peers pinning frames half-sent do not
	// lock out the others, and an honest burst over the bound loses its
	// newest frame. Default 128 MiB (at least 2 × MaxPayload); not below
	// MaxPayload.
	MaxPartialBytes int
	// DisableChecksum and DisableCompression refuse those features when a
	// coordinator asks for them. Both are offered by default.
	DisableChecksum    bool
	DisableCompression bool
	// CompressThreshold: payloads above it are S2-compressed when
	// negotiated. Default frame.DefaultCompressThreshold (4 KiB).
	CompressThreshold int

	// ErrorRing is how many recent worker errors the node keeps. Default 20.
	ErrorRing int
	// MaxTombstones bounds the node's tombstones, all connections
	// together, and one connection's to a quarter of it; a connection over
	// either drops its own oldest. Default 65536.
	MaxTombstones int
	// TombstoneTTL bounds a tombstone's age. Default 60 s.
	TombstoneTTL time.Duration

	// IdleWorkers is how many finished worker goroutines wait for the next
	// job instead of exiting; reusing them saves a goroutine start and its
	// stack growth per job. Default 1024.
	IdleWorkers int

	// EventLoops is the number of gnet event loops. Default 1, which was as
	// fast as more on this workload (one connection per coordinator process).
	EventLoops int
	// Logger receives connection-level events. Default slog.Default().
	Logger *slog.Logger

	// TracerProvider, when set, makes every job an OpenTelemetry span
	// "rexi.job" (handler, range, node, outcome, rows), the child of the
	// coordinator's span when its DOIT carried a trace context; a Handle
	// handler's ctx carries the span. Loop handlers' spans end on the
	// event loop, so use a batching span processor. Nil: no tracing.
	TracerProvider trace.TracerProvider
}

// Defaults for Config fields.
const (
	DefaultWindow           = 5
	DefaultStreamTimeout    = 5 * time.Minute
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultIdleTimeout      = 30 * time.Second
	DefaultOutboundLimit    = 8 << 20
	DefaultMaxConns         = 1024
	DefaultMaxHandshakes    = 256
	DefaultMaxSourceHS      = 64
	DefaultMaxHandshakeRate = 1000
	DefaultMaxJobs          = 10_000
	DefaultMaxConnJobs      = 4_096
	DefaultMaxArgBytes      = 256 << 20
	DefaultMaxConnArgBytes  = 64 << 20
	DefaultMaxPartialBytes  = 128 << 20
	DefaultMaxOutputBytes   = 1 << 30
	DefaultErrorRing        = 20
	DefaultMaxTombstones    = 1 << 16
	DefaultTombstoneTTL     = 60 * time.Second
)

// ErrConfig is wrapped by every error Validate returns.
var ErrConfig = errors.New("node: invalid config")

func configError(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, args...))
}

// belowPayload reports a limit set below the payload limit (either 0: its
// default).
func belowPayload(limit, maxPayload int) bool {
	if maxPayload == 0 {
		maxPayload = frame.DefaultMaxPayload
	}
	return limit > 0 && limit < maxPayload
}

// Validate reports the first nonsensical setting. Zero values are valid
// (they mean the defaults).
func (c Config) Validate() error {
	switch {
	case len(c.Secret) == 0:
		return configError("Secret is required")
	case len(c.Name) > frame.MaxNodeName:
		return configError("Name is %d bytes, at most %d", len(c.Name), frame.MaxNodeName)
	case c.Window < 0:
		return configError("Window %d is negative", c.Window)
	case c.InitTimeout < 0 || c.AckTimeout < 0 || c.HandshakeTimeout < 0 || c.TombstoneTTL < 0:
		return configError("timeouts must not be negative")
	case c.MaxPayload < 0 || c.OutboundLimit < 0 || c.CompressThreshold < 0:
		return configError("sizes must not be negative")
	case c.MaxPayload > 1<<31-1:
		return configError("MaxPayload %d exceeds the 32-bit length field", c.MaxPayload)
	case c.ErrorRing < 0 || c.MaxTombstones < 0 || c.EventLoops < 0 || c.IdleWorkers < 0 ||
		c.MaxConns < 0 || c.MaxHandshakes < 0 || c.MaxSourceHandshakes < 0 || c.MaxHandshakeRate < 0 || c.MaxJobs < 0 || c.MaxConnJobs < 0 ||
		c.MaxArgBytes < 0 || c.MaxConnArgBytes < 0 || c.MaxPartialBytes < 0 || c.MaxOutputBytes < 0:
		return configError("counts must not be negative")
	case belowPayload(c.MaxArgBytes, c.MaxPayload) || belowPayload(c.MaxConnArgBytes, c.MaxPayload) || belowPayload(c.MaxPartialBytes, c.MaxPayload):
		return configError("MaxArgBytes, MaxConnArgBytes and MaxPartialBytes must each be at least MaxPayload: a frame of the largest payload could never be taken")
	case c.OutboundHardLimit < 0:
		return configError("OutboundHardLimit %d is negative", c.OutboundHardLimit)
	case c.InsecurePlaintext && len(c.AllowedKeys) > 0:
		return configError("AllowedKeys need encryption: a plaintext connection carries no static key to check")
	}
	if d := c.withDefaults(); d.OutboundHardLimit < d.OutboundLimit {
		return configError("OutboundHardLimit %d is below OutboundLimit %d", d.OutboundHardLimit, d.OutboundLimit)
	} else if floor := 2 * max(d.OutboundHardLimit, d.OutboundLimit+d.MaxPayload); d.MaxOutputBytes < floor {
		return configError("MaxOutputBytes %d is below %d, twice what one connection may hold within its own bounds (OutboundHardLimit, or OutboundLimit plus a frame)", d.MaxOutputBytes, floor)
	}
	return nil
}

// minLiveness is the least silence the node allows a heartbeating
// coordinator: below it a busy machine's scheduling delays would end
// healthy connections.
const minLiveness = time.Second

// liveness is how long a connection may stay silent before the node ends
// it, given the heartbeat interval its coordinator announced (0: none).
func (c Config) liveness(heartbeatMs uint32) time.Duration {
	idle := c.IdleTimeout
	if idle < 0 {
		idle = 0
	}
	if heartbeatMs == 0 {
		return idle
	}
	l := max(4*time.Duration(heartbeatMs)*time.Millisecond, minLiveness)
	if idle > 0 {
		l = min(l, max(idle, minLiveness))
	}
	return l
}

// withDefaults returns c with every zero field replaced by its default.
func (c Config) withDefaults() Config {
	def := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	defInt := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	if c.Addr == "" {
		c.Addr = "127.0.0.1:0"
	}
	defInt(&c.Window, DefaultWindow)
	def(&c.InitTimeout, DefaultStreamTimeout)
	def(&c.AckTimeout, DefaultStreamTimeout)
	def(&c.HandshakeTimeout, DefaultHandshakeTimeout)
	def(&c.IdleTimeout, DefaultIdleTimeout)
	def(&c.TombstoneTTL, DefaultTombstoneTTL)
	defInt(&c.MaxPayload, frame.DefaultMaxPayload)
	defInt(&c.OutboundLimit, DefaultOutboundLimit)
	defInt(&c.OutboundHardLimit, 2*c.OutboundLimit)
	defInt(&c.MaxOutputBytes, max(DefaultMaxOutputBytes, 4*(c.OutboundHardLimit+c.MaxPayload)))
	defInt(&c.MaxConns, DefaultMaxConns)
	defInt(&c.MaxHandshakes, DefaultMaxHandshakes)
	defInt(&c.MaxSourceHandshakes, DefaultMaxSourceHS)
	defInt(&c.MaxHandshakeRate, DefaultMaxHandshakeRate)
	defInt(&c.MaxJobs, DefaultMaxJobs)
	defInt(&c.MaxConnJobs, DefaultMaxConnJobs)
	// A larger MaxPayload raises the defaults that must hold one payload.
	defInt(&c.MaxArgBytes, max(DefaultMaxArgBytes, 4*c.MaxPayload))
	defInt(&c.MaxConnArgBytes, max(DefaultMaxConnArgBytes, c.MaxPayload))
	defInt(&c.MaxPartialBytes, max(DefaultMaxPartialBytes, 2*c.MaxPayload))
	defInt(&c.CompressThreshold, frame.DefaultCompressThreshold)
	defInt(&c.ErrorRing, DefaultErrorRing)
	defInt(&c.MaxTombstones, DefaultMaxTombstones)
	defInt(&c.EventLoops, 1)
	defInt(&c.IdleWorkers, 1024)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

func (c Config) features() frame.Feature {
	var f frame.Feature
	if !c.DisableChecksum {
		f |= frame.FeatureChecksum
	}
	if !c.DisableCompression {
		f |= frame.FeatureCompression
	}
	// A node always reads a DOIT's range and trace context when the
	// coordinator sends them; it uses the context only with a tracer.
	return f | frame.FeatureRange | frame.FeatureTraceContext
}
