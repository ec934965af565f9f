package coord

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rexi-go/rexi/frame"
	"github.com/rexi-go/rexi/secure"
)

// session is one authenticated TCP connection to a node and everything
// that belongs to it: the socket, the output queue, the writer state and
// the coordinators with jobs sent on it. It ends once (terminate), keeping
// its first cause; a reconnect makes a new session. So bytes queued for a
// dead connection can never reach the next one, and the jobs sent on it
// fail exactly once, in the sweep terminate sends every coordinator on its
// list. Control frames and KILL_ALLs for a job go to the session its DOIT
// went to, never to a later one.
type session struct {
	p        *peer
	conn     net.Conn
	raw      syscall.RawConn
	dec      frame.Decoder
	sess     *secure.Session // nil on a plaintext connection
	peerMax  int
	window   int           // un-acked rows a job on this node may have (WELCOME); the reader holds the node to it
	doitOpt  frame.Feature // the optional DOIT fields in force; fixed at the handshake
	beat     time.Duration // how often to heartbeat: the node's liveness bound allows it
	nodeName string
	kick     chan struct{} // capacity 1: output waits for the writer goroutine
	dead     chan struct{} // closed by terminate

	// Used only by the goroutine holding writing.
	rawWriteFn func(fd uintptr) bool
	wbuf       []byte
	wn         int
	werr       error

	mu       sync.Mutex
	writerOK sync.Cond // signalled when writing turns false
	closed   bool      // terminated: nothing is queued or written any more
	cause    error
	enc      frame.Encoder
	out      []byte // queued frames, in order
	wire     []byte // bytes for the socket, sealed if encrypted; a write in progress or what a short write left
	wireArr  []byte // wire's buffer
	writing  bool   // one goroutine writes at a time, which keeps order
	coords   map[*state]struct{}
	retiring bool        // its node was removed: it ends once coords is empty
	retireT  *time.Timer // ends it at the removal's grace
}

// errStopped ends sessions when their client closes; it matches ErrClosed.
var errStopped = fmt.Errorf("client closed: %w", ErrClosed)

// errWouldBlock: the socket is full; the writer goroutine takes over.
var errWouldBlock = errors.New("socket send buffer full")

// writeHook, when a test sets testWriteHook, runs before every socket
// write with the bytes about to be written; if handled, it stands for the
// write itself.
type writeHook func(s *session, buf []byte, blocking bool) (n int, err error, handled bool)

var testWriteHook atomic.Pointer[writeHook]

func newSession(p *peer, conn net.Conn, hs handshakeResult) (*session, error) {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return nil, errors.New("connection has no file descriptor")
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil, err
	}
	s := &session{
		p: p, conn: conn, raw: raw, dec: hs.dec, sess: hs.sess, peerMax: hs.peerMax, window: hs.window, nodeName: hs.nodeName,
		kick: make(chan struct{}, 1), dead: make(chan struct{}),
		enc: hs.enc, doitOpt: hs.enc.Doit, beat: cmp.Or(hs.heartbeat, p.cl.cfg.HeartbeatInterval),
		coords: make(map[*state]struct{}),
	}
	s.writerOK.L = &s.mu
	s.rawWriteFn = s.rawWrite
	return s, nil
}

// KillAll queues KILL_ALL frames for refs (split to fit the node's maximum)
// and writes them. It implements reaper.Target and never blocks; on a dead
// session it does nothing, because the node killed the connection's
// workers when it lost it.
func (s *session) KillAll(refs []uint64) {
	s.mu.Lock()
	if !s.closed {
		per := max(1, s.peerMax/8)
		for len(refs) > 0 {
			n := min(len(refs), per)
			s.out = s.enc.AppendKillAll(s.out, refs[:n])
			refs = refs[n:]
		}
	}
	s.mu.Unlock()
	s.push()
}

// queueControl appends a START, CANCEL or ACK; control frames are never
// refused for space (they are tiny and keep workers moving). The caller
// pushes once after queueing a batch.
func (s *session) queueControl(t frame.Type, ref uint64, ack uint32) {
	s.mu.Lock()
	if !s.closed {
		if t == frame.TypeAck {
			s.out = s.enc.AppendAck(s.out, ref, ack)
		} else {
			s.out = s.enc.AppendEmpty(s.out, t, ref)
		}
	}
	s.mu.Unlock()
}

// queueAcks appends one ACK per entry, under one lock; the caller pushes.
func (s *session) queueAcks(acks []refCount) {
	s.mu.Lock()
	if !s.closed {
		for _, a := range acks {
			s.out = s.enc.AppendAck(s.out, a.ref, a.n)
		}
	}
	s.mu.Unlock()
}

