package coord

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync/atomic"
	"time"

	"github.com/rexi-go/rexi/frame"
	"github.com/rexi-go/rexi/reaper"
	"go.opentelemetry.io/otel/trace"
)

// Job is one unit of remote work: run Handler with Args on Node.
type Job struct {
	Node    string        // one of the client's configured node addresses
	Handler string        // a handler registered on the node
	Args    []byte        // opaque arguments
	Nonce   []byte        // opaque request id, shown in the node's error ring
	Range   Range         // the ring interval the job serves (streaming fan-outs)
	Timeout time.Duration // DOIT deadline enforced by the node; 0 = none
}

type slotState uint8

const (
	slotPending   slotState = iota // DOIT queued
	slotCandidate                  // STREAM_INIT arrived; waiting to be chosen
	slotStarted                    // START sent
	slotCancelled                  // CANCEL sent: the node kills it, so it counts as finished
	slotDone                       // final message arrived: REPLY or LAST
	slotFailed                     // EXIT, node down, or not sent
)

// slot is one job of a coordinator. Only the coordinator's goroutine
// touches it.
type slot struct {
	sess    *session // the connection its DOIT went to; nil if the node was down
	rows    uint64   // rows delivered
	rng     Range
	node    int32
	unacked uint32 // rows delivered since the last ACK
	doitLen int32  // its DOIT's payload length, found by Submit's check and used by its send
	st      slotState
	chosen  bool // Stream picked it to serve its range
}

// finished: nothing more will come from the job and it needs no KILL_ALL.
// A CANCELled job counts: the node kills it on CANCEL, which travels on the
// same ordered connection before any later frame, so a KILL_ALL for it
// would only leave a useless tombstone on the node.
func (s *slot) finished() bool { return s.st >= slotCancelled }

// Coordinator is one fan-out: a table of jobs, registered with the reaper
// before any is sent, and the loops that receive their output. Use it from
// one goroutine and defer Close. If it is dropped without Close, or its
// context ends, the reaper kills its workers.
type Coordinator struct {
	s       *state
	cleanup runtime.Cleanup
}

// state is everything a coordinator owns. The client's routing table and
// the reaper's callbacks point here, never at the Coordinator handle, so
// that an abandoned handle becomes unreachable and its cleanup runs.
type state struct {
	cl     *Client
	id     uint64
	ctx    context.Context // ends with New's ctx, a bound ctx, or Close
	cancel context.CancelCauseFunc
	binds  []func() bool // AfterFunc stops of Bind
	table  *reaper.Table
	inbox  inbox
	slots  []slot
	open   int // slots not finished
	// finished lists slots finished since the reaper's table was last
	// told (flushFinished): one table lock per batch, not one per job.
	finished []int
	sessions []*session // sessions that list this coordinator for their loss sweep
	stopCtx  func() bool
	closed   bool
	shed     atomic.Int32 // notShed, or ended by the client's MaxHeldBytes (its loop drops what it holds once shedDone)

	// The batch not in the inbox: spare (empty, swapped in by the next
	// take). A batch being dispatched is held only by the loop, and what a
	// loop stopped before is parked in the inbox (inbox.left).
	bufs    *buffers // the pool's wrapper, returned on release
	spare   batch
	acks    []int32    // slots with rows to acknowledge after this batch
	pushes  []*session // sessions with control frames queued in this batch
	handler []byte     // reused for DOIT encoding
	submitN []int32    // the nodes (membership indexes) one Submit sends to
	submitS []*session // and the session each one's DOITs go on; nil if none

	// Backing arrays for the slices above in a cluster of up to
	// smallCluster nodes: no allocation per fan-out for them.
	sessArr, pushArr, submitArr [smallCluster]*session
	submitNArr                  [smallCluster]int32
	finishedArr                 [64]int

	span  trace.Span        // the fan-out's span; nil without tracing
	trace frame.TraceParent // its context, carried by every DOIT

	hookBetweenBatches func(node int) // tests only
}

