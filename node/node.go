package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/rexi-go/rexi/frame"
	"github.com/rexi-go/rexi/secure"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sys/unix"
)

// ProcessGoroutines are the functions of the goroutines that gnet starts
// at package initialisation and keeps for the life of the process (its
// ants worker pool): a leak check ignores them (see the package doc).
var ProcessGoroutines = []string{
	"github.com/panjf2000/ants/v2.(*poolCommon).purgeStaleWorkers",
	"github.com/panjf2000/ants/v2.(*poolCommon).ticktock",
}

// Node serves rexi coordinators on one TCP listener.
type Node struct {
	cfg    Config
	noise  secure.Config // the handshake's settings, prepared once
	log    *slog.Logger
	tracer trace.Tracer // nil without Config.TracerProvider

	handlers atomic.Pointer[map[string]*handlerEntry] // copy-on-write; entries never change once stored
	hmu      sync.Mutex                               // serialises Handle

	name         string // sent in WELCOME: cfg.Name, or the bound address (set before any connection)
	stats        counters
	tombCount    atomic.Int64 // tombstones held by all connections
	argBytes     atomic.Int64 // held by live goroutine jobs (MaxArgBytes)
	partialBytes atomic.Int64 // of frames still arriving (MaxPartialBytes)
	outHeld      atomic.Int64 // memory of the output the connections' sockets did not take (MaxOutputBytes)
	admits       tokenBucket  // MaxHandshakeRate; under mu
	idleSince    atomic.Int64 // unix nanos when live workers last reached 0
	partialStall atomic.Int64 // nanos without progress after which a frame still arriving has stalled (partialStall; tests change it)
	clock        atomic.Int64 // unix nanos, set by the janitor every tick: the time of waits it judges
	zeroMu       sync.Mutex
	zero         chan struct{} // closed when live workers reach 0; nil without waiters
	errs         *errorRing
	draining     atomic.Bool

	workers sync.Pool // *Worker for goroutine jobs, recycled by run
	pool    pool      // the goroutines that run them

	mu       sync.Mutex
	conns    map[*conn]struct{}
	sources  map[netip.Addr]int // connections in the handshake, per source address (MaxSourceHandshakes)
	inHS     int                // connections in the handshake, all sources (MaxHandshakes)
	eng      gnet.Engine
	addr     string
	booted   chan struct{}
	runDone  chan struct{}
	runErr   error
	connGone chan struct{} // capacity 1: a connection closed (Close waits for them)
	started  bool
	closed   bool

	janitorStop chan struct{}
	janitorDone chan struct{}
}

type handlerEntry struct {
	name      string
	fn        Handler    // a goroutine per job
	streaming bool       // fn runs only after START (Streaming)
	reply     ReplyFunc  // or: a reply computed on the event loop
	stream    StreamFunc // or: rows pulled on the event loop
	stats     *handlerCounters
}

// New returns a node configured by cfg; call Handle to register handlers
// and Start to listen.
func New(cfg Config) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if cfg.Key.IsZero() {
		k, err := secure.GenerateKey()
		if err != nil {
			return nil, err
		}
		cfg.Key = k
	}
	n := &Node{
		cfg:      cfg,
		noise:    secure.Config{Key: cfg.Key, Secret: cfg.Secret, Allowed: cfg.AllowedKeys}.Prepared(),
		name:     cfg.Name,
		log:      cfg.Logger,
		errs:     newErrorRing(cfg.ErrorRing),
		conns:    make(map[*conn]struct{}),
		sources:  make(map[netip.Addr]int),
		booted:   make(chan struct{}),
		runDone:  make(chan struct{}),
		connGone: make(chan struct{}, 1),
	}
	n.pool.n, n.pool.maxIdle = n, cfg.IdleWorkers
	n.partialStall.Store(int64(partialStall))
	if cfg.TracerProvider != nil {
		n.tracer = cfg.TracerProvider.Tracer(tracerName)
	}
	empty := map[string]*handlerEntry{}
	n.handlers.Store(&empty)
	return n, nil
}

