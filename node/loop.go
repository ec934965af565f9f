package node

import (
	"fmt"
	"io"
	"runtime/debug"
	"time"

	"github.com/rexi-go/rexi/frame"
)

// Loop handlers run on the event loop instead of a goroutine per job: no
// goroutine, context or channel per job, and their output goes into the
// connection's buffer with no wake-up. They must never block; use Handle
// for anything that waits (I/O, locks held long, sleeps).

// ReplyFunc computes a cast job's reply on the event loop. args and nonce
// are valid only during the call; it may append the reply to dst and
// return it. A non-nil error is sent as EXIT ERROR, a panic as EXIT PANIC.
type ReplyFunc func(args, nonce, dst []byte) ([]byte, error)

// StreamFunc opens a streaming job on the event loop: the node sends
// STREAM_INIT, and after START pulls rows from the RowSource as the window
// allows (and the outbound bound has room), then sends LAST. args and
// nonce are valid only during the call.
type StreamFunc func(args, nonce []byte) (RowSource, error)

// RowSource yields a streaming job's rows, on the event loop, without
// blocking.
//
// A RowSource that also implements io.Closer is closed once its job ends
// (LAST sent, failed or killed), on the event loop, and never used again:
// the place to release what it holds (a snapshot, an iterator) or to
// recycle it. Close must not block; its error is ignored.
type RowSource interface {
	// Next appends the next row to dst and returns it, or ok=false when
	// there are no more rows.
	Next(dst []byte) (row []byte, ok bool)
	// Last appends the LAST payload to dst and returns it.
	Last(dst []byte) []byte
}

// MoreRows is an optional interface of a RowSource that can tell, without
// producing it, whether another row follows. LAST does not count against
// the window, so with it the node sends LAST right after the last row even
// when that row filled the window; without it, LAST waits for the ACK that
// lets the node call Next again, a round trip more.
type MoreRows interface {
	More() bool
}

// HandleReply registers a cast handler that runs on the event loop.
func (n *Node) HandleReply(name string, fn ReplyFunc) {
	if fn == nil {
		panic(fmt.Sprintf("node: HandleReply(%q): nil handler", name))
	}
	n.register(handlerEntry{name: name, reply: fn})
}

// HandleStream registers a streaming handler whose rows are pulled on the
// event loop.
func (n *Node) HandleStream(name string, fn StreamFunc) {
	if fn == nil {
		panic(fmt.Sprintf("node: HandleStream(%q): nil handler", name))
	}
	n.register(handlerEntry{name: name, stream: fn})
}

// doitReply runs a ReplyFunc job to its end. Event loop.
func (c *conn) doitReply(ref uint64, h *handlerEntry, d *frame.Doit, now time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, dup := c.jobs[ref]; dup {
		return newConnError(frame.CodeUnexpected, "DOIT reuses ref %d, which is live", ref)
	}
	span := c.startSpan(ref, h.name, d)
	reply, stack, err := callReply(h.reply, d.Args, d.Nonce, c.rowBuf[:0])
	if err == nil && len(reply) > c.peerMax {
		err = ErrPayloadTooLarge
	}
	if err != nil {
		c.replies.add(h.stats, false)
		x := c.exitLoopLocked(ref, h, d.Nonce, err, stack, now)
		c.n.endSpan(span, outcomeExit, 0, &x, nil)
		return nil
	}
	c.growRowBuf(len(reply))
	c.replies.add(h.stats, c.queueLocked(frame.TypeReply, ref, reply))
	c.n.endSpan(span, outcomeReply, 0, nil, nil)
	return nil
}

// replyCount collects a read's loop replies for one handler: the loop
// answers a read's DOITs back to back, and two atomic additions per DOIT
// on shared counters were a measurable part of that work.
type replyCount struct {
	hs               *handlerCounters
	started, replied uint64
}

// add counts one started reply job of hs, and whether it replied (an
// EXIT, or a REPLY the output gate refused, did not).
func (r *replyCount) add(hs *handlerCounters, replied bool) {
	if r.hs != hs {
		r.flush()
		r.hs = hs
	}
	r.started++
	if replied {
		r.replied++
	}
}

// flush adds what was collected to the handler's counters. Event loop,
// at the end of every read, before its output is written: whoever sees a
// reply sees it counted.
func (r *replyCount) flush() {
	if r.hs == nil {
		return
	}
	r.hs.started.Add(r.started)
	if r.replied > 0 {
		r.hs.replied.Add(r.replied)
	}
	*r = replyCount{}
}