// submit queues the DOITs of co's jobs for this node in one locked batch
// and puts co on the list of coordinators this session's loss must reach;
// the caller writes them (push or kickWriter). It reports whether co's
// inbox got entries (jobs that failed at once).
func (s *session) submit(co *state, jobs []Job, first int) (failed bool) {
	s.mu.Lock()
	if !s.closed && !s.retiring {
		s.coords[co] = struct{}{}
	}
	for i := range jobs {
		idx := int32(first + i)
		if co.slots[idx].sess != s {
			continue // another node's job (Submit set each slot's session)
		}
		j := &jobs[i]
		if s.closed || s.retiring { // lost or removed since Submit looked: the sweep will not include co
			cause := s.cause
			if s.retiring {
				cause = ErrNodeRemoved
			}
			co.inbox.pushFailure(KindNodeDown, idx, nil, &NodeDownError{Node: s.p.addr, Cause: cause})
			failed = true
			continue
		}
		// What is queued and what a short write left both wait for the
		// socket; a frame is its header, payload and checksum trailer.
		size := frame.HeaderSize + int(co.slots[idx].doitLen) + 8
		if len(s.out)+len(s.wire)+size > s.p.cl.cfg.OutboundLimit {
			failed = true
			s.p.cl.stats.overloads.Add(1)
			co.inbox.pushFailure(KindOverload, idx, nil, &OverloadError{Node: s.p.addr, Limit: s.p.cl.cfg.OutboundLimit})
			continue
		}
		co.handler = append(co.handler[:0], j.Handler...)
		s.out = s.enc.AppendDoit(s.out, co.ref(idx), frame.Doit{
			TimeoutMillis: timeoutMillis(j.Timeout),
			Handler:       co.handler,
			Nonce:         j.Nonce,
			RangeLo:       j.Range.Lo,
			RangeHi:       j.Range.Hi,
			Trace:         co.trace,
			Args:          j.Args,
		})
	}
	s.mu.Unlock()
	return failed
}

// doitLen is the DOIT payload length of job j from co on this session.
func (s *session) doitLen(co *state, j *Job) int {
	// The handler is counted apart: converting the string would allocate.
	return frame.DoitPayloadLen(frame.Doit{Nonce: j.Nonce, Args: j.Args, Trace: co.trace}, s.doitOpt) + len(j.Handler)
}

// forget drops a released coordinator from the loss sweep; the last one
// gone ends a retiring session.
func (s *session) forget(co *state) {
	s.mu.Lock()
	delete(s.coords, co)
	done := s.retiring && len(s.coords) == 0
	s.mu.Unlock()
	if done {
		s.terminate(ErrNodeRemoved)
	}
}

// retire ends the session once no coordinator has jobs on it, or after
// grace, failing whatever still runs with ErrNodeRemoved.
func (s *session) retire(grace time.Duration) {
	s.mu.Lock()
	if s.closed || s.retiring {
		s.mu.Unlock()
		return
	}
	s.retiring = true
	idle := len(s.coords) == 0
	if !idle {
		s.retireT = time.AfterFunc(grace, func() { s.terminate(ErrNodeRemoved) })
	}
	s.mu.Unlock()
	if idle {
		s.terminate(ErrNodeRemoved)
	}
}

// terminate ends the session once: the socket is closed, the queue
// dropped, and every coordinator with jobs on it gets one connection-down
// entry that fails those jobs. Safe from any goroutine.
func (s *session) terminate(cause error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed, s.cause = true, cause
	s.out, s.wire, s.wireArr = nil, nil, nil
	if s.retireT != nil {
		s.retireT.Stop()
	}
	coords := make([]*state, 0, len(s.coords))
	for co := range s.coords {
		coords = append(coords, co)
	}
	s.coords = nil
	s.mu.Unlock()
	close(s.dead)
	// The jobs learn first: closing waits for a read in progress to end.
	for _, co := range coords {
		co.inbox.pushFailure(kindConnDown, 0, s, &NodeDownError{Node: s.p.addr, Cause: cause})
		co.inbox.notify()
	}
	s.conn.Close() // ends the reader and any write in progress
}

// run serves the session until it ends and returns why: a reader
// goroutine dispatches what the node sends, and this goroutine sends
// heartbeats and writes what the direct path (push) could not.
func (s *session) run() error {
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		s.terminate(s.read())
	}()
	s.writeLoop()
	<-readerDone
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cause
}