// Handle registers fn under name, replacing any handler of that name. It
// may be called before or after Start. Only registered handlers can run.
// Each job runs fn on a pooled worker goroutine. A handler may block
// without holding up other jobs: a worker that takes a job while more
// wait wakes another first. Handlers that return quickly run back to back
// on the workers already awake, without a goroutine wake-up each.
func (n *Node) Handle(name string, fn Handler, opts ...HandleOption) {
	if fn == nil {
		panic(fmt.Sprintf("node: Handle(%q): nil handler", name))
	}
	h := handlerEntry{name: name, fn: fn}
	for _, o := range opts {
		o(&h)
	}
	n.register(h)
}

// HandleOption changes how Handle runs a handler's jobs.
type HandleOption func(*handlerEntry)

// Streaming declares a handler that always streams, the pattern where a
// coordinator starts a job on every copy of a shard and STARTs only the
// first to answer. The node sends STREAM_INIT as soon as the DOIT
// arrives, and runs the handler only once START does: a job CANCELled
// before START never runs (no goroutine, no work on a losing copy), and
// the handler's first Stream does not wait. The init timeout and the
// DOIT's deadline apply while the job waits for START. Such a handler
// must stream: Reply returns ErrStreaming.
func Streaming() HandleOption { return func(h *handlerEntry) { h.streaming = true } }

func (n *Node) register(h handlerEntry) {
	if h.name == "" || len(h.name) > 255 {
		panic(fmt.Sprintf("node: handler name %q must be 1..255 bytes", h.name))
	}
	n.hmu.Lock()
	defer n.hmu.Unlock()
	old := *n.handlers.Load()
	m := make(map[string]*handlerEntry, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	h.stats = &handlerCounters{}
	if prev, ok := old[h.name]; ok { // a replaced handler keeps counting
		h.stats = prev.stats
	}
	m[h.name] = &h
	n.handlers.Store(&m)
}

// Start listens on cfg.Addr and returns once the node accepts connections.
func (n *Node) Start() error {
	n.mu.Lock()
	if n.started || n.closed {
		n.mu.Unlock()
		return errors.New("node: Start called twice or after Close")
	}
	n.mu.Unlock()
	go func() {
		defer close(n.runDone)
		n.runErr = gnet.Run(&events{n: n}, "tcp://"+n.cfg.Addr,
			gnet.WithNumEventLoop(n.cfg.EventLoops),
			gnet.WithTCPNoDelay(gnet.TCPNoDelay),
			gnet.WithReuseAddr(true),
			gnet.WithLogger(gnetLogger{n.log}))
	}()
	select {
	case <-n.booted:
	case <-n.runDone:
		return fmt.Errorf("node: listen on %s: %w", n.cfg.Addr, n.runErr)
	}
	n.clock.Store(time.Now().UnixNano())
	n.janitorStop = make(chan struct{})
	n.janitorDone = make(chan struct{})
	go n.janitor()
	n.mu.Lock()
	n.started = true
	n.mu.Unlock()
	n.log.Info("rexi node listening", "addr", n.addr, "name", n.name, "encrypted", !n.cfg.InsecurePlaintext, "public_key", n.PublicKey().String())
	return nil
}

// Addr is the address the node listens on (with the real port when
// cfg.Addr asked for port 0). Valid after Start.
func (n *Node) Addr() string { return n.addr }

// PublicKey is the node's static public key: coordinators that pin node
// keys list it.
func (n *Node) PublicKey() secure.PublicKey { return n.cfg.Key.Public() }

// Name is the node's name as sent in WELCOME: Config.Name, or the listen
// address once Start has run.
func (n *Node) Name() string { return n.name }

// Stats returns a snapshot of the node's counters.
func (n *Node) Stats() Stats {
	s := n.stats.snapshot()
	for name, h := range *n.handlers.Load() { // handlers are never removed: their sums are the node's
		hs := h.stats.snapshot(name)
		s.Started += hs.Started
		s.Replied += hs.Replied
		s.Streamed += hs.Rows
		s.Killed += hs.Killed
		s.Errors += hs.Errors
		s.Panics += hs.Panics
		s.Deadlines += hs.Deadlines
	}
	s.Idle = int64(n.pool.idleCount())
	n.mu.Lock()
	s.Open, s.Handshaking = int64(len(n.conns)), int64(n.inHS)
	n.mu.Unlock()
	s.ArgBytes = n.argBytes.Load()
	s.PartialBytes = n.partialBytes.Load()
	s.OutputBytes = n.outHeld.Load()
	s.Tombstones = n.tombCount.Load()
	return s
}

// RecentErrors returns the last worker failures, oldest first.
func (n *Node) RecentErrors() []ErrorRecord { return n.errs.list() }

func (n *Node) recordError(r ErrorRecord) { n.errs.add(r) }

// JobInfo describes one live worker.
type JobInfo struct {
	Ref     uint64        `json:"ref"`
	Handler string        `json:"handler"`
	Caller  string        `json:"caller"` // coordinator name and address
	State   string        `json:"state"`
	Age     time.Duration `json:"age_ns"`
	Rows    uint64        `json:"rows_sent"`
	Unacked int           `json:"unacked"`
}

// Jobs lists the live workers of every connection.
func (n *Node) Jobs() []JobInfo {
	now := time.Now()
	out := []JobInfo{} // [] rather than null in JSON
	for _, c := range n.connList() {
		caller := c.remote
		if p := c.peerName.Load(); p != nil {
			caller = *p + "@" + c.remote
		}
		c.mu.Lock()
		for _, w := range c.jobs {
			out = append(out, JobInfo{Ref: w.ref, Handler: w.handler, Caller: caller, State: w.state.String(),
				Age: now.Sub(w.started), Rows: w.rows, Unacked: w.unacked})
		}
		c.mu.Unlock()
	}
	return out
}

func (n *Node) connList() []*conn {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]*conn, 0, len(n.conns))
	for c := range n.conns {
		out = append(out, c)
	}
	return out
}

