package node

import "time"

// tombstones remembers refs that a KILL_ALL named before their DOIT
// arrived, so that the late DOIT starts nothing. Bounded by count (oldest
// dropped first) and by age. Used only on the event loop.
type tombstones struct {
	max   int
	ttl   time.Duration
	set   map[uint64]time.Time
	order []tombEntry // insertion order; entries may be stale (taken already)
	head  int
}

type tombEntry struct {
	ref uint64
	at  time.Time
}

func (t *tombstones) add(ref uint64, now time.Time) {
	if t.set == nil {
		t.set = make(map[uint64]time.Time)
	}
	t.expire(now)
	for len(t.set) >= t.max {
		t.popOldest()
	}
	t.set[ref] = now
	t.order = append(t.order, tombEntry{ref, now})
	if len(t.order)-t.head > 2*t.max { // too many stale entries
		t.compact()
	}
}

// take reports whether ref has a live tombstone and removes it.
func (t *tombstones) take(ref uint64, now time.Time) bool {
	at, ok := t.set[ref]
	if !ok {
		return false
	}
	delete(t.set, ref)
	return now.Sub(at) <= t.ttl
}

func (t *tombstones) len() int { return len(t.set) }

func (t *tombstones) expire(now time.Time) {
	for t.head < len(t.order) && now.Sub(t.order[t.head].at) > t.ttl {
		t.dropHead()
	}
}

func (t *tombstones) popOldest() {
	for t.head < len(t.order) {
		if t.dropHead() {
			return
		}
	}
}

// dropHead removes the oldest queue entry and its tombstone if it is still
// the same one; it reports whether a tombstone was removed.
func (t *tombstones) dropHead() bool {
	e := t.order[t.head]
	t.head++
	if t.head == len(t.order) {
		t.order, t.head = t.order[:0], 0
	}
	if at, ok := t.set[e.ref]; ok && at.Equal(e.at) {
		delete(t.set, e.ref)
		return true
	}
	return false
}

func (t *tombstones) compact() {
	live := t.order[:0]
	for _, e := range t.order[t.head:] {
		if at, ok := t.set[e.ref]; ok && at.Equal(e.at) {
			live = append(live, e)
		}
	}
	t.order, t.head = live, 0
}
