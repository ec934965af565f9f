package node

import (
	"time"

	"github.com/rexi-go/rexi/frame"
)

// The output gate. Every frame a connection sends is appended to c.out
// under c.mu, and every producer is accounted against the bytes pending on
// the connection: c.out plus what gnet still holds (c.gnetBuffered).
//
//   - Frames that can wait do so while pending exceeds OutboundLimit: a
//     goroutine worker's REPLY, STREAM_INIT, STREAM, LAST and PING block in
//     waitRoom; a loop job's rows park until flush finds room.
//   - Frames that cannot wait — answers the event loop produces (loop
//     replies, a loop job's STREAM_INIT, HEARTBEAT echoes) and every EXIT —
//     go through queueLocked, which admits them up to OutboundHardLimit.
//     Past it the peer is not reading what it asks for: the connection
//     ends with ERROR OUTPUT_OVERFLOW and its workers are killed.
//
// The first append after a flush wakes the event loop, which swaps c.out
// with its spare buffer and writes everything in one call: a lone frame
// goes out at once, and frames produced while a flush is pending share a
// write.

// pollInterval is how often a connection with blocked writers re-reads
// gnet's outbound buffer, which drains without telling us.
const pollInterval = 2 * time.Millisecond

// keepBuffer: an output, decompression or row buffer grown past this by a
// burst is let go once it is mostly empty again, so a connection does not
// keep its peak for life.
const keepBuffer = 1 << 20

// pendingLocked is what the connection has queued and not yet written.
// Caller holds c.mu.
func (c *conn) pendingLocked() int { return len(c.out) + c.gnetBuffered }

// queueLocked appends a frame that cannot wait. It reports false, dropping
// the frame, when the connection is over its hard limit; the connection
// then ends with OUTPUT_OVERFLOW. Like appendLocked it does not wake the
// loop: callers off the loop kick. Caller holds c.mu.
func (c *conn) queueLocked(t frame.Type, ref uint64, payload []byte) bool {
	if !c.admitLocked(frame.HeaderSize + len(payload) + frame.ChecksumSize) {
		return false
	}
	c.appendLocked(t, ref, payload)
	return true
}

// queueExitLocked appends an EXIT for ref, cut to fit the coordinator's
// maximum payload. Caller holds c.mu.
func (c *conn) queueExitLocked(ref uint64, x frame.Exit) bool {
	x = x.Fit(c.peerMax)
	if !c.admitLocked(frame.HeaderSize + 3 + len(x.Reason) + len(x.Stack) + frame.ChecksumSize) {
		return false
	}
	c.out = c.enc.AppendExit(c.out, ref, x)
	c.framesQueued++
	return true
}

// admitLocked is the hard limit's check. Caller holds c.mu.
func (c *conn) admitLocked(size int) bool {
	if c.overflowed {
		return false
	}
	// An empty queue takes any one frame: a reply of the largest payload
	// the peer accepts may be larger than the hard limit itself.
	if pending := c.pendingLocked(); pending == 0 || pending+size <= c.n.cfg.OutboundHardLimit {
		return true
	}
	c.overflowed = true
	if c.closing.CompareAndSwap(nil, newConnError(frame.CodeOutputOverflow,
		"more than %d bytes of output queued: the coordinator does not read what it asks for", c.n.cfg.OutboundHardLimit)) {
		c.n.stats.overflows.Add(1) // counted where it ends the connection: the output budget may have chosen it already
		_ = c.gc.Wake(nil)
	}
	return false
}

// check reports why w may not send a payload of size bytes. Caller holds c.mu.
func (c *conn) check(w *Worker, size int) error {
	if err := w.jc.Err(); err != nil { // stopped: killed, timeout, deadline
		return err
	}
	if w.removed || c.closed {
		return ErrKilled
	}
	if size > c.peerMax {
		return ErrPayloadTooLarge
	}
	return nil
}

// waitRoom waits, with c.mu held on entry and on return, until a frame of
// size bytes fits under the outbound limit. A frame always fits into an
// empty buffer, so one oversize frame cannot deadlock.
func (c *conn) waitRoom(w *Worker, size int, t frame.Type) error {
	waited := false
	var since int64
	for {
		if err := c.check(w, size); err != nil {
			return err
		}
		pending := c.pendingLocked()
		if len(w.aheadFrames) > 0 || (t == frame.TypeStream && w.unacked >= c.n.cfg.Window) {
			pending += c.aheadBytes // it will wait in the node: held-back bytes are bounded too
		}
		if pending == 0 || pending+size+frame.HeaderSize <= c.n.cfg.OutboundLimit {
			return nil
		}
		if !waited {
			waited = true
			c.n.stats.outputWaits.Add(1)
		}
		if c.room == nil {
			// Nothing else will flush: gnet drains its buffer silently, so
			// poll it until there is room.
			c.room = make(chan struct{})
			c.schedulePollLocked()
		}
		room := c.room
		// A coordinator that stops reading is as stuck as one that stops
		// acking: the ack timeout bounds this wait too (the janitor),
		// counted from the first time this frame found no room, however
		// often the worker is woken to lose the race for it.
		if since == 0 {
			since = c.n.coarseNow()
		}
		w.wait, w.waitSince = waitAck, since
		c.mu.Unlock()
		select {
		case <-room:
		case <-w.signal: // a stop, or another wake-up: check again
		}
		c.mu.Lock()
		w.wait = waitNone
	}
}

