package reaper

import (
	"slices"
	"sync"
)

type tableState uint8

const (
	armed  tableState = iota
	closed            // Close sent the KILL_ALLs itself
	fired             // the reaper sent them
)

// Table is one coordinator's list of (node, ref) pairs. It holds nothing
// else of the coordinator: no payloads, no pointers back. Its methods are
// safe for concurrent use.
type Table struct {
	r *Reaper

	mu       sync.Mutex
	state    tableState
	nodes    []int32
	refs     []uint64
	finished []bool
	scratch  []uint64 // refs of one node while sending
}

// Add records a pair and returns its index. Pairs are added before their
// DOIT is sent. Adding to a table that was already fired or closed returns
// -1: the caller must not send that DOIT.
func (t *Table) Add(node int, ref uint64) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.state != armed {
		return -1
	}
	t.nodes = append(t.nodes, int32(node))
	t.refs = append(t.refs, ref)
	t.finished = append(t.finished, false)
	return len(t.refs) - 1
}

// Finish marks pair i as known finished (its final message or EXIT
// arrived, or its node went down): it is left out of KILL_ALL.
func (t *Table) Finish(i int) {
	t.mu.Lock()
	t.finished[i] = true
	t.mu.Unlock()
}

// Len is the number of pairs.
func (t *Table) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.refs)
}

// Armed reports whether the table will still be killed if its owner ends
// without Close.
func (t *Table) Armed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.state == armed
}

// Fire asks the reaper to kill every unfinished pair, unless the table was
// closed or fired already. It never blocks.
func (t *Table) Fire() { t.r.enqueue(t) }

// Close sends KILL_ALL for every unfinished pair, one per node, and only
// then disarms the table, so that an owner dying inside Close is still
// covered. After Close the reaper never fires the table. It reports
// whether it sent anything (false if the reaper fired first). Safe to call
// more than once.
func (t *Table) Close() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.state != armed {
		return false
	}
	t.killLocked()
	t.state = closed
	t.r.disarmed()
	return true
}

func (t *Table) fire() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.state != armed {
		return
	}
	t.killLocked()
	t.state = fired
	t.r.fired.Add(1)
	t.r.disarmed()
}

// killLocked sends one KILL_ALL per node with unfinished pairs. A node's
// batch starts at its first unfinished pair; earlier pairs of that node are
// all finished, so the scan from there collects every one.
func (t *Table) killLocked() {
	if cap(t.scratch) < len(t.refs) {
		t.scratch = make([]uint64, 0, len(t.refs))
	}
	var done []int32 // nodes already sent; a cluster has few
	for i, n := range t.nodes {
		if t.finished[i] || slices.Contains(done, n) {
			continue
		}
		done = append(done, n)
		refs := t.scratch[:0]
		for j := i; j < len(t.nodes); j++ {
			if t.nodes[j] == n && !t.finished[j] {
				refs = append(refs, t.refs[j])
			}
		}
		t.r.send.KillAll(int(n), refs)
		t.r.killAllSent.Add(1)
	}
}
