package node

import (
	"context"
	"time"

	"github.com/rexi-go/rexi/frame"
)

// Output path. Workers append encoded frames to c.out under c.mu; the
// first append after a flush wakes the event loop, which swaps c.out with
// its spare buffer and writes everything in one call. So a lone frame goes
// out at once, and frames produced while a flush is pending share a write.

// pollInterval is how often a connection with blocked writers re-reads
// gnet's outbound buffer, which drains without telling us.
const pollInterval = 2 * time.Millisecond

// check reports why w may not send a payload of size bytes. Caller holds c.mu.
func (c *conn) check(w *Worker, size int) error {
	if w.ctx.Err() != nil { // stopped (timeout, deadline) while still in the table
		return context.Cause(w.ctx)
	}
	if w.removed || c.closed {
		if err := context.Cause(w.ctx); err != nil {
			return err
		}
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
func (c *conn) waitRoom(w *Worker, size int) error {
	waited := false
	var since int64
	for {
		if err := c.check(w, size); err != nil {
			return err
		}
		pending := len(c.out) + c.gnetBuffered
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
			since = time.Now().UnixNano()
		}
		w.wait, w.waitSince = waitAck, since
		c.mu.Unlock()
		select {
		case <-room:
		case <-w.ctx.Done():
		}
		c.mu.Lock()
		w.wait = waitNone
	}
}

// send appends one frame for w, waiting for room if needed.
func (c *conn) send(w *Worker, t frame.Type, payload []byte) error {
	c.mu.Lock()
	if err := c.waitRoom(w, len(payload)); err != nil {
		c.mu.Unlock()
		return err
	}
	c.appendLocked(t, w.ref, payload)
	c.mu.Unlock()
	if t == frame.TypeReply {
		c.n.stats.replied.Add(1)
	}
	return nil
}

// appendLocked encodes a frame into c.out for a worker and makes sure a
// flush is coming. Caller holds c.mu. (The event loop appends to c.out
// directly: it flushes at the end of every OnTraffic anyway.)
func (c *conn) appendLocked(t frame.Type, ref uint64, payload []byte) {
	c.out = c.enc.Append(c.out, t, ref, payload)
	c.n.stats.framesOut.Add(1)
	c.kickLocked()
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

// flush writes everything workers appended. Event loop only.
func (c *conn) flush() {
	c.mu.Lock()
	buf := c.out
	c.out = c.spare[:0]
	c.flushPending = false
	c.mu.Unlock()
	if len(buf) > 0 {
		c.n.stats.bytesOut.Add(uint64(len(buf)))
		c.n.stats.writes.Add(1)
		_, _ = c.gc.Write(buf) // on failure gnet closes the connection and runs OnClose
	}
	c.spare = buf[:0]
	buffered := c.gc.OutboundBuffered()
	c.mu.Lock()
	c.gnetBuffered = buffered
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
		if len(c.out)+buffered < c.n.cfg.OutboundLimit {
			close(c.room)
			c.room = nil
		} else {
			c.schedulePollLocked()
		}
	}
	c.mu.Unlock()
}

// schedulePollLocked arranges for pollRoom to run soon. Caller holds c.mu.
func (c *conn) schedulePollLocked() {
	if c.poll == nil {
		c.poll = time.AfterFunc(pollInterval, c.pollRoom)
	} else {
		c.poll.Reset(pollInterval)
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
