package coord

import (
	"slices"
	"sync"
	"sync/atomic"
	"unsafe"
)

// Kind says what a Message carries. Inbox entries use two more, internal
// kinds.
type Kind uint8

// Message kinds delivered to receive callbacks.
const (
	KindReply      Kind = iota + 1 // a worker's REPLY (a cast job's result)
	KindStreamInit                 // a worker asks to stream (Recv only; Stream handles it)
	KindRow                        // one STREAM row
	KindLast                       // a stream's final message
	KindExit                       // the worker ended with EXIT; Err is a *WorkerError
	KindNodeDown                   // the worker's node went down; Err is a *NodeDownError
	KindOverload                   // the job was not sent; Err is an *OverloadError

	kindPing     // PING: resets the per-message timer, never delivered
	kindConnDown // a session ended: expands to KindNodeDown per job sent on it
)

var kindNames = [...]string{KindReply: "reply", KindStreamInit: "stream_init", KindRow: "row", KindLast: "last",
	KindExit: "exit", KindNodeDown: "node_down", KindOverload: "overload", kindPing: "ping", kindConnDown: "conn_down"}

// String names the kind.
func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "kind?"
}

// entry is one inbound event for a coordinator. Payload bytes live in the
// batch's data buffer at [off, off+n); a failure's (kindConnDown,
// KindNodeDown, KindOverload) error is the batch's failures[off]. An entry
// is 16 bytes and holds no pointer: a reader writes the entries on one
// core and a receive loop reads them on another, so every cache line of
// them crosses between the two (with 48-byte entries, the two lines that
// first touch one were a tenth of a streaming coordinator's CPU).
type entry struct {
	kind  Kind
	acked bool  // a row the reader acknowledged on receipt
	slot  int32 // job slot
	off   int32
	n     int32
}

// failure is what a failure's entry carries beside its kind and slot.
type failure struct {
	sess *session // for kindConnDown, the session that ended (a node's frame needs none: the reader checked it is its job's)
	err  error
}

// batch is a buffer pair of entries and their payload bytes. A batch has
// exactly one owner at a time — the inbox (being filled), a receive loop
// (being dispatched), or the coordinator (spare, or kept for the next
// loop) — and every hand-over clears the giver's reference, so no two
// places can ever write to one array.
type batch struct {
	entries  []entry
	data     []byte
	failures []failure // rare: a job or a connection that failed
	cost     int64     // the memory its frames take (payloads and entries): counted against ackBudget and MaxHeldBytes, given back when it is reset
}

func (b batch) reset() batch {
	clear(b.failures) // keep no session or error alive
	return batch{entries: b.entries[:0], data: b.data[:0], failures: b.failures[:0]}
}

// recycled is b emptied for reuse, or nothing when one large fan-out grew
// it past maxPooledData: kept, a coordinator's two batches would hold
// their peak for its whole life, whatever MaxHeldBytes counts now.
func (b batch) recycled() batch {
	if cap(b.data) > maxPooledData || cap(b.entries) > maxPooledData/entrySize {
		return batch{}
	}
	return b.reset()
}

const entrySize = int(unsafe.Sizeof(entry{}))

// inbox is where a session's reader leaves events for one coordinator.
// push never blocks, so a slow coordinator cannot stall a reader; the
// per-job window bounds how much can pile up.
type inbox struct {
	mu     sync.Mutex
	cur    batch
	closed bool          // released or shed: pushes are dropped
	signal chan struct{} // capacity 1: something was pushed
	// left is what a receive loop stopped before (its callback said
	// done), parked here until the next loop: under mu, so that shed can
	// drop it while no loop runs, or a coordinator the application keeps
	// open without receiving would hold it past MaxHeldBytes.
	left     batch
	released bool // close ran: what the coordinator held was given back whole

	// Per job slot, what a reader checks a node's frame against.
	jobs  []inboxJob
	takes uint32 // batches taken so far

	// held is what this coordinator's frames count against the client's
	// MaxHeldBytes (total): those in cur and in batches taken and not yet
	// reset. Written under mu or by the receive loop; read by shedHeld.
	held  atomic.Int64
	total *atomic.Int64
}

