package reaper

import (
	"sync"
	"sync/atomic"
)

// Sender queues one KILL_ALL for refs on node. It must not block and must
// not keep refs after it returns (the slice is reused). Nodes are small
// integers chosen by the caller.
type Sender interface {
	KillAll(node int, refs []uint64)
}

// Reaper owns one goroutine that fires tables handed to it.
type Reaper struct {
	send Sender

	mu      sync.Mutex
	queue   []*Table
	armed   int // tables registered and neither closed nor fired
	wake    chan struct{}
	stop    chan struct{}
	done    chan struct{}
	stopped bool

	fired       atomic.Uint64
	killAllSent atomic.Uint64
}

// Stats counts the reaper's work.
type Stats struct {
	Armed       int    // tables registered and not yet closed or fired
	Fired       uint64 // tables the reaper fired (coordinator ended without Close)
	KillAllSent uint64 // KILL_ALL frames queued, by the reaper and by Table.Close
}

// New starts a reaper that sends through s. Call Close to stop it.
func New(s Sender) *Reaper {
	r := &Reaper{send: s, wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go r.loop()
	return r
}

// Stats returns a snapshot of the counters.
func (r *Reaper) Stats() Stats {
	r.mu.Lock()
	armed := r.armed
	r.mu.Unlock()
	return Stats{Armed: armed, Fired: r.fired.Load(), KillAllSent: r.killAllSent.Load()}
}

// Register returns a new armed table with room for capacity pairs before
// it grows. Register it before sending anything for its jobs.
func (r *Reaper) Register(capacity int) *Table {
	t := &Table{r: r}
	t.nodes = make([]int32, 0, capacity)
	t.refs = make([]uint64, 0, capacity)
	t.finished = make([]bool, 0, capacity)
	r.mu.Lock()
	r.armed++
	r.mu.Unlock()
	return t
}

// enqueue hands t to the reaper goroutine; it never blocks, so it is safe
// from context.AfterFunc callbacks and runtime cleanups.
func (r *Reaper) enqueue(t *Table) {
	r.mu.Lock()
	if r.stopped {
		r.mu.Unlock()
		t.fire() // no goroutine any more: fire inline (Sender does not block)
		return
	}
	r.queue = append(r.queue, t)
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *Reaper) loop() {
	defer close(r.done)
	var batch []*Table
	for {
		select {
		case <-r.wake:
		case <-r.stop:
			return
		}
		r.mu.Lock()
		batch, r.queue = r.queue, batch[:0]
		r.mu.Unlock()
		for i, t := range batch {
			t.fire()
			batch[i] = nil
		}
	}
}

// disarmed accounts for a table leaving the armed state.
func (r *Reaper) disarmed() {
	r.mu.Lock()
	r.armed--
	r.mu.Unlock()
}

// Close stops the reaper goroutine after firing what is queued. Tables
// fired afterwards are fired inline by the caller of Fire.
func (r *Reaper) Close() {
	r.mu.Lock()
	if r.stopped {
		r.mu.Unlock()
		<-r.done
		return
	}
	r.stopped = true
	queue := r.queue
	r.queue = nil
	r.mu.Unlock()
	close(r.stop)
	<-r.done
	for _, t := range queue {
		t.fire()
	}
}
