package coord

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/rexi-go/rexi/frame"
)

// nodeConn is the client's connection to one node. A manager goroutine
// dials, handshakes, and then writes; a reader goroutine per connection
// dispatches frames. Connection loss fails every job on it in one sweep,
// and the manager reconnects with backoff.
type nodeConn struct {
	cl   *Client
	idx  int
	addr string
	kick chan struct{} // capacity 1: output is waiting

	// Used only by the goroutine holding writing.
	rawWriteFn func(fd uintptr) bool
	wbuf       []byte
	wn         int
	werr       error

	mu      sync.Mutex
	up      bool
	epoch   uint32 // incremented by every successful handshake
	enc     frame.Encoder
	out     []byte // queued frames, in order
	spare   []byte // the other output buffer
	writing bool   // someone is writing: only one writer at a time keeps order
	conn    net.Conn
	raw     syscall.RawConn
	peerMax int
	coords  map[*state]struct{} // coordinators with jobs sent in this epoch
	upCh    chan struct{}       // closed while up
	lastErr error
}

func newNodeConn(cl *Client, idx int, addr string) *nodeConn {
	nc := &nodeConn{cl: cl, idx: idx, addr: addr, kick: make(chan struct{}, 1),
		coords: make(map[*state]struct{}), upCh: make(chan struct{})}
	nc.rawWriteFn = nc.rawWrite
	return nc
}

func (nc *nodeConn) kickWriter() {
	select {
	case nc.kick <- struct{}{}:
	default:
	}
}

func (nc *nodeConn) waitUp(ctx context.Context) error {
	nc.mu.Lock()
	ch := nc.upCh
	nc.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		nc.mu.Lock()
		defer nc.mu.Unlock()
		if nc.lastErr != nil {
			return fmt.Errorf("%w (last error: %v)", ctx.Err(), nc.lastErr)
		}
		return ctx.Err()
	}
}

// run is the manager goroutine.
func (nc *nodeConn) run() {
	defer nc.cl.wg.Done()
	cfg := &nc.cl.cfg
	backoff := cfg.ReconnectMin
	for {
		conn, dec, err := nc.dial()
		if err != nil {
			nc.mu.Lock()
			nc.lastErr = err
			nc.mu.Unlock()
			nc.cl.log.Warn("rexi coord: cannot connect to node", "node", nc.addr, "err", err, "retry_in", backoff)
			select {
			case <-nc.cl.ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, cfg.ReconnectMax)
			continue
		}
		backoff = cfg.ReconnectMin
		readerDone := make(chan error, 1)
		go func() { readerDone <- nc.read(conn, dec) }()
		err, readerEnded := nc.write(conn, readerDone)
		conn.Close() // ends the reader if it is still running
		if !readerEnded {
			<-readerDone
		}
		nc.down(err)
		if nc.cl.ctx.Err() != nil {
			return
		}
	}
}

var errStopped = errors.New("client closed")

// dial connects and performs the handshake within DialTimeout.
func (nc *nodeConn) dial() (net.Conn, frame.Decoder, error) {
	cfg := &nc.cl.cfg
	ctx, cancel := context.WithTimeout(nc.cl.ctx, cfg.DialTimeout)
	defer cancel()
	d := net.Dialer{}
	conn, err := d.DialContext(ctx, "tcp", nc.addr)
	if err != nil {
		return nil, frame.Decoder{}, err
	}
	deadline, _ := ctx.Deadline()
	_ = conn.SetDeadline(deadline)
	dec, err := nc.handshake(conn)
	if err != nil {
		conn.Close()
		return nil, frame.Decoder{}, err
	}
	_ = conn.SetDeadline(time.Time{})
	return conn, dec, nil
}

// HandshakeError is a node's refusal during the handshake, or a node that
// failed to prove it knows the secret.
type HandshakeError struct {
	Node   string
	Code   frame.ErrorCode
	Reason string
}

// Error implements error.
func (e *HandshakeError) Error() string {
	return fmt.Sprintf("coord: handshake with %s failed: %s: %s", e.Node, e.Code, e.Reason)
}