// Drain stops taking work and waits for the running workers: new
// connections are refused (ERROR SHUTTING_DOWN) and new DOITs answered
// with EXIT SHUTTING_DOWN, while live workers may finish. It returns when
// none is live, or with ctx's error when ctx ends first; Close then kills
// whatever is left.
func (n *Node) Drain(ctx context.Context) error {
	n.draining.Store(true)
	if err := n.WaitNoLive(ctx); err != nil {
		return fmt.Errorf("node: drain: %w", err)
	}
	return nil
}

// Draining reports whether Drain or Close has been called.
func (n *Node) Draining() bool { return n.draining.Load() }

// Close stops listening, closes every connection, kills every worker and
// waits for all of them to return. Handlers must honour their context.
// Safe to call more than once.
func (n *Node) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	started := n.started
	n.mu.Unlock()
	n.draining.Store(true)
	if started {
		close(n.janitorStop)
		<-n.janitorDone
		n.sayGoodbye()
		n.stopEngine()
	}
	for _, c := range n.connList() { // OnClose normally did this already
		c.closeAll()
	}
	n.pool.close() // no loop runs any more: idle workers exit
	return nil
}

// coarseNow is the janitor's clock: good enough to date the waits and the
// silences the janitor itself judges at its tick, and cheaper than a clock
// read per row on this hot path.
func (n *Node) coarseNow() int64 { return n.clock.Load() }

// goodbyeWait bounds how long Close waits for open connections to take
// their ERROR SHUTTING_DOWN.
const goodbyeWait = time.Second

