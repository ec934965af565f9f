package coord

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/rexi-go/rexi/reaper"
	"github.com/rexi-go/rexi/secure"
	"go.opentelemetry.io/otel/trace"
)

// refSlotBits: a ref is coordinator id << refSlotBits | slot, so a frame is
// routed to its coordinator with one map lookup and to its job by index.
const (
	refSlotBits = 24
	maxSlots    = 1 << refSlotBits
	slotMask    = maxSlots - 1
)

// Client holds one connection per node and the reaper. Many coordinators
// share one Client; it is safe for concurrent use.
type Client struct {
	cfg     Config
	log     *slog.Logger
	tracer  trace.Tracer               // nil without Config.TracerProvider
	members atomic.Pointer[membership] // replaced whole by SetNodes
	setMu   sync.Mutex                 // serialises SetNodes, and Close's cancel with them
	reaper  *reaper.Reaper

	mu     sync.RWMutex
	coords map[uint64]*state // by coordinator id
	closed bool

	nextID atomic.Uint64
	stats  clientCounters
	ctx    context.Context // cancelled by Close: stops managers and dials
	cancel context.CancelFunc
	wg     sync.WaitGroup // node connection managers
}

type clientCounters struct {
	fanouts, nodeDowns, overloads, nodeOverloads, dropped, heldShed atomic.Uint64
	held                                                            atomic.Int64 // bytes in coordinators' inboxes and batches (MaxHeldBytes)
}

// Stats counts a client's work.
type Stats struct {
	Fanouts       uint64 // coordinators created
	Open          int    // coordinators not yet closed or abandoned
	NodeDowns     uint64 // connection losses (one per node per loss)
	Overloads     uint64 // jobs not sent because a node's outbound buffer was full
	NodeOverloads uint64 // jobs a node refused at its live-job limit (EXIT OVERLOADED)
	Dropped       uint64 // frames for refs no open coordinator owns, or for jobs their node does not run
	ReaperFirings uint64 // coordinators reaped without Close
	KillAllSent   uint64 // KILL_ALL requests, one per node with unfinished jobs (Close and reaper); a long one may take several frames
	ReaperArmed   int    // tables the reaper would fire now
	NodesUp       int
	HeldBytes     int64  // unconsumed node output held for open coordinators, payloads plus 16 bytes a frame
	HeldShed      uint64 // coordinators ended because the client held more than MaxHeldBytes
}

// NewClient starts connecting to every node in cfg.Nodes and returns once
// each has had its first connection attempt (DialTimeout at most), so a
// fan-out right after it finds the nodes that were reachable already up.
// Nodes that were not are retried in the background with backoff;
// WaitConnected waits for all of them. Close stops everything.
func NewClient(cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if cfg.Key.IsZero() {
		k, err := secure.GenerateKey()
		if err != nil {
			return nil, err
		}
		cfg.Key = k
	}
	cl := &Client{
		cfg:    cfg,
		log:    cfg.Logger,
		coords: make(map[uint64]*state),
	}
	if cfg.TracerProvider != nil {
		cl.tracer = cfg.TracerProvider.Tracer(tracerName)
	}
	cl.members.Store(&membership{index: map[string]int{}})
	cl.ctx, cl.cancel = context.WithCancel(context.Background())
	cl.reaper = reaper.New()
	cl.SetNodes(cfg.Nodes)
	if cfg.Resolver != nil {
		cl.wg.Add(1)
		go cl.resolve()
	}
	for _, p := range cl.members.Load().active() {
		<-p.tried // each attempt is bounded by DialTimeout
	}
	return cl, nil
}

// PublicKey is the client's static public key: nodes that pin
// coordinator keys list it.
func (cl *Client) PublicKey() secure.PublicKey { return cl.cfg.Key.Public() }

// WaitConnected blocks until every node is connected, or ctx ends, or a
// node refused an attempt that ended during the wait for good (a
// *HandshakeError whose Permanent is true: wrong secret or key,
// encryption mismatch, node shutting down), which it returns then —
// within one reconnect backoff, instead of waiting for ctx.
func (cl *Client) WaitConnected(ctx context.Context) error {
	for _, p := range cl.members.Load().active() {
		if err := p.waitUp(ctx); err != nil {
			return fmt.Errorf("coord: waiting for node %s: %w", p.addr, err)
		}
	}
	return nil
}

