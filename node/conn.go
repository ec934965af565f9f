package node

import (
	"context"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/rexi-go/rexi/frame"
	"github.com/rexi-go/rexi/secure"
)

// handshakeMaxPayload bounds frames before the handshake completes.
const handshakeMaxPayload = 1024

type phase uint8

const (
	phaseHello phase = iota // waiting for HELLO
	phaseAuth               // WELCOME sent, waiting for AUTH
	phaseReady              // authenticated
)

// conn is one coordinator connection: its handshake state, job table,
// tombstones and output buffers.
type conn struct {
	n      *Node
	gc     gnet.Conn
	opened time.Time
	remote string
	source netip.Addr // the remote address without its port: MaxSourceHandshakes counts per source

	// Event loop only.
	phase     phase
	dec       frame.Decoder
	hello     []byte                // HELLO payload, kept for the MAC check
	welcome   []byte                // WELCOME payload as sent
	scratch   []byte                // decompression buffer
	expansion frame.ExpansionBudget // what compressed frames may decode to
	spare     []byte                // the output buffer not in use by workers
	tombs     tombstones
	need      int                       // inbound bytes needed before the next frame is whole
	handled   uint64                    // frames handled, ever: a read that handled one began whatever partial frame it left
	partMark  int64                     // the partial frame's bytes when it last made progress (holdPartial)
	readAt    time.Time                 // when this read began: the clock of its frames, read once per read, not per DOIT
	replies   replyCount                // this read's loop replies, told to their handler's counters once per read
	wakes     []chan struct{}           // signal channels of goroutine workers to wake once this read's output is flushed
	lastH     *handlerEntry             // the handler the previous DOIT named: a coordinator's DOITs mostly name one
	lastReg   *map[string]*handlerEntry // the registry lastH was found in; a new registration replaces it
	spawns    []task                    // jobs to start then

	lingering   bool // overflowed: waiting for the ERROR to be written, then closing
	halfClosed  bool // lingering, the ERROR written and our side shut: waiting for the peer's end
	lingerUntil time.Time

	// Encrypted connections (PROTOCOL.md section 8).
	hs     *secure.Handshake // during the Noise handshake
	sess   *secure.Session   // after it: seals what flush writes, opens RECORDs
	recDec frame.Decoder     // RECORD frames on the wire
	plain  []byte            // opened plaintext not yet decoded into frames
	wire   []byte            // sealed output, reused

	ready    atomic.Bool  // handshake done (read by the janitor)
	argBytes atomic.Int64 // held by live goroutine jobs (MaxConnArgBytes)
	lastRecv atomic.Int64 // unix nanos of the last inbound bytes
	liveness atomic.Int64 // silence after which the janitor closes the connection; 0: never
	peerName atomic.Pointer[string]
	closing  atomic.Pointer[connError] // set by the janitor or the output budget: send it and close
	outHeld  atomic.Int64              // memory of the output gnet held after the last write (holdOutput), counted in the node's outHeld
	shed     atomic.Bool               // ending to give the node's memory back (either budget): no linger, counted as gone by both
	shedAt   atomic.Int64              // chosen by the output budget for holding this much: its loop confirms (confirmShed)

	// The frame still arriving, counted in the node's partialBytes
	// (written by the loop; read by other loops choosing whom to end).
	partial      atomic.Int64 // bytes held
	partialSince atomic.Int64 // unix nanos of its last progress: it began, or grew by partialProgress; 0: none

	mu           sync.Mutex
	enc          frame.Encoder
	out          []byte
	flushPending bool
	framesQueued int // frames in out, counted into the node's stats by flush
	aheadBytes   int // frames queued past their jobs' windows (ahead.go)
	gnetBuffered int
	peerMax      int
	doitFields   frame.Feature // optional DOIT fields in force (event loop)
	closed       bool
	overflowed   bool // the output gate refused a frame: the connection is ending
	jobs         map[uint64]*Worker
	room         chan struct{} // closed when output room appears; nil without waiters
	poll         *time.Timer
	parked       []*Worker // loop jobs waiting for outbound room
	rowBuf       []byte    // loop handlers' scratch row, reused
}

