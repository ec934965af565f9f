package coord

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"time"

	"github.com/rexi-go/rexi/frame"
	"github.com/rexi-go/rexi/secure"
)

const readBufferSize = 256 << 10

// minProgress is how many bytes of a frame still arriving count as a sign
// of life, like a whole frame (see session.read).
const minProgress = 64 << 10

// read is a session's reader goroutine. It decodes frames in place and
// hands each to the coordinator owning its ref, never blocking on one: the
// only brake on a worker is its window. It returns when the connection
// fails, the node sends ERROR or breaks the protocol, or nothing (not even
// a heartbeat) arrives within HeartbeatTimeout.
func (s *session) read() error {
	cl, conn := s.p.cl, s.conn
	fr := frameReader{s: s, dec: s.dec}
	if s.sess != nil { // the wire carries RECORDs; their plaintext, the frames
		fr.wire = frame.Decoder{MaxPayload: secure.MaxRecordPayload}
	} else {
		fr.wire = s.dec
	}
	buf := make([]byte, readBufferSize)
	var rb readBatch
	start, end := 0, 0
	// The read deadline is pushed back on progress: a frame, or
	// minProgress bytes of one still arriving (a large frame on a slow link
	// carries no HEARTBEAT in its middle), but not on any byte, or a node
	// trickling one byte a second would never be found down.
	armed := time.Now()
	_ = conn.SetReadDeadline(armed.Add(cl.cfg.HeartbeatTimeout))
	space := func() []byte { return buf[end:] }
	got := func(n int) error {
		end += n
		if s.sess == nil { // on an encrypted connection, what the records carried counts (fr.record)
			fr.progress += n
		}
		var f frame.Frame
		for {
			used, err := fr.wire.DecodeTo(&f, buf[start:end])
			if errors.Is(err, frame.ErrIncomplete) {
				break
			}
			if err != nil {
				s.refuse(&rb, err)
				return fmt.Errorf("node sent a bad frame: %w", err)
			}
			if s.sess != nil {
				err = fr.record(buf[start:start+frame.HeaderSize], f, &rb)
			} else {
				err = fr.frame(f, &rb)
			}
			start += used
			if err != nil {
				rb.release()
				return err
			}
		}
		rb.release()
		s.endBatch(&rb)
		fr.trim()
		// After the read's frames, so that they count: re-arming costs a
		// timer update, so it is done every 1/8 of the timeout, and silence
		// is detected after 7/8 to 8/8 of it.
		if fr.framed || fr.progress >= minProgress {
			if now := time.Now(); now.Sub(armed) > cl.cfg.HeartbeatTimeout/8 {
				_ = conn.SetReadDeadline(now.Add(cl.cfg.HeartbeatTimeout))
				armed, fr.framed, fr.progress = now, false, 0
			}
		}
		// Keep the partial frame at the front; grow for a frame larger
		// than the buffer, and give the growth back once it is consumed.
		if start == end {
			start, end = 0, 0
			if len(buf) > readBufferSize {
				buf = make([]byte, readBufferSize)
			}
			return nil
		}
		if start > 0 {
			end = copy(buf, buf[start:end])
			start = 0
		}
		if end == len(buf) {
			buf = slices.Grow(buf, len(buf))[:2*len(buf)]
		}
		return nil
	}
	err := newSockReader(s).run(space, got)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("no frame for %v (missed heartbeats): %w", cl.cfg.HeartbeatTimeout, err)
	}
	return err
}

// frameReader turns what the wire carries into dispatched frames: frames
// themselves on a plaintext connection, RECORDs to open on an encrypted
// one (a frame may span records).
type frameReader struct {
	s         *session
	wire      frame.Decoder // what is on the socket
	dec       frame.Decoder // frames (inside records, when encrypted)
	plain     []byte        // opened and not yet decoded
	scratch   []byte        // decompression
	expansion frame.ExpansionBudget
	framed    bool // a frame came since the read deadline was pushed back (a RECORD alone is not one)
	progress  int  // frame bytes read since then: of opened plaintext when encrypted (a byte per record is 33 on the wire)
}

// record opens one RECORD and dispatches the frames it completes.
func (fr *frameReader) record(header []byte, f frame.Frame, rb *readBatch) error {
	var err error
	had := len(fr.plain)
	if fr.plain, err = fr.s.sess.Recv.Open(fr.plain, header, f); err != nil {
		fr.s.refuse(rb, &frame.ProtocolError{Code: frame.CodeBadRecord, Detail: err.Error()})
		return fmt.Errorf("node sent a record that does not open: %w", err)
	}
	fr.progress += len(fr.plain) - had
	off := 0
	var g frame.Frame
	for off < len(fr.plain) {
		n, err := fr.dec.DecodeTo(&g, fr.plain[off:])
		if errors.Is(err, frame.ErrIncomplete) {
			break
		}
		if err != nil {
			fr.s.refuse(rb, err)
			return fmt.Errorf("node sent a bad frame: %w", err)
		}
		off += n
		if err := fr.frame(g, rb); err != nil {
			return err
		}
	}
	fr.plain = fr.plain[:copy(fr.plain, fr.plain[off:])]
	return nil
}

