package node

import (
	"context"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/rexi-go/rexi/frame"
	"go.opentelemetry.io/otel/trace"
)

// Job table operations. doit, start, ack, kill and killAll run on the event
// loop and never block: they update the table under c.mu and signal the
// worker.

func (c *conn) doit(ref uint64, d *frame.Doit) error {
	if ref == 0 {
		return newConnError(frame.CodeUnexpected, "DOIT with ref 0")
	}
	now := c.readAt
	if c.tombs.take(ref, now) {
		c.n.stats.tombstoned.Add(1)
		return nil
	}
	if c.n.draining.Load() {
		c.queueExit(ref, frame.Exit{Kind: frame.ExitShuttingDown, Reason: []byte("node is shutting down")})
		return nil
	}
	h, ok := c.handler(d.Handler)
	if !ok {
		x := frame.Exit{Kind: frame.ExitUnknownHandler, Reason: fmt.Appendf(nil, "unknown handler %q", d.Handler)}
		c.n.stats.unknown.Add(1)
		c.n.recordError(newErrorRecord(now, d.Handler, d.Nonce, x))
		c.queueExit(ref, x)
		return nil
	}
	if h.reply != nil { // answered at once, never live
		return c.doitReply(ref, h, d, now)
	}
	if reason := c.overloaded(); reason != "" {
		c.n.stats.overloaded.Add(1)
		c.queueExit(ref, frame.Exit{Kind: frame.ExitOverloaded, Reason: []byte(reason)})
		return nil
	}
	if h.stream != nil {
		return c.doitStream(ref, h, d, now)
	}
	size := len(d.Nonce) + len(d.Args)
	if reason := c.reserveArgs(size); reason != "" {
		c.n.stats.overloaded.Add(1)
		c.queueExit(ref, frame.Exit{Kind: frame.ExitOverloaded, Reason: []byte(reason)})
		return nil
	}
	// A pooled worker keeps its signal channel and its buffer for the
	// copies of nonce and args (the frame's bytes belong to the loop).
	w := c.n.getWorker()
	w.argBytes = size
	w.c, w.ref, w.handler, w.started, w.hs = c, ref, h.name, now, h.stats
	w.in = append(append(w.in[:0], d.Nonce...), d.Args...)
	w.nonce = w.in[:len(d.Nonce):len(d.Nonce)]
	w.args = w.in[len(d.Nonce):]
	w.rangeLo, w.rangeHi, w.ranged = d.RangeLo, d.RangeHi, c.doitFields&frame.FeatureRange != 0
	if d.TimeoutMillis > 0 {
		w.deadline = now.Add(time.Duration(d.TimeoutMillis) * time.Millisecond).UnixNano()
	}
	w.span = c.startSpan(ref, h.name, d) // the user's tracer: not under c.mu
	c.mu.Lock()
	if _, dup := c.jobs[ref]; dup {
		c.mu.Unlock()
		c.releaseArgs(w)
		if w.span != nil {
			w.span.End()
		}
		c.n.putWorker(w)
		return newConnError(frame.CodeUnexpected, "DOIT reuses ref %d, which is live", ref)
	}
	c.jobs[ref] = w
	c.n.stats.live.Add(1)
	h.stats.live.Add(1)
	h.stats.started.Add(1)
	if h.streaming { // runs at START; until then the job is the loop's, like a loop stream
		w.fn, w.waiting = h.fn, true
		w.state, w.wait, w.waitSince = stateInitWait, waitStart, now.UnixNano()
		c.queueLocked(frame.TypeStreamInit, ref, nil) // on overflow the connection ends, and the job with it
	} else {
		c.spawnLocked(w, h.fn)
	}
	c.mu.Unlock()
	return nil
}

// spawnLocked gives w its context and queues its handler to start on a
// worker goroutine once this read's output is flushed. Caller holds c.mu;
// event loop.
func (c *conn) spawnLocked(w *Worker, fn Handler) {
	w.jc = &jobContext{wake: w.signal}
	if w.deadline != 0 {
		w.jc.startDeadline(time.Unix(0, w.deadline))
	}
	if w.span != nil { // its goroutine starts later: no race
		w.jc.values = trace.ContextWithSpan(context.Background(), w.span)
	}
	c.n.stats.running.Add(1)
	c.spawns = append(c.spawns, task{fn, w})
}