// NodeUp reports whether the client is connected to the node at addr.
func (cl *Client) NodeUp(addr string) bool {
	p := cl.members.Load().find(addr)
	return p != nil && p.current() != nil
}

// Stats returns a snapshot of the client's counters.
func (cl *Client) Stats() Stats {
	rs := cl.reaper.Stats()
	cl.mu.RLock()
	open := len(cl.coords)
	cl.mu.RUnlock()
	up := 0
	for _, p := range cl.members.Load().active() {
		if p.current() != nil {
			up++
		}
	}
	return Stats{
		Fanouts: cl.stats.fanouts.Load(), Open: open, NodeDowns: cl.stats.nodeDowns.Load(),
		Overloads: cl.stats.overloads.Load(), NodeOverloads: cl.stats.nodeOverloads.Load(), Dropped: cl.stats.dropped.Load(),
		ReaperFirings: rs.Fired, KillAllSent: rs.KillAllSent, ReaperArmed: rs.Armed, NodesUp: up,
		HeldBytes: cl.stats.held.Load(), HeldShed: cl.stats.heldShed.Load(),
	}
}

func (cl *Client) register(s *state) error {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if cl.closed {
		return ErrClosed
	}
	cl.coords[s.id] = s
	return nil
}

func (cl *Client) unregister(s *state) {
	cl.mu.Lock()
	delete(cl.coords, s.id)
	cl.mu.Unlock()
}

// shedHeld ends open coordinators, those holding the most first, until
// what the rest hold fits MaxHeldBytes. Those ending already (their
// context done) count as given back: their memory goes once their
// goroutine lets go of them. Called with no lock held.
func (cl *Client) shedHeld() {
	limit := int64(cl.cfg.MaxHeldBytes)
	var victims []*state
	var held []int64
	cl.mu.RLock()
	total := cl.stats.held.Load()
	for _, s := range cl.coords {
		if s.shed.Load() != notShed || s.ctx.Err() != nil {
			total -= s.inbox.held.Load()
		}
	}
	for total > limit {
		var big *state
		var bigHeld int64
		for _, s := range cl.coords {
			if h := s.inbox.held.Load(); h > bigHeld && s.shed.Load() == notShed && s.ctx.Err() == nil && !slices.Contains(victims, s) {
				big, bigHeld = s, h
			}
		}
		if big == nil {
			break
		}
		victims, held = append(victims, big), append(held, bigHeld)
		total -= bigHeld
	}
	cl.mu.RUnlock()
	for i, s := range victims {
		if !s.shed.CompareAndSwap(notShed, shedding) {
			continue // another session's reader chose it at the same moment
		}
		s.cancel(fmt.Errorf("%w: it held %d bytes when the client's total passed %d", ErrHeldBytes, held[i], limit))
		s.shed.Store(shedDone) // after the cancel: a loop that sees it finds the cause
		s.inbox.shed()
		cl.stats.heldShed.Add(1) // once it is done: whoever sees it sees the coordinator ended
	}
}

func (cl *Client) lookup(id uint64) *state {
	cl.mu.RLock()
	s := cl.coords[id]
	cl.mu.RUnlock()
	return s
}

// Close writes what is queued (the KILL_ALLs of coordinators closed last)
// and closes every node connection; the nodes kill the workers of
// coordinators still open, which fail with node-down. Safe to call more
// than once.
func (cl *Client) Close() error {
	cl.mu.Lock()
	if cl.closed {
		cl.mu.Unlock()
		return nil
	}
	cl.closed = true
	cl.mu.Unlock()
	// Cancelled under setMu: a SetNodes either started its peers before
	// (wg.Wait waits for them) or sees the context ended and starts none,
	// so no wg.Add runs concurrently with the Wait or after it.
	cl.setMu.Lock()
	cl.cancel()
	cl.setMu.Unlock()
	cl.wg.Wait()
	return nil
}