// sayGoodbye sends ERROR SHUTTING_DOWN on every open connection and waits
// (goodbyeWait at most) until the loop has closed them, so coordinators
// learn that the node stopped rather than that the network failed.
func (n *Node) sayGoodbye() {
	for _, c := range n.connList() {
		c.closeWith(newConnError(frame.CodeShuttingDown, "node %s is stopping", n.name))
	}
	deadline := time.NewTimer(goodbyeWait)
	defer deadline.Stop()
	for {
		n.mu.Lock()
		open := len(n.conns)
		n.mu.Unlock()
		if open == 0 {
			return
		}
		select {
		case <-n.connGone:
		case <-deadline.C:
			return
		}
	}
}

// stopEngine stops gnet and waits for gnet.Run to return. Engine.Stop
// polls every 500 ms, so it is cut short as soon as Run has returned.
func (n *Node) stopEngine() {
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		_ = n.eng.Stop(ctx)
	}()
	<-n.runDone
	cancel()
	<-stopped
}

// janitor closes connections that stall the handshake or go silent, and
// stops workers whose wait for START or ACK outlived its timeout. It ticks
// every quarter of the shortest of those timeouts (at most every 250 ms).
// The waits it judges are dated with its own clock (coarseNow), up to a
// tick before they began, so it allows them a tick more: a timeout never
// fires early, and at most two ticks late.
func (n *Node) janitor() {
	defer close(n.janitorDone)
	tick := min(n.cfg.HandshakeTimeout, n.cfg.InitTimeout, n.cfg.AckTimeout, minLiveness)
	if n.cfg.IdleTimeout > 0 {
		tick = min(tick, n.cfg.IdleTimeout)
	}
	period := max(tick/4, 5*time.Millisecond)
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-n.janitorStop:
			return
		case now := <-t.C:
			n.clock.Store(now.UnixNano())
			for _, c := range n.connList() {
				// The handshake timeout alone applies until the handshake is
				// done; the liveness bound only after it.
				ready, live := c.ready.Load(), time.Duration(c.liveness.Load())
				switch {
				case !ready && now.Sub(c.opened) > n.cfg.HandshakeTimeout:
					c.closeWith(newConnError(frame.CodeBadHandshake, "handshake not completed within %v", n.cfg.HandshakeTimeout))
				case ready && live > 0 && now.UnixNano()-c.lastRecv.Load() > int64(live):
					c.closeWith(newConnError(frame.CodeIdleTimeout, "nothing received for %v", live))
				}
				c.expireWaits(now.UnixNano(), int64(period))
			}
		}
	}
}

// events adapts Node to gnet's callbacks.
type events struct {
	gnet.BuiltinEventEngine
	n *Node
}

func (e *events) OnBoot(eng gnet.Engine) gnet.Action {
	n := e.n
	n.eng = eng
	n.addr = n.cfg.Addr
	if fd, err := eng.Dup(); err == nil { // gnet has no accessor for the bound port
		if sa, err := unix.Getsockname(fd); err == nil {
			switch a := sa.(type) {
			case *unix.SockaddrInet4:
				n.addr = (&net.TCPAddr{IP: a.Addr[:], Port: a.Port}).String()
			case *unix.SockaddrInet6:
				n.addr = (&net.TCPAddr{IP: a.Addr[:], Port: a.Port}).String()
			}
		}
		_ = unix.Close(fd)
	}
	if n.name == "" { // before any connection can read it
		n.name = n.addr
	}
	close(n.booted)
	return gnet.None
}

func (e *events) OnOpen(gc gnet.Conn) ([]byte, gnet.Action) {
	// Refused before any state is kept: the descriptor goes at once.
	refuse := func(msg string) ([]byte, gnet.Action) {
		e.n.stats.refused.Add(1)
		e.n.stats.handshakeRefusals.Add(1)
		return (&frame.Encoder{}).AppendError(nil, 0, frame.CodeOverloaded, msg), gnet.Close
	}
	src := sourceOf(gc)
	// Checked and counted in one critical section, so that event loops
	// accepting at once cannot both take the last place.
	e.n.mu.Lock()
	why := e.n.admitLocked(src)
	if why == "" {
		c := newConn(e.n, gc)
		c.source = src
		gc.SetContext(c)
		e.n.conns[c] = struct{}{}
		e.n.enteredHandshakeLocked(src)
	}
	e.n.mu.Unlock()
	if why != "" {
		return refuse(why)
	}
	return nil, gnet.None
}

