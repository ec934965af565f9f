package node

import (
	"context"
	"time"

	"github.com/rexi-go/rexi/frame"
	"go.opentelemetry.io/otel/trace"
)

// Handler runs one job. ctx is cancelled whenever the worker must stop
// (context.Cause says why: ErrKilled, ErrDeadline, ErrInitTimeout,
// ErrAckTimeout); a handler must return promptly then. A non-nil error is
// sent to the coordinator as EXIT ERROR; a panic as EXIT PANIC with the
// stack. Returning nil ends the job silently.
type Handler func(ctx context.Context, w *Worker) error

type jobState uint8

const (
	stateRunning   jobState = iota // handler running, not streaming
	stateInitWait                  // STREAM_INIT sent, waiting for START/CANCEL
	stateStreaming                 // START received
)

var stateNames = [...]string{"running", "init_wait", "streaming"}

func (s jobState) String() string { return stateNames[s] }

// Worker is one running job as its handler sees it: its input and the
// calls that send output to the coordinator. Its methods may be called
// only from the handler's goroutine.
type Worker struct {
	c       *conn
	ref     uint64
	handler string
	nonce   []byte
	args    []byte
	in      []byte        // holds nonce and args; kept across jobs
	jc      *jobContext   // goroutine jobs: the handler's ctx
	signal  chan struct{} // goroutine jobs: START, ACK, room or a stop arrived; capacity 1.
	// One pending signal suffices: the worker re-checks its state after every
	// wake-up, so a spurious one (a recycled worker woken for its previous
	// job) is harmless.
	started  time.Time
	span     trace.Span       // the job's span; nil without tracing
	hs       *handlerCounters // its handler's counters
	rangeLo  uint32
	rangeHi  uint32
	ranged   bool // the DOIT carried a range
	argBytes int  // nonce and args counted against the limits until the job leaves the table

	// Guarded by c.mu.
	state     jobState
	unacked   int
	rows      uint64
	removed   bool       // out of the job table: killed or finished
	final     frame.Type // REPLY or LAST once sent (for the span); written and read by the handler's goroutine only
	wait      waitKind   // what Stream is blocked on; the janitor times it out
	waitSince int64      // unix nanos when that wait began

	// Streaming handlers (Handle with Streaming) until START.
	fn      Handler // the handler to run once START arrives
	waiting bool    // STREAM_INIT sent, handler not started: no goroutine yet

	// Frames queued past the window (ahead.go); under c.mu.
	ahead       []byte
	aheadFrames []aheadFrame
	aheadRows   int
	done        bool // the handler returned; the loop sends the rest and ends the job

	// Loop jobs (HandleStream), and waiting jobs; event loop, under c.mu.
	src      RowSource
	deadline int64 // unix nanos; 0 = none
	parked   bool  // waiting in c.parked for outbound room
}

// detached reports a job that no goroutine runs: a loop job, a Streaming
// job before START, or one whose handler returned with rows still queued.
// The loop and the janitor end it themselves. Caller holds c.mu.
func (w *Worker) detached() bool { return w.src != nil || w.waiting || w.done }

// waitKind is what a streaming worker waits for.
type waitKind uint8

const (
	waitNone waitKind = iota
	waitStart
	waitAck
)

// Ref is the job's reference, unique on its connection.
func (w *Worker) Ref() uint64 { return w.ref }

// Handler is the name the job was started under.
func (w *Worker) Handler() string { return w.handler }

// Args are the DOIT's arguments. The slice is the worker's own copy.
func (w *Worker) Args() []byte { return w.args }

// Nonce is the DOIT's nonce (the coordinator's request id).
func (w *Worker) Nonce() []byte { return w.nonce }

// Range is the shard range the job serves, [lo, hi] on the 32-bit ring,
// as the coordinator's Job named it. ok is false when the DOIT carried no
// range (a coordinator that did not negotiate it; this package's always
// does).
func (w *Worker) Range() (lo, hi uint32, ok bool) { return w.rangeLo, w.rangeHi, w.ranged }

// Reply sends a REPLY. It may wait for room under the connection's
// outbound limit; it fails once the worker must stop. Like Last and
// Stream, it copies payload before it returns, so a handler may reuse one
// buffer (or one on its stack) for everything it sends.
func (w *Worker) Reply(payload []byte) error {
	if w.fn != nil {
		return ErrStreaming
	}
	return w.c.send(w, frame.TypeReply, payload)
}

// Last sends the stream's final message (LAST). It needs no ACK.
func (w *Worker) Last(payload []byte) error {
	return w.c.send(w, frame.TypeLast, payload)
}

// Ping tells the coordinator the worker is alive, resetting its
// per-message timer during long work.
func (w *Worker) Ping() error {
	return w.c.send(w, frame.TypePing, nil)
}

// Stream sends one row. The first call sends STREAM_INIT and waits for
// START (returns ErrKilled on CANCEL) or the init timeout. Afterwards at
// most the node's window of rows are un-acked on the wire; up to another
// window of rows waits in the node, sent as ACKs arrive, and past that
// Stream blocks for an ACK, up to the ack timeout. The row is copied
// before Stream returns (a row waiting in the node is a copy too), so the
// caller may build the next one in the same buffer.
func (w *Worker) Stream(row []byte) error {
	c := w.c
	c.mu.Lock()
	if w.state == stateRunning {
		if err := c.check(w, len(row)); err != nil {
			c.mu.Unlock()
			return err
		}
		if err := c.waitRoom(w, 0, frame.TypeStreamInit); err != nil { // STREAM_INIT passes the gate too
			c.mu.Unlock()
			return err
		}
		w.state = stateInitWait
		c.appendLocked(frame.TypeStreamInit, w.ref, nil)
		c.kickLocked()
		for w.state == stateInitWait {
			if err := w.awaitLocked(waitStart); err != nil {
				c.mu.Unlock()
				return err
			}
		}
	}
	window := c.n.cfg.Window
	for w.unacked >= window && w.aheadRows >= window && !w.removed {
		if err := w.awaitLocked(waitAck); err != nil {
			c.mu.Unlock()
			return err
		}
	}
	if err := c.waitRoom(w, len(row), frame.TypeStream); err != nil {
		c.mu.Unlock()
		return err
	}
	w.rows++
	rows := w.rows
	if w.unacked < window && len(w.aheadFrames) == 0 {
		w.unacked++
		c.appendLocked(frame.TypeStream, w.ref, row)
		c.kickLocked()
	} else {
		c.queueAheadLocked(w, frame.TypeStream, row)
	}
	c.mu.Unlock()
	if rows%rowsPerCount == 0 {
		w.hs.rows.Add(rowsPerCount)
	}
	return nil
}

// rowsPerCount: a job adds its rows to its handler's counter this many
// at a time (and the rest when it ends), not one by one: the counter is
// shared by workers running on every core, and an atomic add per row was
// a visible part of a loop stream's cost.
const rowsPerCount = 64

// awaitLocked releases c.mu until the event loop signals the worker (a
// stop signals it too), and takes it again. No timer per wait: the node's
// janitor stops a worker whose wait outlives the init or ack timeout.
func (w *Worker) awaitLocked(kind waitKind) error {
	w.wait, w.waitSince = kind, w.c.n.coarseNow()
	w.c.mu.Unlock()
	<-w.signal
	w.c.mu.Lock()
	w.wait = waitNone
	return w.jc.Err()
}

// stop stops the worker's job with cause; loop jobs have no goroutine to
// stop.
func (w *Worker) stop(cause error) {
	if w.jc != nil {
		w.jc.stop(cause)
	}
}