// A coordinator's shed state: Client.shedHeld claims it (shedding), then
// cancels its context and marks it shedDone, which its loop acts on.
const (
	notShed int32 = iota
	shedding
	shedDone
)

// smallCluster: node counts up to this keep a coordinator's per-node
// slices inside it.
const smallCluster = 8

// New creates a coordinator bound to ctx with room for capacity jobs
// (more may be submitted; the table then grows). Its ref table is
// registered with the reaper before anything can be sent, and ctx's end
// makes the reaper kill every job it submitted.
func (cl *Client) New(ctx context.Context, capacity int) (*Coordinator, error) {
	if capacity < 0 || capacity > maxSlots {
		return nil, fmt.Errorf("coord: capacity %d out of range [0, %d]", capacity, maxSlots)
	}
	s := &state{
		cl:    cl,
		id:    cl.nextID.Add(1),
		table: cl.reaper.Register(capacity),
		bufs:  bufferPool.Get().(*buffers),
	}
	s.inbox.cur, s.spare = s.bufs.a, s.bufs.b
	s.slots, s.inbox.jobs = sized(s.bufs.slots, capacity), sized(s.bufs.jobs, capacity)
	*s.bufs = buffers{}
	s.sessions, s.pushes = s.sessArr[:0], s.pushArr[:0]
	s.submitN, s.submitS = s.submitNArr[:0], s.submitArr[:0]
	s.finished = s.finishedArr[:0]
	s.inbox.signal = make(chan struct{}, 1)
	s.inbox.total = &cl.stats.held
	// Whole before it is registered: a reader of another node may find it
	// in the registry at once (Client.shedHeld looks at its context).
	s.ctx, s.cancel = context.WithCancelCause(s.startSpan(ctx))
	s.stopCtx = context.AfterFunc(s.ctx, s.table.Fire)
	if err := cl.register(s); err != nil {
		s.stopCtx()
		s.cancel(err)
		s.endSpan(false)
		s.table.Close()
		return nil, err
	}
	co := &Coordinator{s: s}
	co.cleanup = runtime.AddCleanup(co, (*state).abandon, s)
	cl.stats.fanouts.Add(1)
	return co, nil
}

// abandon runs when a Coordinator handle became unreachable without Close
// (its goroutine returned early or died in a recovered panic).
func (s *state) abandon() {
	s.absorbFinals()
	s.endSpan(true)
	s.table.Fire()
	s.release()
}

// release stops every watcher of the coordinator's lifetime and forgets it.
func (s *state) release() {
	s.stopCtx()
	for _, stop := range s.binds {
		stop()
	}
	s.cancel(ErrClosed)
	s.cl.unregister(s)
	for _, sess := range s.sessions {
		sess.forget(s)
	}
	s.sessions = nil
	s.recycle()
}

// recycle hands the coordinator's batches and job arrays to the next one.
// The inbox is closed first, so a reader that looked the coordinator up
// just before unregister can neither write into a batch nor read a job
// that someone else now owns. Only batches the coordinator holds go back:
// one a receive loop is dispatching (Close called from its callback) or
// lost to a panic in a callback is left to the garbage collector. The
// slots go too: a released coordinator has no jobs (every path that runs
// after a callback returns checks closed before it looks at a slot). (abandon runs in a runtime
// cleanup, when nothing else of s's runs: its goroutine is gone.)
func (s *state) recycle() {
	cur, left, jobs := s.inbox.close()
	s.inbox.giveBack(s.inbox.held.Load()) // closed: nothing is pushed any more, and no loop gives back after this
	other := s.spare
	if other.entries == nil && other.data == nil {
		other = left
	}
	s.spare = batch{}
	s.bufs.put(cur, other, s.slots, jobs)
	s.bufs, s.slots = nil, nil
}