func newConn(n *Node, gc gnet.Conn) *conn {
	c := &conn{
		n:       n,
		gc:      gc,
		opened:  time.Now(),
		dec:     frame.Decoder{MaxPayload: handshakeMaxPayload},
		need:    frame.HeaderSize,
		tombs:   newTombstones(&n.tombCount, int64(n.cfg.MaxTombstones), n.cfg.TombstoneTTL),
		jobs:    make(map[uint64]*Worker),
		peerMax: handshakeMaxPayload,
	}
	if a := gc.RemoteAddr(); a != nil {
		c.remote = a.String()
	}
	c.lastRecv.Store(c.opened.UnixNano())
	return c
}

// traffic decodes and handles every complete frame buffered on the
// connection, then flushes. It returns gnet.Close when the connection must
// end. Event loop only.
//
// Bytes are looked at only once a whole frame is buffered: a frame that
// is still arriving costs one header peek per wake-up, not a copy of
// everything buffered (which made a 16 MiB frame quadratic).
func (c *conn) traffic() (action gnet.Action) {
	defer func() {
		if r := recover(); r != nil { // a bug of ours must not take the loop down
			c.replies.flush() // fail writes what the read queued: count it first
			c.n.log.Error("rexi node: panic handling traffic", "remote", c.remote, "panic", r)
			c.dropDeferred()
			action = c.fail(newConnError(frame.CodeInternal, "internal error"))
		}
	}()
	if c.lingering {
		return c.linger()
	}
	if ce := c.closing.Load(); ce != nil {
		return c.fail(ce)
	}
	inbound := c.gc.InboundBuffered()
	if inbound > 0 { // else a worker's kick: no frame is read below
		c.readAt = time.Now()
		c.lastRecv.Store(c.readAt.UnixNano()) // not the janitor's clock, which may lag: liveness must never be judged early
	}
	if inbound < c.need {
		if err := c.holdPartial(inbound+len(c.plain), false); err != nil {
			return c.fail(err)
		}
		c.flush()
		return gnet.None
	}
	buf, _ := c.gc.Peek(-1)
	used, handled := 0, c.handled
	var err error
	var f frame.Frame
	for used < len(buf) {
		// On an encrypted connection, once the handshake is done, the wire
		// carries only RECORDs, whose plaintext holds the frames.
		dec := &c.dec
		if c.sess != nil {
			dec = &c.recDec
		}
		var n int
		n, err = dec.DecodeTo(&f, buf[used:])
		if err == frame.ErrIncomplete {
			err = nil
			break
		}
		if err != nil {
			break
		}
		if c.sess != nil {
			err = c.openRecord(buf[used:used+frame.HeaderSize], f)
		} else {
			err = c.handle(f)
		}
		used += n
		if cap(c.scratch) > keepBuffer { // a large decompressed payload is not kept
			c.scratch = nil
		}
		if err == nil {
			if ce := c.closing.Load(); ce != nil { // the output gate overflowed
				err = ce
			}
		}
		if err != nil {
			break
		}
	}
	c.replies.flush()
	if c.sess != nil {
		c.need = c.recDec.Need(buf[used:])
	} else {
		c.need = c.dec.Need(buf[used:])
	}
	c.n.stats.bytesIn.Add(uint64(used))
	if used > 0 { // gnet's Discard(0) drops everything buffered, a partial frame included
		_, _ = c.gc.Discard(used)
	}
	if err == nil {
		// A record's opened plaintext may hold a partial frame too. Once
		// a frame was handled, what is left began in this read (records
		// completed say nothing: a frame may span many).
		err = c.holdPartial(len(buf)-used+len(c.plain), c.handled != handled)
	}
	if err != nil {
		c.dropDeferred()
		return c.fail(err)
	}
	c.flush()
	c.runDeferred()
	return gnet.None
}