// doitStream opens a StreamFunc job and sends STREAM_INIT. Event loop.
func (c *conn) doitStream(ref uint64, h *handlerEntry, d *frame.Doit, now time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, dup := c.jobs[ref]; dup {
		return newConnError(frame.CodeUnexpected, "DOIT reuses ref %d, which is live", ref)
	}
	h.stats.started.Add(1)
	span := c.startSpan(ref, h.name, d)
	src, stack, err := callOpen(h.stream, d.Args, d.Nonce)
	if err != nil {
		x := c.exitLoopLocked(ref, h, d.Nonce, err, stack, now)
		c.n.endSpan(span, outcomeExit, 0, &x, nil)
		return nil
	}
	w := c.n.getWorker() // pooled like a goroutine job's; recycled where the job ends (releaseLoopLocked)
	w.c, w.ref, w.handler, w.src, w.started, w.span, w.hs = c, ref, h.name, src, now, span, h.stats
	w.state, w.wait, w.waitSince = stateInitWait, waitStart, now.UnixNano()
	if d.TimeoutMillis > 0 {
		w.deadline = now.Add(time.Duration(d.TimeoutMillis) * time.Millisecond).UnixNano()
	}
	if len(d.Nonce) > 0 {
		w.in = append(w.in[:0], d.Nonce...) // for the error ring
		w.nonce = w.in
	}
	c.jobs[ref] = w
	c.n.stats.live.Add(1)
	h.stats.live.Add(1)
	c.queueLocked(frame.TypeStreamInit, ref, nil) // on overflow the connection ends, and the job with it
	return nil
}

// pumpLocked sends a loop job's rows while its window and the outbound
// bound allow, and LAST at the end. Caller holds c.mu; event loop only.
func (c *conn) pumpLocked(w *Worker) {
	window, limit := c.n.cfg.Window, c.n.cfg.OutboundLimit
	for {
		if pending := c.pendingLocked(); pending > 0 && pending >= limit {
			c.waitRoomLoopLocked(w)
			return
		}
		if w.unacked >= window {
			more, stack, err := moreRows(w.src)
			if err != nil {
				c.failLoopLocked(w, frame.ExitPanic, err, stack)
			} else if !more {
				c.lastLocked(w)
			} else {
				w.wait, w.waitSince = waitAck, c.n.coarseNow()
			}
			return
		}
		row, ok, stack, err := nextRow(w.src, c.rowBuf[:0])
		if err != nil {
			c.failLoopLocked(w, frame.ExitPanic, err, stack)
			return
		}
		if !ok {
			c.lastLocked(w)
			return
		}
		if len(row) > c.peerMax {
			c.failLoopLocked(w, frame.ExitError, ErrPayloadTooLarge, nil)
			return
		}
		c.growRowBuf(len(row))
		c.appendLocked(frame.TypeStream, w.ref, row)
		w.unacked++
		w.rows++
		if w.rows%rowsPerCount == 0 { // the rest when the job ends (liveDown)
			w.hs.rows.Add(rowsPerCount)
		}
	}
}

// lastLocked sends a loop job's LAST and removes it. Caller holds c.mu;
// event loop only.
func (c *conn) lastLocked(w *Worker) {
	last, stack, err := lastRow(w.src, c.rowBuf[:0])
	if err != nil {
		c.failLoopLocked(w, frame.ExitPanic, err, stack)
		return
	}
	c.appendLocked(frame.TypeLast, w.ref, last)
	c.removeLoopLocked(w)
	w.endSpan(outcomeLast, nil, nil)
	c.releaseLoopLocked(w)
}

// releaseLoopLocked closes an ended loop job's source (if it is an
// io.Closer) and returns its worker to the pool. Only the job table and
// the parked list refer to a loop job (its handler never sees the
// Worker); one still parked is left to the collector, since
// resumeParkedLocked will look at it. Caller holds c.mu.
func (c *conn) releaseLoopLocked(w *Worker) {
	if w.src == nil || !w.removed {
		return
	}
	if cl, ok := w.src.(io.Closer); ok {
		if stack, err := closeSource(cl); stack != nil {
			c.n.log.Error("rexi node: a row source panicked in Close", "handler", w.handler, "err", err, "stack", string(stack))
		}
	}
	w.src = nil
	if !w.parked {
		c.n.putWorker(w)
	}
}

