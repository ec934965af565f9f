package main

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/rexi-go/rexi/coord"
	"github.com/rexi-go/rexi/frame"
	"github.com/rexi-go/rexi/handlers"
	"github.com/rexi-go/rexi/internal/live"
	"github.com/rexi-go/rexi/node"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// newLogger writes text, or JSON lines with -log-format json.
func newLogger(w io.Writer, level slog.Level, format string) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// serveFlags are rexinode serve's settings.
type serveFlags struct {
	listen, admin, name, peers, logLevel      *string
	logFormat, peersDNS                       *string
	window                                    *int
	initTimeout, ackTimeout, drainGrace       *time.Duration
	idleTimeout, handshakeTimeout             *time.Duration
	maxFrame, outbound, threshold             *int
	hardLimit, maxJobs, maxConnJobs           *int
	maxArgBytes, maxConnArgBytes              *int
	maxPartialBytes, maxOutputBytes           *int
	maxConns, maxHandshakes, maxHandshakeRate *int
	maxSourceHandshakes                       *int
	handlerMode                               *string
	checksum, compression                     *bool
	secret                                    secretFlags
	security                                  securityFlags
	adminTokenFile, adminCert, adminKey       *string
	otlpEndpoint                              *string
	otlpRatio                                 *float64
	client                                    clientFlags
}

