package node

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// jobContext is the context a goroutine handler runs with. It is made
// for each job (a handler may hand it to a goroutine that outlives the
// job, so it is never reused) and costs one small allocation: its Done
// channel exists only if someone asks for it, and stopping the job wakes
// the worker through the worker's own signal channel, so Stream waits on
// one channel instead of selecting on two.
//
// Err returns the cause (ErrKilled, ErrDeadline, ErrInitTimeout,
// ErrAckTimeout), each of which matches context.Canceled or
// context.DeadlineExceeded with errors.Is; context.Cause returns it too.
type jobContext struct {
	mu       sync.Mutex
	done     chan struct{}
	err      atomic.Pointer[error] // set once, under mu; read without it (Stream checks it per row)
	deadline time.Time
	timer    *time.Timer     // the DOIT deadline, if any
	wake     chan struct{}   // the worker's signal channel
	values   context.Context // the job's span, when traced; nil otherwise
}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// Deadline implements context.Context.
func (c *jobContext) Deadline() (time.Time, bool) { return c.deadline, !c.deadline.IsZero() }

// Done implements context.Context.
func (c *jobContext) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done == nil {
		if c.err.Load() != nil {
			return closedChan
		}
		c.done = make(chan struct{})
	}
	return c.done
}

// Err implements context.Context.
func (c *jobContext) Err() error {
	if p := c.err.Load(); p != nil {
		return *p
	}
	return nil
}

// Value implements context.Context: a traced job's context carries its
// span, and nothing else.
func (c *jobContext) Value(key any) any {
	if c.values == nil {
		return nil
	}
	return c.values.Value(key)
}

// stop cancels the job with cause, once, and wakes its worker.
func (c *jobContext) stop(cause error) {
	if c.cancel(&cause) {
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
}

// end marks the job over once its handler returned, so that whatever the
// handler left running on ctx stops. Unlike stop it does not signal the
// worker (its goroutine is the caller) and allocates nothing.
func (c *jobContext) end() { c.cancel(&errJobOver) }

// cancel sets the context's cause unless one is set, and reports whether
// it did.
func (c *jobContext) cancel(cause *error) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err.Load() != nil {
		return false
	}
	c.err.Store(cause)
	if c.done != nil {
		close(c.done)
	}
	if c.timer != nil {
		c.timer.Stop()
	}
	return true
}

// errJobOver is the cause of a job context whose handler returned.
var errJobOver = context.Canceled

// startDeadline arms the DOIT deadline.
func (c *jobContext) startDeadline(at time.Time) {
	c.deadline = at
	c.mu.Lock()
	c.timer = time.AfterFunc(time.Until(at), func() { c.stop(ErrDeadline) })
	c.mu.Unlock()
}

var _ context.Context = (*jobContext)(nil)
