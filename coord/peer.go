package coord

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// peer is the client's long-lived view of one node: its address, the
// reconnect backoff and the current session. Everything that belongs to a
// TCP connection lives in the session and dies with it; a reconnect makes
// a new session, so nothing queued for the old connection can reach the
// next one.
type peer struct {
	cl   *Client
	addr string

	gone    chan struct{} // closed when the node is removed from the set
	removal atomic.Bool

	tried chan struct{} // closed once the first connection attempt is over

	mu   sync.Mutex
	sess *session      // nil while down
	upCh chan struct{} // closed while a session is up
	// attempts counts finished connection attempts; refusedAt is the
	// number of the last one when it was refused for good (Permanent),
	// else 0; attempted is closed, and replaced, as each attempt ends.
	attempts  uint64
	refusedAt uint64
	attempted chan struct{}
	lastErr   error
	name      string // from the last handshake
}

func newPeer(cl *Client, addr string) *peer {
	return &peer{cl: cl, addr: addr, upCh: make(chan struct{}), gone: make(chan struct{}),
		tried: make(chan struct{}), attempted: make(chan struct{})}
}

// removed reports whether the node left the set.
func (p *peer) removed() bool { return p.removal.Load() }

// remove takes the node out of the set: no new session, and the current
// one closes once its coordinators are done with it, or after RemoveGrace.
func (p *peer) remove() {
	if p.removal.Swap(true) {
		return
	}
	close(p.gone)
	if s := p.current(); s != nil {
		s.retire(p.cl.cfg.RemoveGrace)
	}
}

// info describes the peer; ok is false for a removed peer with nothing
// left to wind down.
func (p *peer) info() (NodeInfo, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	i := NodeInfo{Addr: p.addr, Name: p.name, LastError: p.lastErr}
	switch {
	case p.removed() && p.sess == nil:
		return i, false
	case p.removed():
		i.State = NodeRemoving
	case p.sess != nil:
		i.State = NodeUp
	case p.lastErr != nil:
		i.State = NodeDown
	default:
		i.State = NodeConnecting
	}
	return i, true
}

// current returns the live session, or nil while the node is down.
func (p *peer) current() *session {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sess
}

// waitUp waits for a session, and gives up on a refusal that retrying
// will not fix (HandshakeError.Permanent) — one to an attempt that ended
// after the call, so that a refusal from before (a node that was
// restarting) does not fail a wait for the node that is back.
func (p *peer) waitUp(ctx context.Context) error {
	p.mu.Lock()
	start := p.attempts
	p.mu.Unlock()
	for {
		p.mu.Lock()
		up, attempted := p.upCh, p.attempted
		if p.refusedAt > start {
			err := p.lastErr
			p.mu.Unlock()
			return err
		}
		p.mu.Unlock()
		select {
		case <-up:
			return nil
		case <-attempted:
		case <-ctx.Done():
			p.mu.Lock()
			defer p.mu.Unlock()
			if p.lastErr != nil {
				return fmt.Errorf("%w (last error: %v)", ctx.Err(), p.lastErr)
			}
			return ctx.Err()
		}
	}
}

// attemptOverLocked records the end of a connection attempt; refused
// says it was refused for good. Caller holds p.mu.
func (p *peer) attemptOverLocked(refused bool) {
	p.attempts++
	p.refusedAt = 0
	if refused {
		p.refusedAt = p.attempts
	}
	close(p.attempted)
	p.attempted = make(chan struct{})
}

// run is the peer's manager goroutine: it dials, runs one session at a
// time until the client closes, and waits a jittered backoff before each
// new attempt, growing with each failed attempt or short-lived session.
func (p *peer) run() {
	defer p.cl.wg.Done()
	cfg := &p.cl.cfg
	backoff := cfg.ReconnectMin
	tried := sync.OnceFunc(func() { close(p.tried) })
	defer tried() // even when no attempt was made
	for !p.removed() {
		s, err := p.connect()
		if err != nil {
			p.mu.Lock()
			p.lastErr = err
			var he *HandshakeError
			p.attemptOverLocked(errors.As(err, &he) && he.Permanent())
			p.mu.Unlock()
			tried()
			wait := jitter(backoff)
			p.cl.log.Warn("rexi coord: cannot connect to node", "node", p.addr, "err", err, "retry_in", wait)
			if !p.pause(wait) {
				return
			}
			backoff = min(2*backoff, cfg.ReconnectMax)
			continue
		}
		p.mu.Lock()
		p.sess, p.lastErr, p.name = s, nil, s.nodeName
		close(p.upCh)
		p.attemptOverLocked(false)
		p.mu.Unlock()
		tried()
		if p.removed() { // removed while dialling: this session takes no job
			s.retire(0)
		}
		p.cl.log.Info("rexi coord: connected to node", "node", p.addr)

		upAt := time.Now()
		cause := s.run() // until the connection ends; every job on it has failed

		p.mu.Lock()
		p.sess, p.lastErr = nil, cause
		p.upCh = make(chan struct{})
		p.mu.Unlock()
		p.cl.stats.nodeDowns.Add(1)
		if errors.Is(cause, errStopped) || p.cl.ctx.Err() != nil || p.removed() {
			return
		}
		// Only a session that lasted is a success that starts the backoff
		// over; one that ended sooner counts as a failed attempt, so that
		// a node that completes the handshake and then drops or refuses
		// the connection (say ERROR IDLE_TIMEOUT) is not redialled in a
		// tight loop.
		if time.Since(upAt) >= stableSession {
			backoff = cfg.ReconnectMin
		}
		wait := jitter(backoff) // coordinators that lost the node together do not redial in lockstep
		p.cl.log.Warn("rexi coord: node down", "node", p.addr, "err", cause, "retry_in", wait)
		if !p.pause(wait) {
			return
		}
		backoff = min(2*backoff, cfg.ReconnectMax)
	}
}

// stableSession is how long a session must last for its loss to start
// the backoff over. A second: a node that ends every session later than
// that costs at most a handshake a second, which is cheap, while a
// working session outlives it by far, so a node lost after one (a
// restart) is redialled after the shortest backoff.
const stableSession = time.Second

// pause waits d before the next connection attempt; it reports false,
// at once, when the client closes or the node leaves the set meanwhile.
func (p *peer) pause(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-p.cl.ctx.Done():
		return false
	case <-p.gone:
		return false
	case <-t.C:
		return true
	}
}

// jitter spreads a backoff over [d/2, d), so that coordinator processes
// that lost a node at the same moment do not redial it in lockstep.
func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2)
}

// connect dials and performs the handshake within DialTimeout.
func (p *peer) connect() (*session, error) {
	ctx, cancel := context.WithTimeout(p.cl.ctx, p.cl.cfg.DialTimeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		return nil, err
	}
	deadline, _ := ctx.Deadline()
	_ = conn.SetDeadline(deadline)
	// Client.Close (which cancels p.cl.ctx) need not wait out a node that
	// stalls the handshake: it ends the handshake's reads and writes now.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	hs, err := handshake(conn, &p.cl.cfg, p.addr)
	if !stop() && err == nil {
		err = context.Cause(ctx) // the deadline fell as the handshake ended: do not trust it
	}
	if err != nil {
		conn.Close()
		return nil, err
	}
	_ = conn.SetDeadline(time.Time{})
	s, err := newSession(p, conn, hs)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return s, nil
}