// frame decompresses and dispatches one frame.
func (fr *frameReader) frame(f frame.Frame, rb *readBatch) error {
	var p []byte
	var err error
	fr.framed = true
	p, fr.scratch, err = fr.expansion.Payload(f, fr.scratch, fr.s.p.cl.cfg.MaxPayload)
	if err != nil {
		fr.s.refuse(rb, err)
		return fmt.Errorf("node sent a bad payload: %w", err)
	}
	return fr.s.dispatch(f, p, rb)
}

// trim gives back buffers a large frame grew.
func (fr *frameReader) trim() {
	if cap(fr.scratch) > readBufferSize {
		fr.scratch = nil
	}
	if len(fr.plain) == 0 && cap(fr.plain) > readBufferSize {
		fr.plain = nil
	}
}

// readBatch is what one read's frames leave to do once they are all
// dispatched: coordinators to wake, and rows to acknowledge.
type readBatch struct {
	touched []*state   // coordinators to notify, each once
	acks    []refCount // rows acknowledged on receipt, coalesced per ref
	seq     uint32     // counts the reads (endBatch): a job's readRows are of read seq
	lastID  uint64     // the coordinator of the previous frame, looked up once
	last    *state
	locked  *state // whose inbox lock this read holds, over a run of frames for it
	// runCost is what the run of frames under the locked inbox counts
	// against the client's MaxHeldBytes: added to the total as the lock is
	// let go (before the coordinator's loop can take those frames and give
	// them back), once per run rather than once per frame on a counter
	// every reader shares. heldAdded says a run added some this read.
	runCost   int64
	heldAdded bool
}

// release lets go of the inbox lock a run of frames held. It is called
// before anything that takes another lock (a session's, the client's
// registry), which rank before an inbox's, and before the coordinators
// are woken.
func (rb *readBatch) release() {
	if rb.locked != nil {
		if rb.runCost != 0 {
			rb.locked.inbox.count(rb.runCost)
			rb.runCost, rb.heldAdded = 0, true
		}
		rb.locked.inbox.mu.Unlock()
		rb.locked = nil
	}
}

// refuse sends ERROR{err} to the node, whose read is ending. It lets go
// of the inbox lock first: sending takes the session's lock, which ranks
// before an inbox's.
func (s *session) refuse(rb *readBatch, err error) {
	rb.release()
	s.sendError(err)
}

type refCount struct {
	ref uint64
	n   uint32
}

// endBatch sends the ACKs for rows taken into coordinators' buffers, one
// write for the whole read, and then wakes the coordinators that got
// entries. The ACKs go first: they are what the workers wait for, and
// the write would otherwise delay a coordinator just woken on this thread.
func (s *session) endBatch(rb *readBatch) {
	if len(rb.acks) > 0 {
		s.queueAcks(rb.acks)
		rb.acks = rb.acks[:0]
		s.push()
	}
	for i, co := range rb.touched {
		co.inbox.notify()
		rb.touched[i] = nil
	}
	rb.touched = rb.touched[:0]
	rb.last, rb.lastID = nil, 0
	rb.seq++
	if rb.heldAdded {
		rb.heldAdded = false
		if s.p.cl.stats.held.Load() > int64(s.p.cl.cfg.MaxHeldBytes) {
			s.p.cl.shedHeld()
		}
	}
}

// ackLookback is how far back a job's final frame looks for its rows'
// pending ACK: a worker's last rows and its LAST usually arrive together.
const ackLookback = 8

// dropAck forgets the pending receipt-ACK of ref, whose job just ended:
// the worker no longer waits for it, and sending it would cost a write
// and wake the node for nothing.
func (rb *readBatch) dropAck(ref uint64) {
	for i := len(rb.acks) - 1; i >= max(0, len(rb.acks)-ackLookback); i-- {
		if rb.acks[i].ref == ref {
			rb.acks = append(rb.acks[:i], rb.acks[i+1:]...)
			return
		}
	}
}

// maxNodeReason bounds the part of a node's ERROR message kept: it goes
// into every failed job's error and into the log, once per connection
// the node ends.
const maxNodeReason = 1024