// fail sends ERROR for err (unless the peer sent one), flushes and asks
// gnet to close. Other connections are untouched. A peer that overflowed
// its output is not reading: its workers are killed at once, and the
// connection lingers until the ERROR behind the queued output is written
// (or lingerTimeout passes), so a peer that reads late still learns why.
func (c *conn) fail(err error) gnet.Action {
	code, msg := frame.CodeInternal, err.Error()
	switch e := err.(type) {
	case *frame.ProtocolError:
		code, msg = e.Code, e.Detail
		if c.phase == phaseHello && code == frame.CodeUnknownType {
			code = frame.CodeBadHandshake // garbage instead of HELLO
		}
	case *connError:
		code, msg = e.code, e.msg
	}
	shutdown := code == frame.CodeShuttingDown
	switch {
	case shutdown && c.phase == phaseReady: // our own doing, not a protocol error
	case c.phase == phaseReady:
		c.n.stats.protocolErrors.Add(1)
	default:
		c.n.stats.refused.Add(1)
	}
	if pe, ok := err.(*peerError); ok {
		c.n.log.Warn("rexi node: coordinator sent ERROR, closing", "remote", c.remote, "code", pe.code.String(), "message", pe.msg)
		c.flush()
		return gnet.Close
	}
	level := slog.LevelWarn
	if shutdown {
		level = slog.LevelInfo
	}
	c.n.log.Log(context.Background(), level, "rexi node: closing connection", "remote", c.remote, "code", code.String(), "detail", msg)
	c.mu.Lock()
	c.out = c.enc.AppendError(c.out, 0, code, frame.FitMessage(msg, c.peerMax))
	c.mu.Unlock()
	if code != frame.CodeOutputOverflow || c.shed.Load() { // shed: its memory is wanted now, no linger
		c.flush()
		return gnet.Close
	}
	c.killJobs()
	c.lingering, c.lingerUntil = true, time.Now().Add(lingerTimeout)
	return c.linger()
}

// lingerTimeout bounds how long an overflowed connection waits for its
// peer to read the ERROR.
const lingerTimeout = 10 * time.Second

// linger drops whatever the peer sends; once the output is written it
// shuts our side of the connection (a FIN after the ERROR) and waits for
// the peer's end, closing at the latest when the linger time is over.
// Closing at once would reset the connection whenever the peer is still
// sending (input left unread), and a reset makes the peer's kernel drop
// what the peer has not read yet: the ERROR first. Event loop only.
func (c *conn) linger() gnet.Action {
	if c.shed.Load() { // ended meanwhile for the node's memory, which is wanted now
		return gnet.Close
	}
	_, _ = c.gc.Discard(0) // everything buffered
	if time.Now().After(c.lingerUntil) {
		return gnet.Close
	}
	wait := lingerTimeout // the peer's end (gnet closes on it) or this wake-up, whichever comes first
	if !c.halfClosed {
		c.flush()
		if c.gc.OutboundBuffered() > 0 {
			wait = pollInterval // look again soon
		} else {
			if syscall.Shutdown(c.gc.Fd(), syscall.SHUT_WR) != nil {
				return gnet.Close
			}
			c.halfClosed = true
		}
	}
	c.mu.Lock()
	c.schedulePollInLocked(min(wait, time.Until(c.lingerUntil)+time.Millisecond))
	c.mu.Unlock()
	return gnet.None
}

