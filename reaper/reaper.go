package reaper

import "sync/atomic"

// Target is where a table's refs live: one connection to one node. KillAll
// queues one KILL_ALL for refs on it. It must not block and must not keep
// refs after it returns (the slice is reused). A target whose connection is
// gone drops the request: the node killed that connection's workers when it
// lost it.
type Target interface {
	KillAll(refs []uint64)
}

// Reaper counts the tables of one client. It starts no goroutine: tables
// fire on the goroutine that ends their coordinator.
type Reaper struct {
	armed       atomic.Int64
	fired       atomic.Uint64
	killAllSent atomic.Uint64
}

// Stats counts the reaper's work.
type Stats struct {
	Armed       int    // tables registered and not yet closed or fired
	Fired       uint64 // tables fired (coordinator ended without Close)
	KillAllSent uint64 // KILL_ALL requests handed to targets, by Fire and by Table.Close
}

// New returns a reaper with no tables.
func New() *Reaper { return &Reaper{} }

// Stats returns a snapshot of the counters.
func (r *Reaper) Stats() Stats {
	return Stats{Armed: int(r.armed.Load()), Fired: r.fired.Load(), KillAllSent: r.killAllSent.Load()}
}

// Register returns a new armed table with room for capacity pairs before
// it grows. Register it before sending anything for its jobs.
func (r *Reaper) Register(capacity int) *Table {
	t := &Table{r: r, pairs: newPairs(capacity)}
	r.armed.Add(1)
	return t
}