// growRowBuf makes the scratch row as large as the last row needed, so
// that handlers appending to dst stop allocating, up to keepBuffer: a
// larger row's buffer is not kept. (A returned slice is never adopted: it
// may alias the handler's own memory or the DOIT.)
func (c *conn) growRowBuf(n int) {
	switch {
	case n > keepBuffer:
		c.rowBuf = nil
	case n > cap(c.rowBuf):
		c.rowBuf = make([]byte, 0, n)
	}
}

// waitRoomLoopLocked parks a loop job until flush finds room; the ack
// timeout bounds the wait.
func (c *conn) waitRoomLoopLocked(w *Worker) {
	if w.wait != waitAck {
		w.wait, w.waitSince = waitAck, c.n.coarseNow()
	}
	if !w.parked {
		w.parked = true
		c.parked = append(c.parked, w)
		c.n.stats.outputWaits.Add(1)
		c.schedulePollLocked()
	}
}

// resumeParkedLocked pumps parked loop jobs once there is room. Caller
// holds c.mu; event loop only.
func (c *conn) resumeParkedLocked() {
	if len(c.parked) == 0 || c.pendingLocked() >= c.n.cfg.OutboundLimit {
		return
	}
	parked := c.parked
	c.parked = nil
	for _, w := range parked {
		w.parked = false
		if !w.removed && w.state == stateStreaming {
			c.pumpLocked(w)
		}
	}
}

// removeLoopLocked takes a finished loop job out of the table.
func (c *conn) removeLoopLocked(w *Worker) {
	if w.removed {
		return
	}
	delete(c.jobs, w.ref)
	w.removed = true
	c.n.liveDown(w)
}

// failLoopLocked ends a loop job with an EXIT.
func (c *conn) failLoopLocked(w *Worker, kind frame.ExitKind, err error, stack []byte) {
	c.removeLoopLocked(w)
	c.dropAheadLocked(w)
	x := frame.Exit{Kind: kind, Reason: []byte(err.Error()), Stack: stack}
	w.endSpan(outcomeExit, &x, nil)
	c.n.countExit(x, w.hs, w.handler, w.nonce, time.Now())
	c.queueExitLocked(w.ref, x)
	c.kickLocked()           // the janitor may call this off the loop
	if w.waiting || w.done { // a goroutine job without its goroutine: nothing else refers to it
		c.n.putWorker(w)
		return
	}
	c.releaseLoopLocked(w)
}

// exitLoopLocked answers a loop job that failed before it started.
func (c *conn) exitLoopLocked(ref uint64, h *handlerEntry, nonce []byte, err error, stack []byte, now time.Time) frame.Exit {
	x := frame.Exit{Kind: frame.ExitError, Reason: []byte(err.Error()), Stack: stack}
	if stack != nil {
		x.Kind = frame.ExitPanic
	}
	c.n.countExit(x, h.stats, h.name, nonce, now)
	c.queueExitLocked(ref, x)
	return x
}

// The call wrappers turn a panic in a loop handler into an EXIT for its
// job instead of an ERROR for the whole connection.

func callReply(fn ReplyFunc, args, nonce, dst []byte) (reply, stack []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			err, stack = fmt.Errorf("panic: %v", r), debug.Stack()
		}
	}()
	reply, err = fn(args, nonce, dst)
	return reply, nil, err
}

func callOpen(fn StreamFunc, args, nonce []byte) (src RowSource, stack []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			err, stack = fmt.Errorf("panic: %v", r), debug.Stack()
		}
	}()
	src, err = fn(args, nonce)
	return src, nil, err
}

func nextRow(src RowSource, dst []byte) (row []byte, ok bool, stack []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			err, stack = fmt.Errorf("panic: %v", r), debug.Stack()
		}
	}()
	row, ok = src.Next(dst)
	return row, ok, nil, nil
}

// moreRows asks a source that implements MoreRows whether a row follows;
// any other source may have more.
func moreRows(src RowSource) (more bool, stack []byte, err error) {
	m, ok := src.(MoreRows)
	if !ok {
		return true, nil, nil
	}
	defer func() {
		if r := recover(); r != nil {
			err, stack = fmt.Errorf("panic: %v", r), debug.Stack()
		}
	}()
	return m.More(), nil, nil
}

func closeSource(src io.Closer) (stack []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			err, stack = fmt.Errorf("panic: %v", r), debug.Stack()
		}
	}()
	return nil, src.Close()
}

func lastRow(src RowSource, dst []byte) (last, stack []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			err, stack = fmt.Errorf("panic: %v", r), debug.Stack()
		}
	}()
	return src.Last(dst), nil, nil
}
