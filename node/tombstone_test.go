package node

import (
	"testing"
	"time"
)

func TestTombstonesBoundedByCountAndAge(t *testing.T) {
	now := time.Unix(1000, 0)
	ts := tombstones{max: 3, ttl: time.Minute}
	for r := uint64(1); r <= 4; r++ {
		ts.add(r, now)
	}
	if ts.len() != 3 {
		t.Fatalf("%d tombstones, want the bound 3", ts.len())
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
	if ts.len() != 1 {
		t.Fatalf("%d tombstones after expiry, want 1", ts.len())
	}
	// Churn: many adds and takes keep the queue bounded.
	for r := uint64(100); r < 10000; r++ {
		ts.add(r, later)
		ts.take(r, later)
	}
	if len(ts.order)-ts.head > 2*ts.max+1 {
		t.Fatalf("queue holds %d entries for bound %d", len(ts.order)-ts.head, ts.max)
	}
}