// admitLocked says why a connection from src may not enter the
// handshake, or "" when it may. Caller holds n.mu.
func (n *Node) admitLocked(src netip.Addr) string {
	switch {
	case len(n.conns) >= n.cfg.MaxConns:
		return fmt.Sprintf("%d connections are open, the node's limit; retry later", n.cfg.MaxConns)
	case n.sources[src] >= n.cfg.MaxSourceHandshakes:
		return fmt.Sprintf("%d connections from %s are already in the handshake; retry later", n.cfg.MaxSourceHandshakes, src)
	case n.inHS >= n.cfg.MaxHandshakes:
		return fmt.Sprintf("%d connections are already in the handshake; retry later", n.cfg.MaxHandshakes)
	case !n.admits.take(time.Now().UnixNano(), n.cfg.MaxHandshakeRate):
		return fmt.Sprintf("more than %d handshakes a second; retry later", n.cfg.MaxHandshakeRate)
	}
	return ""
}

func (e *events) OnTraffic(gc gnet.Conn) gnet.Action {
	c, ok := gc.Context().(*conn)
	if !ok {
		return gnet.Close
	}
	return c.traffic()
}

func (e *events) OnClose(gc gnet.Conn, err error) gnet.Action {
	c, ok := gc.Context().(*conn)
	if !ok {
		return gnet.None
	}
	e.n.mu.Lock()
	delete(e.n.conns, c)
	// Its bytes leave the node's counts with it, so that choosing whom to
	// end never sees bytes that no listed connection holds.
	e.n.outHeld.Add(-c.outHeld.Swap(0))
	e.n.partialBytes.Add(-c.partial.Swap(0))
	e.n.mu.Unlock()
	select {
	case e.n.connGone <- struct{}{}:
	default:
	}
	c.closeAll()
	return gnet.None
}

// gnetLogger routes gnet's own logging into slog.
type gnetLogger struct{ l *slog.Logger }

func (g gnetLogger) Debugf(f string, a ...any) { g.l.Debug("gnet: " + fmt.Sprintf(f, a...)) }
func (g gnetLogger) Infof(f string, a ...any)  { g.l.Debug("gnet: " + fmt.Sprintf(f, a...)) }
func (g gnetLogger) Warnf(f string, a ...any)  { g.l.Warn("gnet: " + fmt.Sprintf(f, a...)) }
func (g gnetLogger) Errorf(f string, a ...any) { g.l.Error("gnet: " + fmt.Sprintf(f, a...)) }
func (g gnetLogger) Fatalf(f string, a ...any) { g.l.Error("gnet: fatal: " + fmt.Sprintf(f, a...)) }

// sourceOf is the address a connection comes from, without its port (the
// zero Addr when gnet cannot say).
func sourceOf(gc gnet.Conn) netip.Addr {
	if a, ok := gc.RemoteAddr().(*net.TCPAddr); ok {
		return a.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}

// enteredHandshakeLocked counts a connection from src into the handshake
// (leftHandshake counts it out). Caller holds n.mu.
func (n *Node) enteredHandshakeLocked(src netip.Addr) {
	n.sources[src]++
	n.inHS++
}

// leftHandshake counts a connection out of the handshake: authenticated,
// or closed before. Called once per connection (conn.ready guards it).
func (n *Node) leftHandshake(src netip.Addr) {
	n.mu.Lock()
	n.inHS--
	if n.sources[src]--; n.sources[src] <= 0 {
		delete(n.sources, src)
	}
	n.mu.Unlock()
}