// handle acts on one frame. A non-nil error closes the connection.
func (c *conn) handle(f frame.Frame) error {
	c.handled++
	switch c.phase {
	case phaseHello:
		return c.onHello(f)
	case phaseAuth:
		return c.onAuth(f)
	}
	var p []byte
	var err error
	p, c.scratch, err = c.expansion.Payload(f, c.scratch, c.n.cfg.MaxPayload)
	if err != nil {
		return err
	}
	switch f.Type {
	case frame.TypeDoit:
		var d frame.Doit
		if err := d.Parse(p, c.doitFields); err != nil {
			return err
		}
		return c.doit(f.Ref, &d)
	case frame.TypeStart:
		if err := frame.CheckEmpty(p); err != nil {
			return err
		}
		c.start(f.Ref)
	case frame.TypeCancel:
		if err := frame.CheckEmpty(p); err != nil {
			return err
		}
		c.kill(f.Ref)
	case frame.TypeAck:
		n, err := frame.ParseAck(p)
		if err != nil {
			return err
		}
		c.ack(f.Ref, n)
	case frame.TypeKillAll:
		if f.Ref != 0 {
			return newConnError(frame.CodeMalformed, "KILL_ALL carries ref %d; its ref must be 0", f.Ref)
		}
		refs, err := frame.ParseKillAll(p)
		if err != nil {
			return err
		}
		c.killAll(refs) // an empty list is a no-op
	case frame.TypeHeartbeat:
		if err := frame.CheckEmpty(p); err != nil {
			return err
		}
		c.mu.Lock()
		c.queueLocked(frame.TypeHeartbeat, f.Ref, nil)
		c.mu.Unlock()
	case frame.TypeError:
		return newPeerError(p)
	default:
		return newConnError(frame.CodeUnexpected, "%s is not valid from a coordinator after the handshake", f.Type)
	}
	return nil
}

// closeAll runs when the connection is gone: every worker it submitted is
// killed at once.
func (c *conn) closeAll() {
	c.mu.Lock()
	c.closed = true
	if c.poll != nil {
		c.poll.Stop()
	}
	c.mu.Unlock()
	c.killJobs()
	c.n.partialBytes.Add(-c.partial.Swap(0))
	// gnet drops the output it held for the connection.
	c.n.outHeld.Add(-c.outHeld.Swap(0))
	c.tombs.clear()          // the loop is done with this connection (OnClose, or after the engine stopped)
	if !c.ready.Swap(true) { // it never finished the handshake
		c.n.leftHandshake(c.source)
	}
}

// killJobs kills every worker of the connection and wakes the ones
// waiting for output room (they find themselves removed).
func (c *conn) killJobs() {
	c.mu.Lock()
	jobs := c.jobs
	c.jobs = map[uint64]*Worker{}
	for _, w := range jobs {
		w.removed = true
		c.n.killed(w)
	}
	if c.room != nil {
		close(c.room)
		c.room = nil
	}
	c.parked = nil
	c.mu.Unlock()
}

// runDeferred starts the jobs and wakes the workers this read queued.
// Done after the read's output is flushed, so the loop's write does not
// wait behind them and they find their frames already sent. Event loop
// only (or after it stopped).
func (c *conn) runDeferred() {
	for i, ch := range c.wakes {
		select { // a worker recycled meanwhile just wakes spuriously
		case ch <- struct{}{}:
		default:
		}
		c.wakes[i] = nil
	}
	c.wakes = c.wakes[:0]
	// The read's jobs go to the pool together: one wake-up for the turn.
	started := c.spawns[:0]
	for _, t := range c.spawns {
		if t.w.jc.Err() == ErrKilled { // CANCEL or KILL_ALL in the same read: out of the table already
			c.n.unstarted(t.w)
		} else {
			started = append(started, t)
		}
	}
	c.n.pool.submit(started)
	clear(c.spawns)
	c.spawns = c.spawns[:0]
}

// dropDeferred releases the jobs this read accepted but did not start,
// because the read failed and the connection is ending: each is killed
// before its handler ever runs. Event loop only.
func (c *conn) dropDeferred() {
	for i, t := range c.spawns {
		w := t.w
		c.mu.Lock()
		if !w.removed {
			delete(c.jobs, w.ref)
			w.removed = true
			c.n.killed(w)
		}
		c.mu.Unlock()
		c.n.unstarted(w)
		c.spawns[i] = task{}
	}
	c.spawns = c.spawns[:0]
}

// unstarted recycles a killed job's worker whose handler never started.
func (n *Node) unstarted(w *Worker) {
	n.stats.running.Add(-1)
	w.endSpan(outcomeKilled, nil, ErrKilled)
	n.putWorker(w)
}

// closeWith asks the event loop to send ERROR{ce} and close the
// connection. Safe from any goroutine.
func (c *conn) closeWith(ce *connError) {
	if c.closing.CompareAndSwap(nil, ce) {
		_ = c.gc.Wake(nil)
	}
}