// inboxJob is what a reader knows of a job, so that a node can make the
// coordinator hold only what the protocol lets it send: the session its
// DOIT went to (another node's frame for it is dropped unheld), the rows
// received and not yet acknowledged (past the node's window, the node
// breaks the protocol), and which frames that come at most once, or once
// per batch, it has sent.
type inboxJob struct {
	owner    *session
	unacked  int32  // rows held to be acknowledged when consumed, not yet acknowledged
	readRows uint32 // rows of read readSeq acknowledged on receipt: their ACK goes after the read
	readSeq  uint32 // the owner's reader's read count (readBatch.seq) when readRows was counted
	pinged   uint32 // takes+1 when a PING was held in the batch being filled: one resets the timer as well as many
	inited   bool   // STREAM_INIT held
	ended    bool   // REPLY, LAST or EXIT held: nothing more of the job's is
}

// admit says whether the reader should hold frame kind k for job j. Caller
// holds b.mu.
func (b *inbox) admit(j *inboxJob, k Kind) bool {
	switch {
	case j.ended:
		return false
	case k == kindPing:
		if j.pinged == b.takes+1 {
			return false
		}
		j.pinged = b.takes + 1
	case k == KindStreamInit:
		if j.inited {
			return false
		}
		j.inited = true
	case k == KindReply || k == KindLast || k == KindExit:
		j.ended = true
	}
	return true
}

// ackBudget bounds the memory of the rows a coordinator's inbox holds
// that the reader acknowledged on receipt, their entries counted (a row
// with no payload still costs an entry: counting payloads alone let a node
// stream empty rows past its window, each acknowledged at once). Below it
// a row is acknowledged as it arrives, so a worker's next rows are on
// their way while the coordinator consumes these; above it rows are
// acknowledged when consumed, and each worker's window bounds what more
// can come. So an inbox holds at most ackBudget plus one window per
// worker; a coordinator holds at most twice that, counting the batch its
// receive loop is dispatching (or kept for the next loop) while the inbox
// refills.
const ackBudget = 256 << 10

// pushFailure queues a failure of kind k: of job slot, or for kindConnDown
// of every job sent on sess.
func (b *inbox) pushFailure(k Kind, slot int32, sess *session, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	b.cur.entries = append(b.cur.entries, entry{kind: k, slot: slot, off: int32(len(b.cur.failures))})
	b.cur.failures = append(b.cur.failures, failure{sess, err})
	b.cur.cost += frameCost(nil)
	b.count(frameCost(nil))
}

// frameCost is what a frame held counts against MaxHeldBytes.
func frameCost(payload []byte) int64 { return int64(entrySize + len(payload)) }

// pushLocked queues e with its payload; for a row it also says whether
// the row may be acknowledged now (the inbox is under ackBudget), in
// which case the entry is marked acked. Caller holds b.mu (a reader holds
// it over a run of frames for one coordinator).
func (b *inbox) pushLocked(e entry, payload []byte) (queued, ackNow bool) {
	if b.closed {
		return false, false
	}
	if e.kind == KindRow && b.cur.cost+frameCost(payload) <= ackBudget {
		e.acked, ackNow = true, true
	}
	e.off, e.n = int32(len(b.cur.data)), int32(len(payload))
	b.cur.data = append(b.cur.data, payload...) // the one copy of a row out of the reader's buffer
	b.cur.entries = append(b.cur.entries, e)
	b.cur.cost += frameCost(payload) // held and the client's total are the caller's: a reader adds a run's at once
	return true, ackNow
}

// own records the sessions of the jobs from slot first on, before their
// DOITs are written.
func (b *inbox) own(first int, slots []slot) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.jobs = slices.Grow(b.jobs[:first], len(slots))[:first+len(slots)] // a refused Submit left none behind
	// Written in place, field by field: a copy of each slot Submit just
	// wrote, or of an entry built on the stack, stalls on its stores.
	for i := range slots {
		j := &b.jobs[first+i]
		*j = inboxJob{}
		j.owner = slots[i].sess
	}
}