// getWorker returns a pooled worker: its signal channel emptied, its state
// reset.
func (n *Node) getWorker() *Worker {
	w, _ := n.workers.Get().(*Worker)
	if w == nil {
		return &Worker{signal: make(chan struct{}, 1)}
	}
	select { // a wake-up or stop that came after its last job ended
	case <-w.signal:
	default:
	}
	return w
}

// putWorker recycles a goroutine worker once its handler returned and it
// is out of the job table (nothing of the node refers to it any more).
func (n *Node) putWorker(w *Worker) {
	in, signal, ahead := w.in, w.signal, w.ahead
	if cap(in) > keepBuffer {
		in = nil
	}
	if cap(ahead) > keepBuffer {
		ahead = nil
	}
	*w = Worker{in: in[:0], signal: signal, ahead: ahead[:0], aheadFrames: w.aheadFrames[:0]}
	n.workers.Put(w)
}

// task is a job handed to a worker goroutine.
type task struct {
	fn Handler
	w  *Worker
}

func (c *conn) start(ref uint64) {
	c.mu.Lock()
	if w := c.jobs[ref]; w != nil && w.state == stateInitWait {
		w.state = stateStreaming
		switch {
		case w.src != nil:
			w.wait = waitNone
			c.pumpLocked(w)
		case w.waiting:
			w.waiting, w.wait = false, waitNone
			c.spawnLocked(w, w.fn)
		default:
			c.wakes = append(c.wakes, w.signal)
		}
	}
	c.mu.Unlock()
}

func (c *conn) ack(ref uint64, n uint32) {
	c.mu.Lock()
	if w := c.jobs[ref]; w != nil {
		w.unacked = max(0, w.unacked-int(min(n, 1<<30)))
		switch {
		case w.src != nil:
			if w.state == stateStreaming && !w.parked {
				w.wait = waitNone
				c.pumpLocked(w)
			}
		case w.done: // no goroutine; this may end the job
			c.releaseAheadLocked(w)
		default:
			c.releaseAheadLocked(w)
			if !w.waiting && w.wait != waitNone { // parked: it may queue more now
				c.wakes = append(c.wakes, w.signal)
			}
		}
	}
	c.mu.Unlock()
}

// kill removes one job (CANCEL) and cancels its context; unknown refs are
// ignored.
func (c *conn) kill(ref uint64) {
	c.mu.Lock()
	if w := c.jobs[ref]; w != nil {
		delete(c.jobs, ref)
		w.removed = true
		c.n.killed(w)
	}
	c.mu.Unlock()
}

// killAll kills the listed live jobs and tombstones the rest.
func (c *conn) killAll(refs frame.RefList) {
	now := c.readAt
	// A tombstone added past the bound drops the connection's oldest, so
	// of a KILL_ALL longer than the bound only its last refs can keep
	// one: the earlier unknown refs are not tombstoned at all. (A 16 MiB
	// KILL_ALL of 2 M unknown refs held the event loop about 300 ms in
	// tombstone churn; it now costs a lookup per ref.)
	tombFrom := refs.Len() - int(c.tombs.own)
	c.mu.Lock()
	for i := 0; i < refs.Len(); i++ {
		ref := refs.At(i)
		if w := c.jobs[ref]; w != nil {
			delete(c.jobs, ref)
			w.removed = true
			c.n.killed(w)
		} else if i >= tombFrom {
			c.tombs.add(ref, now)
		}
	}
	c.mu.Unlock()
}

// overloaded says why a new live job may not start on this connection, or
// "" when it may: admission control (MaxJobs, MaxConnJobs).
func (c *conn) overloaded() string {
	if live, limit := c.n.stats.live.Load(), int64(c.n.cfg.MaxJobs); live >= limit {
		return fmt.Sprintf("node has %d live jobs, its limit", limit)
	}
	c.mu.Lock()
	live := len(c.jobs)
	c.mu.Unlock()
	if live >= c.n.cfg.MaxConnJobs {
		return fmt.Sprintf("connection has %d live jobs, its limit", c.n.cfg.MaxConnJobs)
	}
	return ""
}