func (nc *nodeConn) handshake(conn net.Conn) (frame.Decoder, error) {
	cfg := &nc.cl.cfg
	h := frame.Hello{Version: frame.Version, Features: cfg.features(), MaxPayload: uint32(cfg.MaxPayload), Name: []byte(cfg.Name)}
	_, _ = rand.Read(h.Nonce[:])
	hb := frame.AppendHello(nil, h)
	if _, err := conn.Write(hb); err != nil {
		return frame.Decoder{}, err
	}
	f, buf, err := readOneFrame(conn, frame.Decoder{MaxPayload: 1024})
	if err != nil {
		return frame.Decoder{}, fmt.Errorf("reading WELCOME: %w", err)
	}
	if f.Type == frame.TypeError {
		code, msg, _ := frame.ParseError(f.Payload)
		return frame.Decoder{}, &HandshakeError{Node: nc.addr, Code: code, Reason: string(msg)}
	}
	if f.Type != frame.TypeWelcome {
		return frame.Decoder{}, &HandshakeError{Node: nc.addr, Code: frame.CodeBadHandshake, Reason: "expected WELCOME, got " + f.Type.String()}
	}
	w, err := frame.ParseWelcome(f.Payload)
	if err != nil {
		return frame.Decoder{}, err
	}
	if !frame.VerifyMAC(w.MAC, frame.NodeMAC(cfg.Secret, hb[frame.HeaderSize:], frame.WelcomeBody(w))) {
		_, _ = conn.Write((&frame.Encoder{}).AppendError(nil, 0, frame.CodeAuthFailed, "node MAC does not verify: the node's secret differs"))
		return frame.Decoder{}, &HandshakeError{Node: nc.addr, Code: frame.CodeAuthFailed, Reason: "the node does not know our secret (wrong secret on one side)"}
	}
	auth := frame.AppendAuth(nil, frame.CoordMAC(cfg.Secret, hb[frame.HeaderSize:], f.Payload))
	if _, err := conn.Write(auth); err != nil {
		return frame.Decoder{}, err
	}
	if len(buf) > 0 { // a node sends nothing after WELCOME until we speak
		return frame.Decoder{}, &HandshakeError{Node: nc.addr, Code: frame.CodeUnexpected, Reason: "bytes after WELCOME"}
	}
	feat := w.Features
	nc.mu.Lock()
	nc.enc = frame.Encoder{Checksum: feat&frame.FeatureChecksum != 0, Compress: feat&frame.FeatureCompression != 0, CompressThreshold: cfg.CompressThreshold}
	nc.peerMax = int(w.MaxPayload)
	nc.mu.Unlock()
	return frame.Decoder{MaxPayload: cfg.MaxPayload, Checksum: nc.enc.Checksum, Compression: nc.enc.Compress}, nil
}

// readOneFrame reads exactly one handshake frame; it returns any bytes
// read beyond it.
func readOneFrame(conn net.Conn, dec frame.Decoder) (frame.Frame, []byte, error) {
	buf := make([]byte, 0, 2048)
	tmp := make([]byte, 2048)
	for {
		f, n, err := dec.Decode(buf)
		if err == nil {
			f.Payload = append([]byte(nil), f.Payload...)
			return f, buf[n:], nil
		}
		if !errors.Is(err, frame.ErrIncomplete) {
			return f, nil, err
		}
		m, err := conn.Read(tmp)
		buf = append(buf, tmp[:m]...)
		if err != nil {
			return frame.Frame{}, nil, err
		}
	}
}

// write is the manager's loop while connected: it sends heartbeats and
// writes, with a blocking write bounded by HeartbeatTimeout, whatever the
// direct path (push) could not write without blocking. It returns why the
// connection ends, and whether that was the reader ending.
func (nc *nodeConn) write(conn net.Conn, readerDone chan error) (error, bool) {
	cfg := &nc.cl.cfg
	raw, err := conn.(syscall.Conn).SyscallConn()
	if err != nil {
		return err, false
	}
	nc.mu.Lock()
	nc.up = true
	nc.epoch++
	nc.lastErr = nil
	nc.conn, nc.raw = conn, raw
	close(nc.upCh)
	nc.mu.Unlock()
	nc.cl.log.Info("rexi coord: connected to node", "node", nc.addr)
	tick := time.NewTicker(cfg.HeartbeatInterval)
	defer tick.Stop()
	var beat uint64
	for {
		select {
		case <-nc.kick:
		case <-tick.C:
			beat++
			nc.mu.Lock()
			nc.out = nc.enc.AppendEmpty(nc.out, frame.TypeHeartbeat, beat)
			nc.mu.Unlock()
		case err := <-readerDone:
			return err, true
		case <-nc.cl.ctx.Done():
			_ = nc.drain(true) // KILL_ALLs queued by Close
			return errStopped, false
		}
		if err := nc.drain(true); err != nil {
			return err, false
		}
	}
}

// errWouldBlock: the socket is full; the manager takes over.
var errWouldBlock = errors.New("socket send buffer full")

// push writes queued output from the calling goroutine when no write is in
// progress: a lone frame goes out with no goroutine hand-off, and frames
// queued while a write is in progress go out together in the next one. It
// never blocks: what does not fit is left to the manager goroutine.
func (nc *nodeConn) push() {
	nc.mu.Lock()
	if nc.writing || !nc.up || len(nc.out) == 0 {
		nc.mu.Unlock()
		return
	}
	err := nc.drainLocked(false)
	nc.mu.Unlock()
	if err != nil {
		nc.kickWriter() // would block; or a failed write, which the reader sees too
	}
}