func addServeFlags(fs flagSet) serveFlags {
	f := serveFlags{
		listen:              fs.String("listen", "127.0.0.1:7070", "rexi protocol listen address (port 0: any free port)"),
		admin:               fs.String("admin", "127.0.0.1:7071", "admin HTTP address: /metrics /healthz /livez /errors /jobs /live /fanout /drain /debug/pprof (\"off\" disables)"),
		name:                fs.String("name", "", "node name (default: the listen address)"),
		peers:               fs.String("peers", "", "comma-separated peer node addresses for /fanout; \"self\" is this node (default: self)"),
		logLevel:            fs.String("log-level", "info", "debug, info, warn or error"),
		logFormat:           addLogFormat(fs),
		peersDNS:            fs.String("peers-dns", "", "HOST:PORT: the peers are the A/AAAA records of HOST (a Kubernetes headless Service), each with PORT, re-resolved every 5 s; replaces -peers"),
		window:              fs.Int("window", node.DefaultWindow, "un-acked STREAM rows per worker"),
		initTimeout:         fs.Duration("init-timeout", node.DefaultStreamTimeout, "wait for START after STREAM_INIT"),
		ackTimeout:          fs.Duration("ack-timeout", node.DefaultStreamTimeout, "wait for ACK with a full window"),
		idleTimeout:         fs.Duration("idle-timeout", node.DefaultIdleTimeout, "close connections silent this long whose coordinator announced no heartbeat interval (0 or negative: never); heartbeating coordinators are closed after 4 missed heartbeats"),
		handshakeTimeout:    fs.Duration("handshake-timeout", node.DefaultHandshakeTimeout, "close connections that have not completed the handshake in this time"),
		maxConns:            fs.Int("max-conns", node.DefaultMaxConns, "connections open at once, in the handshake or authenticated; more are refused with ERROR OVERLOADED"),
		maxHandshakes:       fs.Int("max-handshakes", node.DefaultMaxHandshakes, "connections allowed in the handshake at once; more are refused with ERROR OVERLOADED"),
		maxSourceHandshakes: fs.Int("max-source-handshakes", node.DefaultMaxSourceHS, "connections from one source address (IP) allowed in the handshake at once; more from it are refused with ERROR OVERLOADED"),
		maxHandshakeRate:    fs.Int("max-handshake-rate", node.DefaultMaxHandshakeRate, "connections let into the handshake per second (a burst of that many); more are refused with ERROR OVERLOADED"),
		maxJobs:             fs.Int("max-jobs", node.DefaultMaxJobs, "live jobs on the node; a DOIT over it gets EXIT OVERLOADED"),
		maxConnJobs:         fs.Int("max-conn-jobs", node.DefaultMaxConnJobs, "live jobs per connection; a DOIT over it gets EXIT OVERLOADED"),
		maxArgBytes:         fs.Int("max-arg-bytes", node.DefaultMaxArgBytes, "bytes of DOIT arguments live goroutine jobs hold on the node; a DOIT over it gets EXIT OVERLOADED"),
		maxConnArgBytes:     fs.Int("max-conn-arg-bytes", node.DefaultMaxConnArgBytes, "bytes of DOIT arguments live goroutine jobs hold per connection; a DOIT over it gets EXIT OVERLOADED"),
		maxPartialBytes:     fs.Int("max-partial-bytes", node.DefaultMaxPartialBytes, "bytes of frames still arriving held on the node, all connections; past it connections whose frames have stalled get ERROR OVERLOADED first, then the one whose frame went over"),
		drainGrace:          fs.Duration("drain-grace", 10*time.Second, "on SIGINT/SIGTERM, time running workers get before they are killed"),
		maxFrame:            fs.Int("max-frame", frame.DefaultMaxPayload, "largest accepted payload in bytes"),
		outbound:            fs.Int("outbound-limit", node.DefaultOutboundLimit, "bytes queued per connection before workers wait"),
		handlerMode:         fs.String("handler-mode", "loop", "how the built-in echo and rows run: loop (on the event loop) or goroutine (node.Handle: a worker goroutine per job, like a handler that blocks; rows with node.Streaming, so it runs only once STARTed)"),
		hardLimit:           fs.Int("outbound-hard-limit", 0, "bytes queued per connection, counting frames that cannot wait, before the connection ends with OUTPUT_OVERFLOW (default 2 × -outbound-limit)"),
		maxOutputBytes:      fs.Int("max-output-bytes", 0, "memory of the output held unwritten, all connections, counted as twice its bytes; past it the connection holding the most ends with OUTPUT_OVERFLOW (default 1 GiB, at least 4 × (-outbound-hard-limit + -max-frame))"),
		threshold:           fs.Int("compress-threshold", frame.DefaultCompressThreshold, "payloads above this many bytes are S2-compressed when negotiated"),
		checksum:            fs.Bool("checksum", true, "offer xxhash64 checksums to coordinators"),
		compression:         fs.Bool("compression", true, "offer S2 compression to coordinators"),
		secret:              addSecretFlags(fs),
		security:            addSecurityFlags(fs, true),
		adminTokenFile:      fs.String("admin-token-file", "", "file holding the bearer token the admin endpoints that run or reveal work require (all but /metrics and /healthz); without it they answer only on a loopback admin address"),
		adminCert:           fs.String("admin-tls-cert", "", "PEM certificate for the admin listener (with -admin-tls-key): HTTPS"),
		adminKey:            fs.String("admin-tls-key", "", "PEM private key for -admin-tls-cert"),
		otlpEndpoint:        fs.String("otlp-endpoint", "", "export OpenTelemetry spans (a rexi.fanout span per /fanout, a rexi.job span per job) over OTLP/HTTP to this collector: http://HOST:4318, https://..., or HOST:PORT (http)"),
		otlpRatio:           fs.Float64("otlp-sample-ratio", 1, "fraction of traces started here (by /fanout) that are sampled; jobs follow their coordinator's decision"),
	}
	f.client = addClientFlags(fs, false)
	f.client.checksum, f.client.compression = f.checksum, f.compression // a node asks its peers for what it offers
	f.client.security = f.security                                      // and uses its own key with them
	return f
}

// daemon is a running rexinode serve.
type daemon struct {
	log  *slog.Logger
	node *node.Node
	// adminToken guards the admin endpoints that run or reveal work; with
	// none, only a loopback admin address serves them.
	adminToken    []byte
	adminLoopback bool
	adminScheme   string                   // http or https
	tracing       *sdktrace.TracerProvider // nil without -otlp-endpoint
	client        *coord.Client
	metrics       *metrics
	admin         *http.Server
	adminLn       net.Listener
}