// send appends one frame for w, waiting for room if needed.
func (c *conn) send(w *Worker, t frame.Type, payload []byte) error {
	c.mu.Lock()
	if err := c.waitRoom(w, len(payload), t); err != nil {
		c.mu.Unlock()
		return err
	}
	switch {
	case t == frame.TypePing: // unordered
		c.appendLocked(t, w.ref, payload)
	case len(w.aheadFrames) > 0: // after the rows queued before it
		c.queueAheadLocked(w, t, payload)
		w.final = t
	default:
		c.appendLocked(t, w.ref, payload)
		w.final = t
	}
	c.kickLocked()
	c.mu.Unlock()
	if t == frame.TypeReply {
		w.hs.replied.Add(1)
	}
	return nil
}

// appendLocked encodes a frame into c.out. It does not wake the loop: the
// loop flushes at the end of every OnTraffic anyway, and other goroutines
// call kickLocked after appending. Caller holds c.mu.
func (c *conn) appendLocked(t frame.Type, ref uint64, payload []byte) {
	c.out = c.enc.Append(c.out, t, ref, payload)
	c.framesQueued++
}

// kickLocked wakes the event loop to flush unless a flush is already
// pending. Caller holds c.mu.
func (c *conn) kickLocked() {
	if c.flushPending || c.closed {
		return
	}
	c.flushPending = true
	_ = c.gc.Wake(nil) // fails only when the connection is closing
}

// flush writes everything queued. Event loop only.
func (c *conn) flush() {
	c.mu.Lock()
	buf := c.out
	c.out = c.spare[:0]
	c.flushPending = false
	frames := c.framesQueued
	c.framesQueued = 0
	c.mu.Unlock()
	if len(buf) > 0 {
		c.n.stats.framesOut.Add(uint64(frames)) // once per write: workers on other cores would fight over a shared counter per frame
		wire := buf
		if c.sess != nil { // one record (per MiB) for the whole batch
			c.wire = c.sess.Send.Seal(c.wire[:0], buf)
			wire = c.wire
			if cap(c.wire) > keepBuffer {
				c.wire = nil
			}
		}
		c.n.stats.bytesOut.Add(uint64(len(wire)))
		c.n.stats.writes.Add(1)
		_, _ = c.gc.Write(wire) // gnet copies what the socket does not take; on failure it closes and runs OnClose
	}
	c.spare = buf[:0]
	if cap(c.spare) > keepBuffer { // gnet copied what the socket did not take
		c.spare = nil
	}
	buffered := c.gc.OutboundBuffered()
	c.mu.Lock()
	c.gnetBuffered = buffered
	closed := c.closed
	if !c.closed {
		c.resumeParkedLocked()
		if len(c.parked) > 0 {
			c.schedulePollLocked()
		}
		if len(c.out) > 0 {
			c.kickLocked() // rows the resumed jobs just queued
		}
	}
	if c.room != nil && !c.closed {
		if c.pendingLocked() < c.n.cfg.OutboundLimit {
			close(c.room)
			c.room = nil
		} else {
			c.schedulePollLocked()
		}
	}
	c.mu.Unlock()
	if !closed {
		c.holdOutput(buffered)
		c.confirmShed(buffered)
	}
}

// schedulePollLocked arranges for pollRoom to run soon. Caller holds c.mu.
func (c *conn) schedulePollLocked() { c.schedulePollInLocked(pollInterval) }

// schedulePollInLocked arranges for pollRoom to run after d. Caller holds
// c.mu.
func (c *conn) schedulePollInLocked(d time.Duration) {
	if c.poll == nil {
		c.poll = time.AfterFunc(d, c.pollRoom)
	} else {
		c.poll.Reset(d)
	}
}

// pollRoom runs on a timer goroutine: it wakes the loop so that flush
// re-reads gnet's outbound buffer for blocked writers.
func (c *conn) pollRoom() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		_ = c.gc.Wake(nil)
	}
}
