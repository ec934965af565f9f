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
	var scratch []byte   // decompression
	var touched []*state // coordinators to notify after this read
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
			if err := s.dispatch(f, p, &touched); err != nil {
				return err
			}
		}
		for i, co := range touched {
			co.inbox.notify()
			touched[i] = nil
		}
		touched = touched[:0]
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

// dispatch routes one frame. p is valid only during this call.
func (s *session) dispatch(f frame.Frame, p []byte, touched *[]*state) error {
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
	co := s.p.cl.lookup(f.Ref >> refSlotBits)
	if co == nil {
		s.p.cl.stats.dropped.Add(1) // its coordinator closed: nobody wants it
		return nil
	}
	co.inbox.push(entry{kind: k, slot: int32(f.Ref & slotMask)}, p)
	if n := len(*touched); n == 0 || (*touched)[n-1] != co {
		if !slices.Contains(*touched, co) {
			*touched = append(*touched, co)
		}
	}
	return nil
}