// Bind ties the coordinator to another lifetime as well, such as an HTTP
// request's context: when ctx ends, the coordinator ends as if its own
// context had (receive loops return, the reaper kills its workers). A
// client that hangs up thus ends the fan-out and every worker at once.
func (co *Coordinator) Bind(ctx context.Context) {
	defer runtime.KeepAlive(co) // no cleanup (reaping) while binds is appended to
	s := co.s
	if s.closed {
		return
	}
	s.binds = append(s.binds, context.AfterFunc(ctx, func() {
		s.cancel(fmt.Errorf("coord: bound context ended: %w", context.Cause(ctx)))
	}))
}

// Close kills every job not known to be finished — one KILL_ALL per node,
// for streaming winners, jobs that never sent STREAM_INIT and cast jobs
// alike (a job is known finished after its REPLY, LAST or EXIT, its node's
// loss, or our CANCEL) — then disarms the reaper and releases the
// coordinator. The KILL_ALLs are queued before the
// reaper is disarmed, so a coordinator dying inside Close is still covered;
// after Close the reaper never fires for it. Safe to call more than once.
func (co *Coordinator) Close() error {
	s := co.s
	if s.closed {
		return nil
	}
	s.closed = true
	s.absorbFinals()
	s.endSpan(false)
	s.table.Close() // KILL_ALLs queued, then disarmed
	s.release()
	co.cleanup.Stop()
	// Stop only works while co is reachable: without this, the GC may find
	// co unreachable while Stop runs, queue abandon anyway, and release
	// would run twice (a soak run crashed in recycling the batches so).
	runtime.KeepAlive(co)
	return nil
}

// absorbFinals marks finished the jobs whose REPLY, LAST or EXIT already
// arrived from their node, or that were never sent (overload, a node
// going away), but that no receive loop consumed, so that Close does not
// name them in KILL_ALL: a node keeps a tombstone for every ref it does
// not know. Nothing is delivered.
func (s *state) absorbFinals() {
	var finals []entry
	collect := func(b batch) {
		for _, e := range b.entries {
			switch e.kind {
			case KindReply, KindLast, KindExit, KindOverload, KindNodeDown:
				finals = append(finals, e)
			}
		}
	}
	s.inbox.mu.Lock()
	collect(s.inbox.left)
	collect(s.inbox.cur)
	s.inbox.mu.Unlock()
	// Finished after the inbox lock is let go: telling the reaper's table
	// takes its lock, which is taken before a session's, which is taken
	// before an inbox's (submit).
	for _, e := range finals {
		if int(e.slot) >= len(s.slots) {
			continue
		}
		sl := &s.slots[e.slot]
		if sl.finished() { // (the readers drop another node's frames for it)
			continue
		}
		st := slotFailed
		if e.kind == KindReply || e.kind == KindLast {
			st = slotDone
		}
		s.finish(e.slot, st)
	}
	s.flushFinished() // before the table fires or closes
}

// Len is the number of jobs submitted so far; 0 once closed.
func (co *Coordinator) Len() int {
	defer runtime.KeepAlive(co) // no cleanup (recycling the slots) while they are read
	return len(co.s.slots)
}

// Worker describes job slot i, which must be below Len: a closed
// coordinator has no slots.
func (co *Coordinator) Worker(i int) WorkerInfo {
	defer runtime.KeepAlive(co)
	return co.s.info(int32(i))
}

func (s *state) info(i int32) WorkerInfo {
	var w WorkerInfo
	s.describe(&w, i)
	return w
}

// describe fills w for slot i in place. The receive loop fills each
// Message's this way: built on the stack and copied, a WorkerInfo was
// written as 8-byte words and read back as 16-byte ones, a load that
// waits for the stores to retire (3-4 % of a streaming coordinator's CPU).
func (s *state) describe(w *WorkerInfo, i int32) {
	sl := &s.slots[i]
	w.Slot, w.Node, w.Ref, w.Range, w.Rows = int(i), s.cl.members.Load().peers[sl.node].addr, s.ref(i), sl.rng, sl.rows
}

func (s *state) ref(i int32) uint64 { return s.id<<refSlotBits | uint64(i) }

