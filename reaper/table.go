package reaper

import (
	"slices"
	"sync"
)

type tableState uint8

const (
	armed  tableState = iota
	closed            // Close sent the KILL_ALLs itself
	fired             // Fire sent them
)

// Table is one coordinator's list of (target, ref) pairs. It holds nothing
// else of the coordinator: no payloads, no pointers back. Its methods are
// safe for concurrent use.
type Table struct {
	r *Reaper

	mu    sync.Mutex
	state tableState
	*pairs
}

// pairs are a table's arrays. Once the table is disarmed (closed or
// fired) nothing reads them again, and they go to the next table: after
// its job slots they were a fan-out's largest allocation.
type pairs struct {
	targets  []Target
	refs     []uint64
	finished []bool
	scratch  []uint64 // refs of one target while sending
}

var pairsPool sync.Pool // of *pairs

// maxPooledPairs: larger arrays are left to the garbage collector.
const maxPooledPairs = 4096

func newPairs(capacity int) *pairs {
	if p, _ := pairsPool.Get().(*pairs); p != nil && cap(p.refs) >= capacity {
		return p
	}
	return &pairs{
		targets:  make([]Target, 0, capacity),
		refs:     make([]uint64, 0, capacity),
		finished: make([]bool, 0, capacity),
	}
}

// disarmLocked moves the table to st and gives its arrays back. Caller
// holds t.mu.
func (t *Table) disarmLocked(st tableState) {
	t.state = st
	t.r.armed.Add(-1)
	p := t.pairs
	t.pairs = nil
	if cap(p.refs) > maxPooledPairs || cap(p.targets) > maxPooledPairs {
		return
	}
	clear(p.targets) // no connection is kept alive by a recycled array
	p.targets, p.refs, p.finished, p.scratch = p.targets[:0], p.refs[:0], p.finished[:0], p.scratch[:0]
	pairsPool.Put(p)
}

// Add records the n pairs pair(0) … pair(n-1), under one lock (a fan-out
// adds hundreds at once), and returns the index of the first. Pairs are
// added before their DOITs are sent. A nil target (the job's node is
// down, so it will never be sent) is recorded as finished. Adding to a
// table that was already fired or closed returns -1: the caller must not
// send those DOITs.
func (t *Table) Add(n int, pair func(i int) (Target, uint64)) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.state != armed {
		return -1
	}
	first := len(t.refs)
	for i := range n {
		target, ref := pair(i)
		t.targets = append(t.targets, target)
		t.refs = append(t.refs, ref)
		t.finished = append(t.finished, target == nil)
	}
	return first
}

// Finish marks the pairs at idx as known finished (their final message or
// EXIT arrived, or their connection was lost): they are left out of
// KILL_ALL. One lock for them all, so callers batch.
func (t *Table) Finish(idx ...int) {
	t.mu.Lock()
	if t.state == armed { // else the arrays are gone, and nothing is sent any more
		for _, i := range idx {
			t.finished[i] = true
		}
	}
	t.mu.Unlock()
}

// Fire kills every unfinished pair, unless the table was closed or fired
// already. It runs on the caller's goroutine and never blocks (targets
// only queue).
func (t *Table) Fire() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.state != armed {
		return
	}
	t.killLocked()
	t.r.fired.Add(1)
	t.disarmLocked(fired)
}

// Close sends KILL_ALL for every unfinished pair, one per target, and only
// then disarms the table, so that an owner dying inside Close is still
// covered. After Close the table never fires. It reports whether it sent
// anything (false if the table had fired first). Safe to call more than
// once.
func (t *Table) Close() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.state != armed {
		return false
	}
	t.killLocked()
	t.disarmLocked(closed)
	return true
}

// killLocked sends one KILL_ALL per target with unfinished pairs. A
// target's batch starts at its first unfinished pair; earlier pairs of that
// target are all finished, so the scan from there collects every one.
func (t *Table) killLocked() {
	var done []Target // targets already sent; a cluster has few
	for i, tg := range t.targets {
		if t.finished[i] || slices.Contains(done, tg) {
			continue
		}
		done = append(done, tg)
		if cap(t.scratch) < len(t.refs)-i {
			t.scratch = make([]uint64, 0, len(t.refs)-i)
		}
		refs := t.scratch[:0]
		for j := i; j < len(t.targets); j++ {
			if t.targets[j] == tg && !t.finished[j] {
				refs = append(refs, t.refs[j])
			}
		}
		tg.KillAll(refs)
		t.r.killAllSent.Add(1)
	}
}
