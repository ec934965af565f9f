package coord

import (
	"context"
	"fmt"
	"runtime"
	"time"

	"github.com/rexi-go/rexi/frame"
)

// Message is one event from a worker, delivered to a receive callback.
type Message struct {
	Worker WorkerInfo
	Kind   Kind
	// Payload of a REPLY, row or LAST. Valid only until the callback
	// returns: copy what you keep.
	Payload []byte
	// Err is set for KindExit (*WorkerError), KindNodeDown
	// (*NodeDownError) and KindOverload (*OverloadError).
	Err error
}

// RecvOptions bound a receive loop. Zero means no bound (the
// coordinator's context still applies).
type RecvOptions struct {
	Timeout        time.Duration // for the whole loop
	MessageTimeout time.Duration // between two messages; PING counts as one
}

// Recv delivers every message for this coordinator's jobs to fn, like
// rexi_utils:recv: until fn returns done or an error, every job has
// finished (returns nil), a timeout passes (*TimeoutError naming the
// workers that did not answer), or the coordinator's context ends. Rows
// are acknowledged as they arrive while the coordinator's buffer is under
// its bound (256 KiB), and after fn returns otherwise, several in one ACK
// per worker. PING
// only resets the per-message timer; messages for refs this coordinator
// does not own never reach it.
func (co *Coordinator) Recv(opts RecvOptions, fn func(Message) (done bool, err error)) error {
	defer runtime.KeepAlive(co) // no cleanup (reaping) while a receive loop runs
	s := co.s
	return s.loop(opts, s.pendingAll, func(m *Message) (bool, error) { return fn(*m) },
		func() bool { return s.open == 0 })
}

func (s *state) pendingAll() []WorkerInfo {
	var out []WorkerInfo
	for i := range s.slots {
		if !s.slots[i].finished() {
			out = append(out, s.info(int32(i)))
		}
	}
	return out
}

// loop is the receive engine shared by Recv and Stream: it drains the
// inbox in batches, keeps the slots' states, turns entries into Messages
// for handle, acknowledges rows after each batch and enforces timeouts. It
// returns nil once handle says done or, after a batch, exhausted says
// nothing more can come.
func (s *state) loop(opts RecvOptions, pending func() []WorkerInfo, handle func(*Message) (bool, error), exhausted func() bool) error {
	if s.closed {
		return ErrClosed
	}
	// What an earlier loop stopped before: this loop's while it runs,
	// parked in the inbox again (where shedding can drop it) when it ends.
	left := s.inbox.unpark()
	defer func() { s.inbox.park(left) }()
	if err := s.ctx.Err(); err != nil {
		return fmt.Errorf("coord: receive: %w", context.Cause(s.ctx))
	}
	if len(s.slots) == 0 {
		return ErrNoJobs
	}
	var global, idle <-chan time.Time
	if opts.Timeout > 0 {
		t := time.NewTimer(opts.Timeout)
		defer t.Stop()
		global = t.C
	}
	var idleTimer *time.Timer
	if opts.MessageTimeout > 0 {
		idleTimer = time.NewTimer(opts.MessageTimeout)
		defer idleTimer.Stop()
		idle = idleTimer.C
	}
	// The Message handed to handle, one per loop: handle is a func value,
	// so a Message it is given a pointer to lives on the heap.
	m := new(Message)
	for {
		// b is this loop's alone while it is dispatched: neither the inbox
		// nor s refers to it until it is handed back below.
		var b batch
		if left.entries != nil { // what an earlier loop stopped before
			b, left = left, batch{}
		} else {
			b, s.spare = s.inbox.take(s.spare), batch{}
		}
		if len(b.entries) > 0 && idleTimer != nil {
			idleTimer.Reset(opts.MessageTimeout)
		}
		n, done, err := s.dispatch(b, handle, m)
		s.flushFinished()
		if s.closed {
			// Close ran inside the callback and released the coordinator:
			// b stays this loop's and goes to the garbage collector.
			return ErrClosed
		}
		if s.shed.Load() == shedDone { // ended for what it held: drop the rest now
			s.inbox.giveBack(b.cost)
			s.spare = b.recycled()
			return fmt.Errorf("coord: receive: %w", context.Cause(s.ctx))
		}
		if n < len(b.entries) {
			// Stopped mid-batch: keep the rest for the next receive loop.
			left = batch{entries: b.entries[n:], data: b.data, failures: b.failures, cost: b.cost}
		} else {
			s.inbox.giveBack(b.cost)
			s.spare = b.recycled()
		}
		if done || err != nil || exhausted() {
			s.flushAcks()
			return err
		}
		// More already waiting: take it before acknowledging, so that one
		// ACK per worker and one write per node cover it all; workers wait
		// for at most the time it takes to drain the inbox.
		if len(s.acks) < maxDeferredAcks && s.ctx.Err() == nil {
			select {
			case <-s.inbox.signal:
				continue
			default:
			}
		}
		s.flushAcks()
		select {
		case <-s.inbox.signal:
		case <-s.ctx.Done():
			return fmt.Errorf("coord: receive: %w", context.Cause(s.ctx))
		case <-global:
			return &TimeoutError{What: fmt.Sprintf("global timeout %v", opts.Timeout), Pending: pending()}
		case <-idle:
			return &TimeoutError{What: fmt.Sprintf("no message for %v", opts.MessageTimeout), Pending: pending()}
		}
	}
}