// reserveArgs counts size bytes of a goroutine job's nonce and arguments
// against MaxArgBytes and MaxConnArgBytes, or says why they do not fit.
// Event loop.
func (c *conn) reserveArgs(size int) string {
	if c.argBytes.Add(int64(size)) > int64(c.n.cfg.MaxConnArgBytes) {
		c.argBytes.Add(-int64(size))
		return fmt.Sprintf("the connection's live jobs hold %d bytes of arguments, its limit", c.n.cfg.MaxConnArgBytes)
	}
	if c.n.argBytes.Add(int64(size)) > int64(c.n.cfg.MaxArgBytes) {
		c.n.argBytes.Add(-int64(size))
		c.argBytes.Add(-int64(size))
		return fmt.Sprintf("the node's live jobs hold %d bytes of arguments, its limit", c.n.cfg.MaxArgBytes)
	}
	return ""
}

// releaseArgs gives back what reserveArgs counted for w, once.
func (c *conn) releaseArgs(w *Worker) {
	if w.argBytes > 0 {
		c.argBytes.Add(-int64(w.argBytes))
		c.n.argBytes.Add(-int64(w.argBytes))
		w.argBytes = 0
	}
}

// queueExit appends an EXIT from the event loop (no worker involved).
func (c *conn) queueExit(ref uint64, x frame.Exit) {
	c.mu.Lock()
	c.queueExitLocked(ref, x)
	c.mu.Unlock()
}

// killed accounts for a worker removed from its table by a kill, then
// stops it: counters first, so that whoever sees the worker stop sees
// them too. The caller holds c.mu: once a worker is out of the table and
// the lock released, nothing of the node's refers to it, so run can
// recycle it.
func (n *Node) killed(w *Worker) {
	w.hs.killed.Add(1)
	n.liveDown(w)
	if w.src != nil { // a loop job ends here
		w.endSpan(outcomeKilled, nil, ErrKilled)
		w.c.releaseLoopLocked(w)
		return
	}
	w.c.dropAheadLocked(w)
	if w.waiting || w.done { // no goroutine: nothing else refers to it
		w.endSpan(outcomeKilled, nil, ErrKilled)
		n.putWorker(w)
		return
	}
	w.stop(ErrKilled) // its run ends its span
}

// run runs one job's handler on a worker goroutine and reports how it ended.
func (n *Node) run(fn Handler, w *Worker) {
	panicked, stack, err := call(fn, w)
	n.stats.running.Add(-1)
	cause := w.jc.Err()
	w.jc.end() // the job is over: whatever the handler left running on ctx stops
	x, failed := exitFor(cause, panicked, stack, err)
	c := w.c
	c.mu.Lock()
	wasLive := !w.removed
	if wasLive && !failed && c.finishAheadLocked(w) {
		c.mu.Unlock()
		return // the loop sends what the window held back and ends the job: w is the loop's now
	}
	if wasLive {
		delete(c.jobs, w.ref)
		w.removed = true
		c.dropAheadLocked(w) // a failed job's EXIT ends it: rows held back are not sent
	}
	c.mu.Unlock()
	defer n.putWorker(w)
	if !wasLive {
		w.endSpan(outcomeKilled, nil, cause)
		return // killed: nobody wants an EXIT
	}
	n.liveDown(w)
	if !failed {
		w.endSpan(finalOutcome(w.final), nil, nil)
		return
	}
	w.endSpan(outcomeExit, &x, nil)
	n.countExit(x, w.hs, w.handler, w.nonce, time.Now())
	c.mu.Lock()
	if !c.closed {
		c.queueExitLocked(w.ref, x)
		c.kickLocked()
	}
	c.mu.Unlock()
}

// exitFor is the EXIT a job ends with after its handler returned, if any:
// a stop cause (timeout, deadline), a panic or an error.
func exitFor(cause error, panicked bool, stack []byte, err error) (frame.Exit, bool) {
	if kind, ok := exitKindFor(cause); ok {
		return frame.Exit{Kind: kind, Reason: []byte(cause.Error())}, true
	}
	if panicked {
		return frame.Exit{Kind: frame.ExitPanic, Reason: []byte(err.Error()), Stack: stack}, true
	}
	if err != nil {
		return frame.Exit{Kind: frame.ExitError, Reason: []byte(err.Error())}, true
	}
	return frame.Exit{}, false
}