// Submit adds jobs to the table (and so to the reaper's view) and then
// queues their DOITs, one batch per node. It never blocks on a node: a job
// for a node that is down fails at once with a KindNodeDown message, a job
// that does not fit the node's outbound limit with KindOverload. A job
// larger than its node's max_payload is refused (ErrJobTooLarge) before
// any is sent. It returns the slot of the first job; the others follow in
// order.
func (co *Coordinator) Submit(jobs ...Job) (int, error) {
	defer runtime.KeepAlive(co)
	s := co.s
	if s.closed {
		return 0, ErrClosed
	}
	if err := s.ctx.Err(); err != nil {
		return 0, fmt.Errorf("coord: submit: %w", err)
	}
	first := len(s.slots)
	if first+len(jobs) > maxSlots {
		return 0, fmt.Errorf("coord: submit: more than %d jobs in one coordinator", maxSlots)
	}
	// The nodes the jobs name, in order, each with its current session:
	// the work is per node named, not per node the client ever knew, and
	// a node is looked up in the membership once, not once per job.
	m := s.cl.members.Load() // one view of the membership for the whole Submit
	s.submitN, s.submitS = s.submitN[:0], s.submitS[:0]
	// 1. Fill the table (validating each job; any error refuses the lot):
	// from here on the reaper knows every job, and which session its DOIT
	// goes to.
	for i := range jobs {
		if err := s.submitSlot(m, &jobs[i], i); err != nil {
			s.slots = s.slots[:first]
			return 0, err
		}
	}
	added := s.table.Add(len(jobs), func(i int) (reaper.Target, uint64) {
		idx := int32(first + i)
		if sess := s.slots[idx].sess; sess != nil {
			return sess, s.ref(idx)
		}
		return nil, s.ref(idx)
	})
	if added < 0 {
		s.slots = s.slots[:first]
		return 0, fmt.Errorf("coord: submit: coordinator already reaped: %w", context.Cause(s.ctx))
	}
	s.open += len(jobs)
	s.inbox.own(first, s.slots[first:]) // before any DOIT is written: the readers check its answers against it
	// 2. Only then send, batched per node: each batch is written as soon as
	// it is encoded, so the first node works while the next is encoded.
	failed := false
	for k, ni := range s.submitN {
		p := m.peers[ni]
		if s.hookBetweenBatches != nil {
			s.hookBetweenBatches(int(ni))
		}
		if s.ctx.Err() != nil {
			break // reaped meanwhile; the KILL_ALL covers what was sent
		}
		sess := s.submitS[k]
		if sess == nil {
			s.nodeDown(p, jobs, first)
			failed = true
			continue
		}
		if !slices.Contains(s.sessions, sess) {
			s.sessions = append(s.sessions, sess)
		}
		if sess.submit(s, jobs, first) {
			failed = true
		}
		sess.push()
	}
	if failed {
		s.inbox.notify()
	}
	s.pushQueued()
	return first, nil
}

// submitSlot checks job i of a Submit, finds its node's session and
// appends its slot.
func (s *state) submitSlot(m *membership, j *Job, i int) error {
	if err := s.check(j); err != nil {
		return err
	}
	k := s.submitNode(m, j)
	if k < 0 {
		ni, ok := m.index[j.Node]
		if !ok || m.peers[ni].removed() {
			return fmt.Errorf("%w: %q", ErrUnknownNode, j.Node)
		}
		k = len(s.submitN)
		s.submitN, s.submitS = append(s.submitN, int32(ni)), append(s.submitS, m.peers[ni].current())
	}
	// A job its node can never take is the caller's bug: refuse the lot.
	sess := s.submitS[k]
	n := 0
	if sess != nil {
		if n = sess.doitLen(s, j); n > sess.peerMax {
			return fmt.Errorf("coord: submit: job %d's DOIT payload is %d bytes, over node %s's max_payload of %d: %w",
				i, n, j.Node, sess.peerMax, ErrJobTooLarge)
		}
	}
	// Filled in place: a slot built on the stack is copied with 16-byte
	// loads of its 4- and 8-byte stores, which stall.
	s.slots = append(s.slots, slot{})
	sl := &s.slots[len(s.slots)-1]
	sl.node, sl.sess, sl.rng, sl.doitLen = s.submitN[k], sess, j.Range, int32(n)
	return nil
}