// nodeReason is msg, cut to maxNodeReason bytes on a UTF-8 boundary
// (FitMessage keeps 2 bytes for an ERROR's code, hence the +2; the +1 lets
// it see where the rune after the cut starts).
func nodeReason(msg []byte) string {
	if len(msg) <= maxNodeReason {
		return string(msg)
	}
	return frame.FitMessage(string(msg[:maxNodeReason+1]), maxNodeReason+2) + " …"
}

// checkPayload refuses what the protocol calls MALFORMED in the frames a
// node sends with a fixed layout: a payload on a type that carries none
// (held as it is, a 16 MiB STREAM_INIT would cost 16 MiB per job), or an
// EXIT that does not parse.
func checkPayload(t frame.Type, p []byte) error {
	switch t {
	case frame.TypeHeartbeat, frame.TypeStreamInit, frame.TypePing:
		return frame.CheckEmpty(p)
	case frame.TypeExit:
		_, err := frame.ParseExit(p)
		return err
	}
	return nil
}

// dispatch routes one frame. p is valid only during this call.
func (s *session) dispatch(f frame.Frame, p []byte, rb *readBatch) error {
	if err := checkPayload(f.Type, p); err != nil {
		s.refuse(rb, err)
		return fmt.Errorf("node sent a bad %s: %w", f.Type, err)
	}
	var k Kind
	switch f.Type {
	case frame.TypeHeartbeat:
		return nil // any frame resets the read deadline
	case frame.TypeError:
		code, msg, _ := frame.ParseError(p)
		return &NodeError{Node: s.p.addr, Code: code, Reason: nodeReason(msg)}
	case frame.TypeReply:
		k = KindReply
	case frame.TypeStreamInit:
		k = KindStreamInit
	case frame.TypeStream:
		k = KindRow
	case frame.TypeLast:
		k = KindLast
	case frame.TypePing:
		k = kindPing
	case frame.TypeExit:
		k = KindExit
	default:
		err := fmt.Errorf("node sent %s, which only coordinators send", f.Type)
		s.refuse(rb, &frame.ProtocolError{Code: frame.CodeUnexpected, Detail: err.Error()})
		return err
	}
	id := f.Ref >> refSlotBits
	co := rb.last
	if co == nil || id != rb.lastID {
		rb.release()
		co = s.p.cl.lookup(id)
		rb.last, rb.lastID = co, id
	}
	if co == nil {
		s.p.cl.stats.dropped.Add(1) // its coordinator closed: nobody wants it
		return nil
	}
	if rb.locked != co { // one lock for the run of frames for co, not one per frame
		rb.release()
		co.inbox.mu.Lock()
		rb.locked = co
	}
	slot := int32(f.Ref & slotMask)
	j := co.inbox.job(slot, s)
	if j == nil || !co.inbox.admit(j, k) { // not a job of this node's, or a frame the job may not send again: not held
		s.p.cl.stats.dropped.Add(1)
		return nil
	}
	if k == KindLast || k == KindExit {
		rb.dropAck(f.Ref) // the job is over: its rows' receipt-ACK would wake the node for nothing
	}
	if k == KindRow {
		// The rows received and not yet acknowledged are those waiting to
		// be consumed (unacked) and those this read acknowledges on
		// receipt, whose ACK is queued only after the read: a node that
		// keeps to the window never has more than window of them, whatever
		// ACKs are in flight. A node that ignores the window must not make
		// us hold what it sends.
		if j.readSeq != rb.seq {
			j.readSeq, j.readRows = rb.seq, 0
		}
		if int(j.unacked)+int(j.readRows) >= s.window {
			err := fmt.Errorf("node sent a row for ref %#x past its window of %d un-acknowledged rows", f.Ref, s.window)
			s.refuse(rb, &frame.ProtocolError{Code: frame.CodeUnexpected, Detail: err.Error()})
			return err
		}
	}
	queued, ackNow := co.inbox.pushLocked(entry{kind: k, slot: slot}, p)
	if !queued {
		s.p.cl.stats.dropped.Add(1)
		return nil
	}
	rb.runCost += frameCost(p)
	if k == KindRow && !ackNow {
		j.unacked++ // acknowledged when consumed (flushAcks)
	}
	if ackNow {
		j.readRows++
		if n := len(rb.acks); n > 0 && rb.acks[n-1].ref == f.Ref {
			rb.acks[n-1].n++
		} else {
			rb.acks = append(rb.acks, refCount{f.Ref, 1})
		}
	}
	if n := len(rb.touched); n == 0 || rb.touched[n-1] != co {
		if !slices.Contains(rb.touched, co) {
			rb.touched = append(rb.touched, co)
		}
	}
	return nil
}