// drain writes everything queued; see drainLocked.
func (nc *nodeConn) drain(blocking bool) error {
	nc.mu.Lock()
	defer nc.mu.Unlock()
	if nc.writing {
		return nil // the active writer writes what we queued
	}
	return nc.drainLocked(blocking)
}

// drainLocked is called with nc.mu held and returns with it held; it
// writes queued output, with nc.mu released during each write, until none
// is left. Non-blocking, it stops at the first short write and puts the
// rest back at the front of the queue.
func (nc *nodeConn) drainLocked(blocking bool) error {
	nc.writing = true
	defer func() { nc.writing = false }()
	conn, raw := nc.conn, nc.raw
	for len(nc.out) > 0 && conn != nil {
		buf := nc.out
		nc.out = nc.spare[:0]
		nc.mu.Unlock()
		var n int
		var err error
		if blocking {
			_ = conn.SetWriteDeadline(time.Now().Add(nc.cl.cfg.HeartbeatTimeout))
			n, err = conn.Write(buf)
		} else {
			n, err = nc.tryWrite(raw, buf)
		}
		nc.mu.Lock()
		if n < len(buf) && err == nil {
			err = errWouldBlock
		}
		if err != nil {
			rest := make([]byte, 0, len(buf)-n+len(nc.out))
			nc.out = append(append(rest, buf[n:]...), nc.out...)
			nc.spare = buf[:0]
			return err
		}
		nc.spare = buf[:0]
	}
	return nil
}

// tryWrite writes as much of buf as the socket takes without blocking.
func (nc *nodeConn) tryWrite(raw syscall.RawConn, buf []byte) (int, error) {
	nc.wbuf, nc.wn, nc.werr = buf, 0, nil
	if err := raw.Write(nc.rawWriteFn); err != nil {
		return 0, err
	}
	n, err := nc.wn, nc.werr
	nc.wbuf = nil
	return n, err
}

// rawWrite runs inside RawConn.Write: the fd is non-blocking, so EAGAIN
// ends the attempt instead of waiting.
func (nc *nodeConn) rawWrite(fd uintptr) bool {
	for nc.wn < len(nc.wbuf) {
		n, err := syscall.Write(int(fd), nc.wbuf[nc.wn:])
		if err == syscall.EINTR {
			continue
		}
		if err == syscall.EAGAIN {
			break
		}
		if err != nil {
			nc.werr = err
			break
		}
		nc.wn += n
	}
	return true
}

// down marks the node down and fails every job sent in the ending epoch,
// for every coordinator at once.
func (nc *nodeConn) down(cause error) {
	nc.mu.Lock()
	wasUp := nc.up
	nc.up = false
	nc.out = nc.out[:0]
	nc.conn, nc.raw = nil, nil
	nc.lastErr = cause
	nc.upCh = make(chan struct{})
	epoch := nc.epoch
	coords := make([]*state, 0, len(nc.coords))
	for s := range nc.coords {
		coords = append(coords, s)
	}
	clear(nc.coords)
	nc.mu.Unlock()
	if !wasUp {
		return
	}
	nc.cl.stats.nodeDowns.Add(1)
	if !errors.Is(cause, errStopped) {
		nc.cl.log.Warn("rexi coord: node down", "node", nc.addr, "err", cause, "coordinators_affected", len(coords))
	}
	for _, s := range coords {
		s.inbox.push(entry{kind: kindConnDown, slot: int32(nc.idx), epoch: epoch, err: &NodeDownError{Node: nc.addr, Cause: cause}}, nil)
		s.inbox.notify()
	}
}

// forget drops a closed coordinator from the sweep list.
func (nc *nodeConn) forget(s *state) {
	nc.mu.Lock()
	delete(nc.coords, s)
	nc.mu.Unlock()
}

// queueKillAll appends KILL_ALL frames (split to fit the node's maximum).
func (nc *nodeConn) queueKillAll(refs []uint64) {
	nc.mu.Lock()
	if nc.up {
		per := max(1, nc.peerMax/8)
		for len(refs) > 0 {
			n := min(len(refs), per)
			nc.out = nc.enc.AppendKillAll(nc.out, refs[:n])
			refs = refs[n:]
		}
	}
	nc.mu.Unlock()
	nc.push()
}

// queueControl appends a START, CANCEL or ACK; control frames are never
// refused for space (they are tiny and keep workers moving). The caller
// pushes once after queueing a batch.
func (nc *nodeConn) queueControl(t frame.Type, ref uint64, ack uint32) {
	nc.mu.Lock()
	if nc.up {
		if t == frame.TypeAck {
			nc.out = nc.enc.AppendAck(nc.out, ref, ack)
		} else {
			nc.out = nc.enc.AppendEmpty(nc.out, t, ref)
		}
	}
	nc.mu.Unlock()
}
