package node

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/rexi-go/rexi/frame"
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

	// Window is the most un-acked STREAM rows per worker. Default 5.
	Window int
	// InitTimeout bounds the wait for START or CANCEL after STREAM_INIT.
	// Default 5 minutes.
	InitTimeout time.Duration
	// AckTimeout bounds the wait for an ACK while the window is full, and
	// the wait for room under OutboundLimit (a coordinator that stopped
	// reading). Default 5 minutes.
	AckTimeout time.Duration
	// HandshakeTimeout bounds HELLO + AUTH after the TCP accept. Default 10 s.
	HandshakeTimeout time.Duration
	// IdleTimeout closes a connection that has sent nothing for this long.
	// Default 30 s; negative disables.
	IdleTimeout time.Duration

	// MaxPayload is the largest payload accepted, in bytes, also after
	// decompression. Default frame.DefaultMaxPayload (16 MiB).
	MaxPayload int
	// OutboundLimit bounds the bytes waiting to be written per connection.
	// A worker whose frame would exceed it waits. Default 8 MiB.
	OutboundLimit int
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
	// together; a connection over it drops its own oldest. Default 65536.
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
}

// Defaults for Config fields.
const (
	DefaultWindow           = 5
	DefaultStreamTimeout    = 5 * time.Minute
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultIdleTimeout      = 30 * time.Second
	DefaultOutboundLimit    = 8 << 20
	DefaultErrorRing        = 20
	DefaultMaxTombstones    = 1 << 16
	DefaultTombstoneTTL     = 60 * time.Second
)

// ErrConfig is wrapped by every error Validate returns.
var ErrConfig = errors.New("node: invalid config")

func configError(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, args...))
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
	case c.ErrorRing < 0 || c.MaxTombstones < 0 || c.EventLoops < 0 || c.IdleWorkers < 0:
		return configError("counts must not be negative")
	}
	return nil
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
	return f
}
