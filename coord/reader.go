package coord

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"time"

	"github.com/rexi-go/rexi/frame"
)

const readBufferSize = 256 << 10

// read is a session's reader goroutine. It decodes frames in place and
// hands each to the coordinator owning its ref, never blocking on one: the
// only brake on a worker is its window. It returns when the connection
// fails, the node sends ERROR or breaks the protocol, or nothing (not even
// a heartbeat) arrives within HeartbeatTimeout.
func (s *session) read() error {
	cl, conn, dec := s.p.cl, s.conn, s.dec
	buf := make([]byte, readBufferSize)
	var scratch []byte // decompression
	var rb readBatch
	start, end := 0, 0
	var armed time.Time // when the read deadline was last pushed back
	for {
		// Re-arming the deadline costs a timer update: do it every 1/8 of
		// the timeout, so silence is detected after 7/8 to 8/8 of it.
		if now := time.Now(); now.Sub(armed) > cl.cfg.HeartbeatTimeout/8 {
			_ = conn.SetReadDeadline(now.Add(cl.cfg.HeartbeatTimeout))
			armed = now
		}
		n, err := conn.Read(buf[end:])
		end += n
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return fmt.Errorf("no frame for %v (missed heartbeats): %w", cl.cfg.HeartbeatTimeout, err)
			}
			return err
		}
		for {
			f, used, err := dec.Decode(buf[start:end])
			if errors.Is(err, frame.ErrIncomplete) {
				break
			}
			if err != nil {
				s.sendError(err)
				return fmt.Errorf("node sent a bad frame: %w", err)
			}
			start += used
			var p []byte
			p, scratch, err = frame.Payload(f, scratch, cl.cfg.MaxPayload)
			if err != nil {
				s.sendError(err)
				return fmt.Errorf("node sent a bad payload: %w", err)
			}
			if err := s.dispatch(f, p, &rb); err != nil {
				return err
			}
		}
		s.endBatch(&rb)
		// Keep the partial frame at the front; grow for a frame larger
		// than the buffer, and give the growth back once it is consumed.
		if cap(scratch) > readBufferSize {
			scratch = nil
		}
		if start == end {
			start, end = 0, 0
			if len(buf) > readBufferSize {
				buf = make([]byte, readBufferSize)
			}
			continue
		}
		if start > 0 {
			end = copy(buf, buf[start:end])
			start = 0
		}
		if end == len(buf) {
			buf = slices.Grow(buf, len(buf))[:2*len(buf)]
		}
	}
}

// readBatch is what one read's frames leave to do once they are all
// dispatched: coordinators to wake, and rows to acknowledge.
type readBatch struct {
	touched []*state   // coordinators to notify, each once
	acks    []refCount // rows acknowledged on receipt, coalesced per ref
	lastID  uint64     // the coordinator of the previous frame, looked up once
	last    *state
}

type refCount struct {
	ref uint64
	n   uint32
}

// endBatch wakes the coordinators that got entries and sends the ACKs
// for rows taken into their buffers: one write for the whole read.
func (s *session) endBatch(rb *readBatch) {
	for i, co := range rb.touched {
		co.inbox.notify()
		rb.touched[i] = nil
	}
	rb.touched = rb.touched[:0]
	rb.last, rb.lastID = nil, 0
	if len(rb.acks) == 0 {
		return
	}
	for _, a := range rb.acks {
		s.queueControl(frame.TypeAck, a.ref, a.n)
	}
	rb.acks = rb.acks[:0]
	s.push()
}

// dispatch routes one frame. p is valid only during this call.
func (s *session) dispatch(f frame.Frame, p []byte, rb *readBatch) error {
	var k Kind
	switch f.Type {
	case frame.TypeHeartbeat:
		return nil // any frame resets the read deadline
	case frame.TypeError:
		code, msg, _ := frame.ParseError(p)
		return fmt.Errorf("node sent ERROR %s: %s", code, msg)
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
		s.sendError(&frame.ProtocolError{Code: frame.CodeUnexpected, Detail: err.Error()})
		return err
	}
	id := f.Ref >> refSlotBits
	co := rb.last
	if co == nil || id != rb.lastID {
		co = s.p.cl.lookup(id)
		rb.last, rb.lastID = co, id
	}
	if co == nil {
		s.p.cl.stats.dropped.Add(1) // its coordinator closed: nobody wants it
		return nil
	}
	queued, ackNow := co.inbox.pushRow(entry{kind: k, slot: int32(f.Ref & slotMask)}, p)
	if !queued {
		s.p.cl.stats.dropped.Add(1)
		return nil
	}
	if ackNow {
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