// dispatch applies a batch of entries; it returns how many it consumed
// (all, unless handle stopped early).
func (s *state) dispatch(b batch, handle func(*Message) (bool, error), m *Message) (int, bool, error) {
	entries, data, failures := b.entries, b.data, b.failures
	for i := range entries {
		if s.shed.Load() == shedDone { // the loop drops the rest
			return i, false, nil
		}
		e := &entries[i]
		if e.kind == kindConnDown {
			if done, err := s.connDown(&failures[e.off], handle, m); done || err != nil || s.closed {
				// Not consumed: handle may have stopped before the
				// connection's last job, and the next loop goes on from it
				// (connDown skips the jobs already failed).
				return i, done, err
			}
			continue
		}
		if int(e.slot) >= len(s.slots) {
			continue // not a ref we issued
		}
		sl := &s.slots[e.slot]
		if sl.finished() {
			continue // late output of a job already over
		}
		*m = Message{Kind: e.kind}
		switch e.kind {
		case kindPing:
			continue
		case KindRow:
			m.Payload = data[e.off : e.off+e.n : e.off+e.n]
			sl.rows++
			if e.acked {
				break // the reader acknowledged it on receipt
			}
			if sl.unacked == 0 {
				s.acks = append(s.acks, e.slot)
			}
			sl.unacked++
		case KindReply, KindLast:
			m.Payload = data[e.off : e.off+e.n : e.off+e.n]
			s.finish(e.slot, slotDone)
		case KindExit:
			s.finish(e.slot, slotFailed)
			m.Err = s.exitError(e.slot, data[e.off:e.off+e.n])
		case KindNodeDown, KindOverload:
			s.finish(e.slot, slotFailed)
			m.Err = failures[e.off].err
		}
		s.describe(&m.Worker, e.slot)
		if done, err := handle(m); done || err != nil || s.closed {
			return i + 1, done, err
		}
	}
	return len(entries), false, nil
}

// connDown fails every unfinished job sent on the session that ended.
func (s *state) connDown(f *failure, handle func(*Message) (bool, error), m *Message) (bool, error) {
	for i := range s.slots {
		sl := &s.slots[i]
		if sl.sess != f.sess || sl.finished() {
			continue
		}
		s.finish(int32(i), slotFailed)
		*m = Message{Kind: KindNodeDown, Err: f.err}
		s.describe(&m.Worker, int32(i))
		if done, err := handle(m); done || err != nil || s.closed {
			return done, err
		}
	}
	return false, nil
}

func (s *state) finish(i int32, st slotState) {
	s.open--
	s.slots[i].st = st
	s.slots[i].unacked = 0 // nobody is waiting for that ACK any more
	s.finished = append(s.finished, int(i))
	if len(s.finished) == cap(s.finished) {
		s.flushFinished()
	}
}

// flushFinished tells the reaper's table which jobs finished, so that
// KILL_ALL leaves them out. Until it does, a firing table names them too,
// which the node answers with a tombstone each, and nothing else.
func (s *state) flushFinished() {
	if len(s.finished) > 0 {
		s.table.Finish(s.finished...)
		s.finished = s.finished[:0]
	}
}

func (s *state) exitError(i int32, p []byte) error {
	x, _ := frame.ParseExit(p) // the reader refused an EXIT that does not parse
	if x.Kind == frame.ExitOverloaded {
		s.cl.stats.nodeOverloads.Add(1)
	}
	return &WorkerError{Worker: s.info(i), Kind: x.Kind, Reason: string(x.Reason), Stack: string(x.Stack)}
}

// maxDeferredAcks bounds how many workers' ACKs wait while the inbox refills.
const maxDeferredAcks = 64

// flushAcks sends one ACK per worker for the rows consumed in this batch.
func (s *state) flushAcks() {
	if len(s.acks) > 0 {
		s.inbox.mu.Lock()
		for _, i := range s.acks {
			if sl := &s.slots[i]; sl.unacked > 0 && !sl.finished() && sl.sess != nil {
				s.inbox.jobs[i].unacked -= int32(sl.unacked) // the readers hold the node to its window
			}
		}
		s.inbox.mu.Unlock()
	}
	for _, i := range s.acks {
		sl := &s.slots[i]
		if sl.unacked > 0 && !sl.finished() && sl.sess != nil {
			sl.sess.queueControl(frame.TypeAck, s.ref(i), sl.unacked)
			s.queued(sl.sess)
		}
		sl.unacked = 0
	}
	s.acks = s.acks[:0]
	s.pushQueued() // ACKs and CANCELs of this batch: one write per node (STARTs went when the ring was complete)
}
