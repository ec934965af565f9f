package coord

import "sync"

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
	kindConnDown // a connection epoch ended: expands to KindNodeDown per job
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
// inbox's data buffer at [off, off+n).
type entry struct {
	kind  Kind
	slot  int32  // job slot; for kindConnDown the node index
	epoch uint32 // for kindConnDown
	off   int32
	n     int32
	err   error // for kindConnDown and KindOverload
}

// inbox is where a connection's reader leaves events for one coordinator.
// push never blocks, so a slow coordinator cannot stall a reader; the
// per-job window bounds how much can pile up.
type inbox struct {
	mu      sync.Mutex
	entries []entry
	data    []byte
	closed  bool          // released: pushes are dropped
	signal  chan struct{} // capacity 1: something was pushed
}

// inboxBuffers are an inbox's two pairs of buffers, recycled across
// coordinators so that a fan-out does not grow them from nothing.
type inboxBuffers struct {
	entries, spareEntries []entry
	data, spareData       []byte
}

var inboxPool = sync.Pool{New: func() any { return new(inboxBuffers) }}

func (b *inbox) push(e entry, payload []byte) {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return
	}
	e.off, e.n = int32(len(b.data)), int32(len(payload))
	b.data = append(b.data, payload...) // the one copy of a row out of the reader's buffer
	b.entries = append(b.entries, e)
	b.mu.Unlock()
}

// notify wakes the coordinator; readers call it once per read batch.
func (b *inbox) notify() {
	select {
	case b.signal <- struct{}{}:
	default:
	}
}

// take swaps out everything pushed so far for the given empty buffers,
// which become the inbox's; no allocation in steady state.
func (b *inbox) take(entries []entry, data []byte) ([]entry, []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	e, d := b.entries, b.data
	b.entries, b.data = entries[:0], data[:0]
	return e, d
}
