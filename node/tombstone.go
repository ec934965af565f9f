package node

import (
	"sync/atomic"
	"time"
)

// tombstones remembers, for one connection, refs that a KILL_ALL named
// before their DOIT arrived, so that the late DOIT starts nothing. They
// are bounded by age, by a node-wide count shared by every connection,
// and per connection by a quarter of that, so that one peer cannot take
// them all (a connection over either bound drops its own oldest first;
// one with none records nothing). Used only on the event loop.
type tombstones struct {
	count *atomic.Int64 // the node's tombstones, all connections
	max   int64         // the node's bound
	own   int64         // this connection's: max/4, at least 1
	ttl   int64         // nanoseconds
	set   map[uint64]int64
	order []tombEntry // insertion order from head; entries may be stale (taken)
	head  int
}

// newTombstones returns a connection's tombstones under the node's bound
// limit, counted in count.
func newTombstones(count *atomic.Int64, limit int64, ttl time.Duration) tombstones {
	return tombstones{count: count, max: limit, own: max(1, limit/4), ttl: int64(ttl)}
}

type tombEntry struct {
	ref uint64
	at  int64 // unix nanoseconds
}

func (t *tombstones) add(ref uint64, now time.Time) {
	at := now.UnixNano()
	t.expire(at)
	if _, dup := t.set[ref]; dup {
		// Already tombstoned: its age runs from the first KILL_ALL. (A
		// KILL_ALL naming one ref many times used to queue it once per
		// mention, with one timestamp, and every later add rescanned the
		// whole queue: quadratic, on the event loop.)
		return
	}
	if (int64(len(t.set)) >= t.own || t.count.Load() >= t.max) && !t.popOldest() {
		return // the node is full and this connection holds none of it
	}
	if t.set == nil {
		t.set = make(map[uint64]int64)
	}
	t.count.Add(1)
	t.set[ref] = at
	t.order = append(t.order, tombEntry{ref, at})
	t.compact()
}

// take reports whether ref has a live tombstone and removes it.
func (t *tombstones) take(ref uint64, now time.Time) bool {
	if len(t.set) == 0 { // the usual case, checked inline: every DOIT asks
		return false
	}
	at, ok := t.set[ref]
	if !ok {
		return false
	}
	t.remove(ref)
	return now.UnixNano()-at <= t.ttl
}

func (t *tombstones) len() int { return len(t.set) }

func (t *tombstones) remove(ref uint64) {
	delete(t.set, ref)
	t.count.Add(-1)
}

func (t *tombstones) expire(now int64) {
	for t.head < len(t.order) && now-t.order[t.head].at > t.ttl {
		t.dropHead()
	}
	t.compact()
}

// popOldest drops this connection's oldest tombstone, if it has one.
func (t *tombstones) popOldest() bool {
	for t.head < len(t.order) {
		if t.dropHead() {
			return true
		}
	}
	return false
}

// dropHead removes the oldest queue entry and its tombstone if it is still
// the same one; it reports whether a tombstone was removed.
func (t *tombstones) dropHead() bool {
	e := t.order[t.head]
	t.head++
	if at, ok := t.set[e.ref]; ok && at == e.at {
		t.remove(e.ref)
		return true
	}
	return false
}

// compact keeps the queue proportional to the live tombstones: the
// consumed prefix is reclaimed once it is half the queue, stale entries
// once they outnumber live ones, and everything is let go when none is
// left (a burst's map and queue are not kept for the connection's life).
func (t *tombstones) compact() {
	switch live := len(t.order) - t.head; {
	case len(t.set) == 0:
		t.set, t.order, t.head = nil, nil, 0
	case live > 2*len(t.set)+64:
		kept := t.order[:0]
		for _, e := range t.order[t.head:] {
			if at, ok := t.set[e.ref]; ok && at == e.at {
				kept = append(kept, e)
			}
		}
		t.order, t.head = kept, 0
	case t.head > 64 && t.head >= live:
		t.order = t.order[:copy(t.order, t.order[t.head:])]
		t.head = 0
	}
}

// clear drops every tombstone of a closed connection.
func (t *tombstones) clear() {
	t.count.Add(-int64(len(t.set)))
	t.set, t.order, t.head = nil, nil, 0
}