func (s *session) writeLoop() {
	cl := s.p.cl
	tick := time.NewTicker(s.beat)
	defer tick.Stop()
	var beat uint64
	for {
		select {
		case <-s.kick:
		case <-tick.C:
			beat++
			s.mu.Lock()
			if !s.closed {
				s.out = s.enc.AppendEmpty(s.out, frame.TypeHeartbeat, beat)
			}
			s.mu.Unlock()
		case <-s.dead:
			return
		case <-cl.ctx.Done():
			_ = s.drain() // the KILL_ALLs of coordinators closed last
			s.terminate(errStopped)
			return
		}
		if err := s.drain(); err != nil {
			s.terminate(err)
			return
		}
	}
}

func (s *session) kickWriter() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// push writes queued output from the calling goroutine when no write is in
// progress: a lone frame goes out with no goroutine hand-off, and frames
// queued while a write is in progress go out together in the next one. It
// never blocks: what the socket does not take is handed to the writer
// goroutine.
func (s *session) push() {
	s.mu.Lock()
	if s.writing || s.closed || (len(s.out) == 0 && len(s.wire) == 0) {
		s.mu.Unlock()
		return
	}
	err := s.drainLocked(false)
	s.mu.Unlock()
	if err != nil {
		s.kickWriter() // would block; or a failed write, which the writer reports
	}
}

// drain writes everything queued, blocking (each write bounded by
// HeartbeatTimeout), after waiting for a writer in progress to finish.
// Writer goroutine only.
func (s *session) drain() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.drainAfterWriterLocked()
}

// drainAfterWriterLocked waits for a write in progress to finish, then
// writes everything queued, blocking. Caller holds s.mu.
func (s *session) drainAfterWriterLocked() error {
	for s.writing {
		s.writerOK.Wait()
	}
	return s.drainLocked(true)
}

// drainLocked is called with s.mu held and returns with it held; it
// writes queued output, with s.mu released during each write, until none
// is left. Queued frames become wire bytes (sealed into records on an
// encrypted connection) only when the previous wire bytes are all written,
// so a short write's rest goes out first, as it is: non-blocking, drain
// stops at the first short write and leaves the rest in s.wire. All of it
// belongs to this session: once the session has ended, unsent bytes are
// dropped with it.
func (s *session) drainLocked(blocking bool) error {
	s.writing = true
	defer func() {
		s.writing = false
		s.writerOK.Broadcast()
	}()
	for !s.closed && (len(s.wire) > 0 || len(s.out) > 0) {
		if len(s.wire) == 0 {
			if s.sess != nil {
				s.wireArr = s.sess.Send.Seal(s.wireArr[:0], s.out)
				s.out = s.out[:0]
			} else { // the buffers swap: producers fill the other one meanwhile
				s.wireArr, s.out = s.out, s.wireArr[:0]
			}
			s.wire = s.wireArr
		}
		buf := s.wire
		s.mu.Unlock()
		n, err := s.write(buf, blocking)
		s.mu.Lock()
		if s.closed {
			return net.ErrClosed
		}
		s.wire = buf[n:]
		if err == nil && len(s.wire) > 0 {
			err = errWouldBlock
		}
		if err != nil {
			return err
		}
	}
	// All written: a burst's grown buffers are not kept for the life of
	// the connection (the two swap, so both are checked).
	if cap(s.out) > readBufferSize {
		s.out = nil
	}
	if cap(s.wireArr) > readBufferSize {
		s.wireArr, s.wire = nil, nil
	}
	return nil
}

// write writes buf, either blocking or as much as the socket takes now.
func (s *session) write(buf []byte, blocking bool) (int, error) {
	if hook := testWriteHook.Load(); hook != nil {
		if n, err, ok := (*hook)(s, buf, blocking); ok {
			return n, err
		}
	}
	if blocking {
		_ = s.conn.SetWriteDeadline(time.Now().Add(s.p.cl.cfg.HeartbeatTimeout))
		return s.conn.Write(buf)
	}
	return s.tryWrite(buf)
}

// sendError queues ERROR{err} as the session's last frame and writes it,
// before the caller ends the session.
func (s *session) sendError(err error) {
	code, msg := frame.CodeInternal, err.Error()
	var pe *frame.ProtocolError
	if errors.As(err, &pe) {
		code, msg = pe.Code, pe.Detail
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.out = s.enc.AppendError(s.out, 0, code, frame.FitMessage(msg, s.peerMax))
	_ = s.drainAfterWriterLocked()
}

// timeoutMillis is a job's deadline on the wire: whole milliseconds,
// rounded up, because 0 there means no deadline at all.
func timeoutMillis(d time.Duration) uint32 {
	return uint32((d + time.Millisecond - 1) / time.Millisecond)
}
