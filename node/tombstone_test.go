package node

import (
	"sync/atomic"
	"testing"
	"time"
)

// newTombs returns tombstones bound by the node's count alone (a
// connection may hold all of it), as the tests of that bound need.
func newTombs(count *atomic.Int64, max int64) *tombstones {
	t := newTombstones(count, max, time.Minute)
	t.own = max
	return &t
}

// One connection holds at most a quarter of the node's tombstones, so a
// peer naming many unknown refs leaves the rest to the others.
func TestOneConnectionHoldsAQuarterOfTheTombstones(t *testing.T) {
	var count atomic.Int64
	a, b := newTombstones(&count, 8, time.Minute), newTombstones(&count, 8, time.Minute)
	now := time.Unix(1000, 0)
	for r := uint64(1); r <= 10; r++ {
		a.add(r, now)
	}
	b.add(100, now)
	if a.len() != 2 || !a.take(10, now) || a.take(8, now) || !b.take(100, now) {
		t.Fatalf("a holds %d (want its last 2), b %d", a.len(), b.len())
	}
}

func TestTombstonesBoundedByCountAndAge(t *testing.T) {
	now := time.Unix(1000, 0)
	var count atomic.Int64
	ts := newTombs(&count, 3)
	for r := uint64(1); r <= 4; r++ {
		ts.add(r, now)
	}
	if ts.len() != 3 || count.Load() != 3 {
		t.Fatalf("%d tombstones (node count %d), want the bound 3", ts.len(), count.Load())
	}
	if ts.take(1, now) {
		t.Fatal("the oldest tombstone survived overflow")
	}
	if !ts.take(4, now) || ts.take(4, now) {
		t.Fatal("a tombstone must match exactly once")
	}
	later := now.Add(2 * time.Minute)
	if ts.take(2, later) {
		t.Fatal("a tombstone older than the TTL matched")
	}
	ts.add(9, later) // adding expires the old ones
	if ts.len() != 1 || count.Load() != 1 {
		t.Fatalf("%d tombstones after expiry (node count %d), want 1", ts.len(), count.Load())
	}
}

// The queue stays proportional to the live tombstones however many pass
// through it: a steady trickle of tombstones, some taken and some
// expiring, must not grow it (it did: the consumed prefix was never
// reclaimed while new ones kept arriving).
func TestTombstoneQueueDoesNotGrowUnderChurn(t *testing.T) {
	var count atomic.Int64
	ts := newTombs(&count, 1<<16)
	now := time.Unix(1000, 0)
	for r := uint64(1); r < 200_000; r++ {
		now = now.Add(time.Millisecond) // 60 000 live at most: the TTL is a minute
		ts.add(r, now)
		if r%3 == 0 {
			ts.take(r, now)
		}
	}
	if live := ts.len(); cap(ts.order) > 4*live+1024 {
		t.Fatalf("queue capacity %d for %d live tombstones", cap(ts.order), live)
	}
	if int64(ts.len()) != count.Load() {
		t.Fatalf("node count %d, connection holds %d", count.Load(), ts.len())
	}
	ts.clear()
	if count.Load() != 0 || ts.order != nil || ts.set != nil {
		t.Fatalf("after clear: count %d, queue %d", count.Load(), len(ts.order))
	}
}

// The bound is per node: a second connection over it drops its own
// oldest, and one that holds none records nothing.
func TestTombstonesBoundedPerNode(t *testing.T) {
	var count atomic.Int64
	a, b := newTombs(&count, 4), newTombs(&count, 4)
	now := time.Unix(1000, 0)
	for r := uint64(1); r <= 4; r++ {
		a.add(r, now)
	}
	b.add(100, now) // the node is full and b holds none
	if b.len() != 0 || count.Load() != 4 {
		t.Fatalf("b holds %d, node count %d; want 0 and 4", b.len(), count.Load())
	}
	a.add(5, now) // a replaces its own oldest
	if a.len() != 4 || a.take(1, now) || !a.take(5, now) {
		t.Fatalf("a did not replace its oldest tombstone")
	}
}

// A KILL_ALL may name one unknown ref many times: it is one tombstone,
// queued once (it was queued per mention, and every add rescanned the
// queue, which made such a frame quadratic on the event loop).
func TestTombstoneNamedManyTimesIsQueuedOnce(t *testing.T) {
	var count atomic.Int64
	ts := newTombs(&count, 1<<16)
	now := time.Unix(1000, 0)
	for range 100_000 {
		ts.add(42, now)
	}
	ts.add(43, now.Add(time.Second))
	if ts.len() != 2 || count.Load() != 2 || len(ts.order)-ts.head != 2 {
		t.Fatalf("%d tombstones, node count %d, %d queued; want 2 each", ts.len(), count.Load(), len(ts.order)-ts.head)
	}
	if !ts.take(42, now.Add(59*time.Second)) {
		t.Fatal("the tombstone did not match within its TTL")
	}
}