// submitNode is j's position in s.submitN, or -1. A Submit names a few
// nodes, and jobs usually share their address strings, which compare
// equal at once: cheaper than hashing the address for every job.
func (s *state) submitNode(m *membership, j *Job) int {
	for k, ni := range s.submitN {
		if m.peers[ni].addr == j.Node {
			return k
		}
	}
	return -1
}

// nodeDown fails at once the jobs for a node that has no session.
func (s *state) nodeDown(p *peer, jobs []Job, first int) {
	p.mu.Lock()
	cause := p.lastErr
	p.mu.Unlock()
	for i := range jobs {
		if jobs[i].Node == p.addr {
			s.inbox.pushFailure(KindNodeDown, int32(first+i), nil, &NodeDownError{Node: p.addr, Cause: cause})
		}
	}
}

// check validates a job's fields; Submit checks its node.
func (s *state) check(j *Job) error {
	if len(j.Handler) == 0 || len(j.Handler) > frame.MaxHandlerName {
		return fmt.Errorf("coord: handler name must be 1..%d bytes, got %q", frame.MaxHandlerName, j.Handler)
	}
	if len(j.Nonce) > frame.MaxNonce {
		return fmt.Errorf("coord: nonce of %d bytes exceeds %d", len(j.Nonce), frame.MaxNonce)
	}
	if j.Range.Lo > j.Range.Hi {
		return fmt.Errorf("coord: range %v has Lo > Hi", j.Range)
	}
	if j.Timeout < 0 || j.Timeout/time.Millisecond > 1<<32-1 {
		return fmt.Errorf("coord: timeout %v out of range", j.Timeout)
	}
	return nil
}

// Start sends START to job slot i (for callers driving streams by hand
// with Recv; Stream does this itself). Call it only after the slot's
// KindStreamInit: a node ignores a START that reaches it before the job
// sent STREAM_INIT, and the job would then wait for one until its init
// timeout. Once the coordinator is closed it does nothing.
func (co *Coordinator) Start(i int) {
	defer runtime.KeepAlive(co)
	if co.s.closed {
		return
	}
	co.s.control(int32(i), frame.TypeStart)
	co.s.pushQueued()
}

// Cancel sends CANCEL to job slot i: the node kills that worker. Once the
// coordinator is closed it does nothing (Close killed every job).
func (co *Coordinator) Cancel(i int) {
	defer runtime.KeepAlive(co)
	if co.s.closed {
		return
	}
	co.s.control(int32(i), frame.TypeCancel)
	co.s.pushQueued()
}

// pushQueued writes what each session in s.pushes has queued (DOITs or
// control frames), one write per session, one session after another from
// the calling goroutine. (Waking the sessions' writer goroutines to write
// side by side cost more CPU than it saved time: on a small host the woken
// threads compete with the nodes for the cores.)
func (s *state) pushQueued() {
	for i, sess := range s.pushes {
		sess.push()
		s.pushes[i] = nil
	}
	s.pushes = s.pushes[:0]
}

// queued notes that frames wait in sess for the next pushQueued.
func (s *state) queued(sess *session) {
	if !slices.Contains(s.pushes, sess) {
		s.pushes = append(s.pushes, sess)
	}
}

func (s *state) control(i int32, t frame.Type) {
	sl := &s.slots[i]
	if sl.finished() || sl.sess == nil {
		return
	}
	sl.sess.queueControl(t, s.ref(i), 0)
	s.queued(sl.sess)
	if t == frame.TypeStart {
		sl.st = slotStarted
	} else {
		s.finish(i, slotCancelled)
	}
}