// call runs the handler, turning a panic into an error and a stack.
func call(fn Handler, w *Worker) (panicked bool, stack []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			err, panicked, stack = fmt.Errorf("panic: %v", r), true, debug.Stack()
		}
	}()
	return false, nil, fn(w.jc, w)
}

// expireWaits stops the workers whose wait for START or ACK has outlived
// its timeout by more than slack, the janitor's tick (called by the
// janitor).
func (c *conn) expireWaits(now, slack int64) {
	c.mu.Lock()
	for _, w := range c.jobs {
		var cause error
		switch {
		case w.detached() && w.deadline != 0 && now > w.deadline:
			c.failLoopLocked(w, frame.ExitDeadline, ErrDeadline, nil)
			continue
		case w.wait == waitStart && now-w.waitSince > int64(c.n.cfg.InitTimeout)+slack:
			cause = ErrInitTimeout
			c.n.stats.initTimeouts.Add(1)
		case w.wait == waitAck && now-w.waitSince > int64(c.n.cfg.AckTimeout)+slack:
			cause = ErrAckTimeout
			c.n.stats.ackTimeouts.Add(1)
		default:
			continue
		}
		w.wait = waitNone // counted once
		if w.detached() { // no goroutine to tell: end it here
			kind, _ := exitKindFor(cause)
			c.failLoopLocked(w, kind, cause, nil)
			continue
		}
		w.stop(cause)
	}
	c.mu.Unlock()
}

// countExit is the one place a job's EXIT is accounted for: its
// handler's counter and, for failures an operator wants to see, the
// recent-error ring. (Stream timeouts are counted where they are
// detected, by the janitor; an unknown handler where the DOIT is.)
func (n *Node) countExit(x frame.Exit, hs *handlerCounters, handler string, nonce []byte, at time.Time) {
	switch x.Kind {
	case frame.ExitDeadline:
		hs.deadlines.Add(1)
		return
	case frame.ExitPanic:
		hs.panics.Add(1)
		hs.errors.Add(1)
	case frame.ExitError:
		hs.errors.Add(1)
	default:
		return
	}
	n.recordError(newErrorRecord(at, []byte(handler), nonce, x))
}

// liveDown counts a job leaving the tables and wakes WaitNoLive callers
// when none is left. The moment none is left is recorded here, where it
// happens (usually on the event loop), not when a waiter wakes up.
func (n *Node) liveDown(w *Worker) {
	w.c.releaseArgs(w)
	w.hs.live.Add(-1)
	// The rows not counted yet (they are counted rowsPerCount at a time).
	// No more come: a removed job's Stream fails, and w.rows changes only
	// under c.mu, which the callers hold or took after the removal.
	w.hs.rows.Add(w.rows % rowsPerCount)
	if n.stats.live.Add(-1) != 0 {
		return
	}
	n.idleSince.Store(time.Now().UnixNano())
	n.zeroMu.Lock()
	if n.zero != nil {
		close(n.zero)
		n.zero = nil
	}
	n.zeroMu.Unlock()
}

// IdleSince returns when the last live worker left the job tables, and
// false while some worker is live.
func (n *Node) IdleSince() (time.Time, bool) {
	at := n.idleSince.Load()
	if n.stats.live.Load() != 0 || at == 0 {
		return time.Time{}, false
	}
	return time.Unix(0, at), true
}

// WaitNoLive blocks until no worker is live (in a job table) or ctx ends.
func (n *Node) WaitNoLive(ctx context.Context) error {
	for {
		n.zeroMu.Lock()
		if n.stats.live.Load() == 0 {
			n.zeroMu.Unlock()
			return nil
		}
		if n.zero == nil {
			n.zero = make(chan struct{})
		}
		ch := n.zero
		n.zeroMu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("node: %d workers still live: %w", n.stats.live.Load(), ctx.Err())
		}
	}
}

// handler looks up a DOIT's handler, remembering the last one found:
// comparing a few bytes is cheaper than hashing the name for every DOIT.
// Event loop.
func (c *conn) handler(name []byte) (*handlerEntry, bool) {
	reg := c.n.handlers.Load()
	if h := c.lastH; h != nil && reg == c.lastReg && h.name == string(name) {
		return h, true
	}
	h, ok := (*reg)[string(name)]
	if ok {
		c.lastH, c.lastReg = h, reg
	}
	return h, ok
}