func serve(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("serve", stderr)
	f := addServeFlags(fs)
	fs.String("config", "", "JSON file of flag values, e.g. {\"listen\": \":7070\", \"peers\": [\"a:7070\", \"b:7070\"]}")
	if err := fs.parse(args); err != nil {
		return err
	}
	level, err := parseLevel(*f.logLevel)
	if err != nil {
		return err
	}
	if err := checkLogFormat(*f.logFormat); err != nil {
		return err
	}
	log := newLogger(stderr, level, *f.logFormat)
	secret, err := f.secret.resolve()
	if err != nil {
		return err
	}
	d, err := startDaemon(f, secret, log)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "rexinode %s listening on %s\n", d.node.Name(), d.node.Addr())
	if d.adminLn != nil {
		fmt.Fprintf(stdout, "admin %s://%s\n", d.adminScheme, d.adminLn.Addr())
	}
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	sig := <-sigs
	log.Info("draining: refusing new work", "signal", sig.String(), "grace", *f.drainGrace, "live_workers", d.node.Stats().Live)
	go func() {
		<-sigs
		log.Error("second signal: exiting at once")
		os.Exit(exitFailed)
	}()
	d.shutdown(*f.drainGrace)
	log.Info("stopped")
	return nil
}

// adminSecurity reads the admin token and TLS key pair, before anything
// starts, so that a mistake in them is a usage error.
func (f serveFlags) adminSecurity() (token []byte, tlsCfg *tls.Config, err error) {
	if *f.adminTokenFile != "" {
		if token, err = live.ReadAdminToken(*f.adminTokenFile); err != nil {
			return nil, nil, fail(exitUsage, "admin token: %v", err)
		}
	}
	if (*f.adminCert == "") != (*f.adminKey == "") {
		return nil, nil, fail(exitUsage, "-admin-tls-cert and -admin-tls-key go together")
	}
	if *f.adminCert != "" {
		cert, err := tls.LoadX509KeyPair(*f.adminCert, *f.adminKey)
		if err != nil {
			return nil, nil, fail(exitUsage, "admin TLS: %v", err)
		}
		tlsCfg = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	return token, tlsCfg, nil
}

// registerHandlers is how -handler-mode registers the built-in handlers.
func (f serveFlags) registerHandlers() (func(*node.Node), error) {
	switch *f.handlerMode {
	case "loop":
		return handlers.Register, nil
	case "goroutine":
		return handlers.RegisterOnGoroutines, nil
	}
	return nil, fail(exitUsage, "-handler-mode %q: want loop or goroutine", *f.handlerMode)
}

// startDaemon checks every flag and reads every file before it starts
// anything, so that a mistake is a usage error with nothing to undo; a
// failure once things run (a port in use) stops what had started, in one
// place.
func startDaemon(f serveFlags, secret []byte, log *slog.Logger) (_ *daemon, err error) {
	register, err := f.registerHandlers()
	if err != nil {
		return nil, err
	}
	adminToken, adminTLS, err := f.adminSecurity()
	if err != nil {
		return nil, err
	}
	ks, err := f.security.keys() // once: the node and its client of the peers share them
	if err != nil {
		return nil, err
	}
	nc := f.nodeConfig(secret, ks, log)
	if err := nc.Validate(); err != nil {
		return nil, fail(exitUsage, "%v", err)
	}
	peers := splitList(*f.peers) // the client's initial set; /fanout reads d.members()
	if len(peers) == 0 {
		peers = []string{"self"} // replaced by the node's address once it listens
	}
	ccfg := f.client.configWith(peers, secret, ks)
	if *f.peersDNS != "" {
		host, port, err := splitHostPort(*f.peersDNS)
		if err != nil {
			return nil, fail(exitUsage, "-peers-dns: %v", err)
		}
		ccfg.Nodes, ccfg.Resolver = nil, coord.DNSResolver(host, port)
	}
	ccfg.Logger = log
	ccfg.MaxPayload = *f.maxFrame
	if err := ccfg.Validate(); err != nil {
		return nil, fail(exitUsage, "peers: %v", err)
	}

	d := &daemon{log: log, adminToken: adminToken}
	defer func() {
		if err != nil {
			d.abort()
		}
	}()
	if *f.otlpEndpoint != "" {
		if d.tracing, err = startTracing(*f.otlpEndpoint, *f.otlpRatio, cmp.Or(*f.name, *f.listen), log); err != nil {
			return nil, err
		}
		nc.TracerProvider, ccfg.TracerProvider = d.tracing, d.tracing
	}
	if d.node, err = node.New(nc); err != nil {
		return nil, fail(exitUsage, "%v", err)
	}
	register(d.node)
	if err := d.node.Start(); err != nil {
		return nil, fail(exitListen, "cannot listen on %s: %v", *f.listen, err)
	}
	for i, p := range ccfg.Nodes {
		if p == "self" {
			ccfg.Nodes[i] = d.node.Addr()
		}
	}
	if d.client, err = coord.NewClient(ccfg); err != nil {
		return nil, fail(exitUsage, "peers: %v", err)
	}
	d.metrics = newMetrics(d.node, d.client)
	if *f.admin != "off" {
		if d.adminLn, err = net.Listen("tcp", *f.admin); err != nil {
			return nil, fail(exitListen, "cannot listen on admin address %s: %v", *f.admin, err)
		}
		if ap, err := netip.ParseAddrPort(d.adminLn.Addr().String()); err == nil {
			d.adminLoopback = ap.Addr().IsLoopback()
		}
		if d.adminToken == nil && !d.adminLoopback {
			log.Warn("admin endpoints that run or reveal work answer 403: the admin address is not loopback and no -admin-token-file is set", "admin", d.adminLn.Addr().String())
		}
		d.admin = &http.Server{Handler: d.routes(), ReadHeaderTimeout: 10 * time.Second, TLSConfig: adminTLS}
		d.adminScheme = "http"
		if adminTLS != nil {
			d.adminLn = tls.NewListener(d.adminLn, adminTLS)
			d.adminScheme = "https"
		}
		go func() {
			if err := d.admin.Serve(d.adminLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("admin http server failed", "err", err)
			}
		}()
	}
	return d, nil
}

// abort stops what a failed startDaemon had started, the latest first.
func (d *daemon) abort() {
	if d.client != nil {
		d.client.Close()
	}
	if d.node != nil {
		d.node.Close()
	}
	if err := stopTracing(d.tracing); err != nil {
		d.log.Warn("stopping the tracer", "err", err)
	}
}

// nodeConfig is the node's configuration from the flags.
func (f serveFlags) nodeConfig(secret []byte, ks keySet, log *slog.Logger) node.Config {
	idle := *f.idleTimeout
	if idle == 0 { // the flag's 0 means never, as its help says; the library's 0 means the default
		idle = -1
	}
	return node.Config{
		Name: *f.name, Addr: *f.listen, Secret: secret,
		Window: *f.window, InitTimeout: *f.initTimeout, AckTimeout: *f.ackTimeout, IdleTimeout: idle,
		HandshakeTimeout: *f.handshakeTimeout, MaxConns: *f.maxConns, MaxHandshakes: *f.maxHandshakes, MaxSourceHandshakes: *f.maxSourceHandshakes, MaxHandshakeRate: *f.maxHandshakeRate, MaxJobs: *f.maxJobs, MaxConnJobs: *f.maxConnJobs,
		MaxArgBytes: *f.maxArgBytes, MaxConnArgBytes: *f.maxConnArgBytes, MaxPartialBytes: *f.maxPartialBytes,
		MaxPayload: *f.maxFrame, OutboundLimit: *f.outbound, OutboundHardLimit: *f.hardLimit, MaxOutputBytes: *f.maxOutputBytes, CompressThreshold: *f.threshold,
		DisableChecksum: !*f.checksum, DisableCompression: !*f.compression,
		Key: ks.key, AllowedKeys: ks.allowed, InsecurePlaintext: *f.security.plaintext,
		Logger: log,
	}
}

// shutdown drains: no new work, running workers get grace, then every
// remaining worker is killed and everything is closed.
func (d *daemon) shutdown(grace time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := d.node.Drain(ctx); err != nil {
		d.log.Warn("grace period over: killing the remaining workers", "err", err)
	}
	if d.admin != nil {
		hctx, hcancel := context.WithTimeout(context.Background(), time.Second)
		if err := d.admin.Shutdown(hctx); err != nil {
			d.admin.Close() // streaming /fanout requests end here; their workers are reaped
		}
		hcancel()
	}
	d.client.Close()
	d.node.Close()
	if err := stopTracing(d.tracing); err != nil {
		d.log.Warn("spans lost at shutdown", "err", err)
	}
}