// job is what the inbox knows of slot i if session s runs it, else nil:
// a frame for a job s does not run (refs are easy to guess) is dropped
// before it is held. Caller holds b.mu; the pointer is good while it does.
func (b *inbox) job(i int32, s *session) *inboxJob {
	if int(i) < len(b.jobs) && b.jobs[i].owner == s {
		return &b.jobs[i]
	}
	return nil
}

// notify wakes the coordinator; readers call it once per read batch.
func (b *inbox) notify() {
	select {
	case b.signal <- struct{}{}:
	default:
	}
}

// take hands over everything pushed so far and adopts empty as the batch
// to fill next.
func (b *inbox) take(empty batch) batch {
	b.mu.Lock()
	defer b.mu.Unlock()
	full := b.cur
	b.cur = empty.reset()
	b.takes++
	return full
}

// count adds frames' cost to what b and the client hold (MaxHeldBytes).
// Callers count under b.mu, so that the loop cannot give it back first.
func (b *inbox) count(cost int64) {
	b.held.Add(cost)
	b.total.Add(cost)
}

// giveBack returns what a batch of b's counted against MaxHeldBytes.
func (b *inbox) giveBack(cost int64) { b.count(-cost) }

// shed stops pushes and drops the batch being filled and the one a loop
// left parked: the client ended the coordinator for what it held
// (MaxHeldBytes), and a running loop drops the batch it holds. The job
// array stays: the loop may still read it.
func (b *inbox) shed() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	b.giveBack(b.cur.cost + b.left.cost)
	b.cur, b.left = batch{}, batch{}
}

// unpark hands a receive loop what the previous one stopped before.
func (b *inbox) unpark() batch {
	b.mu.Lock()
	defer b.mu.Unlock()
	left := b.left
	b.left = batch{}
	return left
}

// park keeps what a receive loop stopped before for the next one; once
// the coordinator is shed or released it is dropped at once.
func (b *inbox) park(left batch) {
	if left.entries == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.released: // close gave back all that was held
	case b.closed: // shed
		b.giveBack(left.cost)
	default:
		b.left = left
	}
}

// close stops pushes and hands over the batch being filled, the one a
// loop left parked and the job array.
func (b *inbox) close() (cur, left batch, jobs []inboxJob) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed, b.released = true, true
	cur, left, jobs = b.cur, b.left, b.jobs
	b.cur, b.left, b.jobs = batch{}, batch{}, nil // a reader that still holds the coordinator finds no job
	return cur, left, jobs
}

// buffers are what a released coordinator hands to the next one: its two
// batches and its per-job arrays, so that a fan-out does not grow them
// from nothing. Allocating little matters beyond the allocations: a
// coordinator that allocated its job arrays per fan-out ran a garbage
// collection every ~90 W-stream fan-outs, and the fan-outs its mark phase
// overlapped were the 99th percentile. Only what the coordinator is known
// to hold goes back (see state.recycle).
type buffers struct {
	a, b  batch
	slots []slot
	jobs  []inboxJob
}

var bufferPool = sync.Pool{New: func() any { return new(buffers) }}

// maxPooledData: a data buffer grown past this by one large fan-out is
// left to the garbage collector instead of being kept for the next.
const maxPooledData = 1 << 20

func (p *buffers) put(a, b batch, slots []slot, jobs []inboxJob) {
	p.a, p.b = a.recycled(), b.recycled()
	p.slots, p.jobs = nil, nil
	if cap(slots) <= maxPooledJobs && cap(jobs) <= maxPooledJobs {
		p.slots, p.jobs = slots[:0], jobs[:0]
	}
	bufferPool.Put(p)
}

// maxPooledJobs: per-job arrays grown past this by one large fan-out are
// left to the garbage collector.
const maxPooledJobs = 4096

// sized returns buf emptied when it has room for n, else a new slice of
// capacity n.
func sized[T any](buf []T, n int) []T {
	if cap(buf) >= n {
		return buf[:0]
	}
	return make([]T, 0, n)
}
