package node

import "sync"

// pool runs goroutine jobs on pooled worker goroutines.
//
// A loop turn queues the jobs it started and wakes at most one idle
// worker. A worker that takes a job while more are queued wakes the next
// before running it, and only one wake-up is in flight at a time (the
// rule Go's scheduler follows for its spinning threads). Handlers that
// return quickly then run back to back on the few workers already awake,
// instead of costing each job a goroutine wake-up and park; handlers that
// block still each get a goroutine, the queue fanning out one wake-up
// ahead of the jobs being taken.
type pool struct {
	n       *Node
	maxIdle int
	wg      sync.WaitGroup

	mu     sync.Mutex
	queue  []task
	head   int             // queue[head:] waits for a worker
	idle   []chan struct{} // parked workers, each on its own channel; the last parked is woken first (its stack is warm)
	waking bool            // a worker has been woken (or started) and has not yet taken a job
	closed bool
}

// submit queues the jobs of one loop turn and makes sure a worker is on
// its way. It never blocks (it runs on the event loop).
func (p *pool) submit(ts []task) {
	if len(ts) == 0 {
		return
	}
	p.mu.Lock()
	// A queue that never empties would otherwise grow its array by every
	// job it ever took: move the waiting jobs to the front instead, once
	// at least half of the array has been taken.
	if live := len(p.queue) - p.head; len(p.queue)+len(ts) > cap(p.queue) && p.head >= live {
		copy(p.queue, p.queue[p.head:])
		clear(p.queue[live:]) // the moved tasks' old slots still point at workers
		p.queue, p.head = p.queue[:live], 0
	}
	p.queue = append(p.queue, ts...)
	if !p.waking {
		p.wakeLocked()
	}
	p.mu.Unlock()
}

// wakeLocked wakes an idle worker, or starts one. Caller holds p.mu.
func (p *pool) wakeLocked() {
	p.waking = true
	if k := len(p.idle) - 1; k >= 0 {
		ch := p.idle[k]
		p.idle[k] = nil
		p.idle = p.idle[:k]
		ch <- struct{}{} // buffered, and only a parked worker is in idle: never blocks
		return
	}
	p.wg.Add(1)
	go p.worker(make(chan struct{}, 1))
}

// takeLocked pops the next job. Caller holds p.mu.
func (p *pool) takeLocked() (task, bool) {
	if p.head == len(p.queue) {
		return task{}, false
	}
	t := p.queue[p.head]
	p.queue[p.head] = task{}
	p.head++
	if p.head == len(p.queue) { // drained: reuse the array from its start
		p.head = 0
		p.queue = p.queue[:0]
		if cap(p.queue) > maxQueueKept {
			p.queue = nil
		}
	}
	return t, true
}

// maxQueueKept bounds the queue's array kept after a burst.
const maxQueueKept = 4096

// worker runs jobs until it would park while maxIdle others are parked,
// or the pool is closed with nothing queued. It starts as the worker
// being woken.
func (p *pool) worker(wake chan struct{}) {
	defer p.wg.Done()
	woken := true
	for {
		p.mu.Lock()
		if woken {
			p.waking, woken = false, false
		}
		t, ok := p.takeLocked()
		if !ok {
			if p.closed || len(p.idle) >= p.maxIdle {
				p.mu.Unlock()
				return
			}
			p.idle = append(p.idle, wake)
			p.mu.Unlock()
			<-wake
			woken = true
			continue
		}
		if p.head < len(p.queue) && !p.waking {
			p.wakeLocked() // more queued: the next worker is on its way before this job runs, which may block
		}
		p.mu.Unlock()
		if t.w.jc.Err() == ErrKilled { // CANCEL or KILL_ALL while it waited: never run it
			p.n.unstarted(t.w)
			continue
		}
		p.n.run(t.fn, t.w)
	}
}

// idleCount is how many workers are parked.
func (p *pool) idleCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle)
}

// close lets every worker exit once the queue is empty, and waits for
// them. No loop may submit any more.
func (p *pool) close() {
	p.mu.Lock()
	p.closed = true
	for i, ch := range p.idle {
		ch <- struct{}{}
		p.idle[i] = nil
	}
	p.idle = p.idle[:0]
	p.mu.Unlock()
	p.wg.Wait()
}
