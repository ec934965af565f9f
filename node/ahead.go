package node

import "github.com/rexi-go/rexi/frame"

// Rows ahead of the window. A goroutine worker whose window is full does
// not wait for the ACK at once: up to another window of rows, and the
// LAST or REPLY after them, wait in the worker's own queue (w.ahead), and
// the event loop sends them as ACKs open the window, in the same turn
// that reads the ACK. A handler whose stream fits in two windows thus
// never waits for an ACK: its goroutine ends, and the loop finishes the
// job like a loop stream. On the wire nothing changes. The queued bytes
// wait for their own job's ACK, not for the socket, so they do not take
// other jobs' room under the outbound limit, nor count towards the hard
// limit; a frame that would itself be queued counts them, which bounds
// them by the outbound limit too. A job that fails (EXIT) or is killed
// drops what it queued.

// aheadFrame is one frame in w.ahead.
type aheadFrame struct {
	end int  // offset in w.ahead just past it
	row bool // a STREAM row: the window must let it out
}

// queueAheadLocked appends a frame to w's queue. Caller holds c.mu.
func (c *conn) queueAheadLocked(w *Worker, t frame.Type, payload []byte) {
	start := len(w.ahead)
	w.ahead = c.enc.Append(w.ahead, t, w.ref, payload)
	c.aheadBytes += len(w.ahead) - start
	w.aheadFrames = append(w.aheadFrames, aheadFrame{end: len(w.ahead), row: t == frame.TypeStream})
	if t == frame.TypeStream {
		w.aheadRows++
	}
}

// releaseAheadLocked moves the frames the window lets out from w's queue
// to the connection's output, and finishes the job when its handler has
// returned and nothing is left. Caller holds c.mu.
func (c *conn) releaseAheadLocked(w *Worker) {
	moved, from := 0, 0
	for _, f := range w.aheadFrames {
		if f.row {
			if w.unacked >= c.n.cfg.Window {
				break
			}
			w.unacked++
			w.aheadRows--
		}
		from = f.end
		moved++
	}
	if moved == 0 {
		return
	}
	c.out = append(c.out, w.ahead[:from]...)
	c.framesQueued += moved
	c.aheadBytes -= from
	rest := copy(w.ahead, w.ahead[from:])
	w.ahead = w.ahead[:rest]
	k := copy(w.aheadFrames, w.aheadFrames[moved:])
	w.aheadFrames = w.aheadFrames[:k]
	for i := range w.aheadFrames {
		w.aheadFrames[i].end -= from
	}
	if len(w.aheadFrames) > 0 {
		if w.done { // a running goroutine dates its own waits (awaitLocked, waitRoom)
			c.awaitAckLocked(w)
		}
		return
	}
	if w.done {
		c.removeLoopLocked(w)
		w.endSpan(finalOutcome(w.final), nil, nil)
		c.n.putWorker(w)
	}
}

// dropAheadLocked discards w's queue: the job was killed or failed.
// Caller holds c.mu.
func (c *conn) dropAheadLocked(w *Worker) {
	c.aheadBytes -= len(w.ahead)
	w.ahead = w.ahead[:0]
	w.aheadFrames = w.aheadFrames[:0]
	w.aheadRows = 0
}

// finishAheadLocked is run's end for a job that returned with frames
// still queued: the loop sends them and ends the job. It reports false
// when nothing is queued. Caller holds c.mu.
func (c *conn) finishAheadLocked(w *Worker) bool {
	if len(w.aheadFrames) == 0 {
		return false
	}
	w.done = true
	c.awaitAckLocked(w)
	return true
}

// awaitAckLocked arms the ack timeout of a done job, which waits in the
// node for its window to open: the janitor ends it if no ACK comes.
// Caller holds c.mu.
func (c *conn) awaitAckLocked(w *Worker) {
	w.wait, w.waitSince = waitAck, c.n.coarseNow()
}
