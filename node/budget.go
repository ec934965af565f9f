package node

import (
	"time"

	"github.com/rexi-go/rexi/frame"
)

// The node-wide memory budgets: output held unwritten (MaxOutputBytes)
// and frames still arriving (MaxPartialBytes). Each connection's share
// is counted in atomics its loop writes and every loop reads; when a
// rise takes a budget past its bound, connections are chosen to end
// (chooseLocked) and their loops close them, giving the memory back.

// holdOutput records that gnet holds held bytes of the connection's
// output, in the node's total too, and sheds output when a rise takes the
// total past MaxOutputBytes. What is counted is the memory: twice the
// bytes, since gnet copies what a write leaves into a buffer rounded up
// to a power of two (a 1 MiB reply and a byte take 2 MiB). Event loop.
func (c *conn) holdOutput(held int) {
	mem := 2 * int64(held)
	d := mem - c.outHeld.Load()
	if d == 0 {
		return
	}
	c.outHeld.Store(mem)
	if total := c.n.outHeld.Add(d); d > 0 && total > int64(c.n.cfg.MaxOutputBytes) {
		c.n.shedOutput(total)
	}
}

// shedOutput chooses the connections holding the most output, largest
// first, until what the others hold fits MaxOutputBytes, and wakes each:
// its own loop re-reads what gnet still holds for it and ends it only if
// that is still most of it (confirmShed), since gnet drains a reader's
// output without telling us and the count is as of its last write. The
// largest holder is a peer that asks for more than it reads; the
// connection whose write went over is often an innocent one.
func (n *Node) shedOutput(total int64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.chooseLocked(total-int64(n.cfg.MaxOutputBytes), 0,
		func(c *conn) int64 { return c.outHeld.Load() },
		func(c *conn) float64 { return float64(c.outHeld.Load()) },
		func(c *conn) bool { return c.shed.Load() || c.shedAt.Load() > 0 },
		func(c *conn) {
			c.shedAt.Store(c.outHeld.Load())
			_ = c.gc.Wake(nil) // its loop flushes, re-reads gnet's buffer and decides
		})
}

// confirmShed ends the connection if the output budget chose it and gnet
// still holds at least half of what it was chosen for; else the peer has
// been reading, and the node chooses again at its next write over the
// budget. Event loop, after holdOutput.
func (c *conn) confirmShed(held int) {
	if c.shedAt.Load() == 0 { // every flush asks: a load, not a swap
		return
	}
	if at := c.shedAt.Swap(0); 2*int64(held) < at/2 {
		return
	}
	c.shed.Store(true)
	if c.closing.CompareAndSwap(nil, newConnError(frame.CodeOutputOverflow,
		"the node's output for its peers takes more than %d bytes, this connection's the most (%d): it does not read what it asks for",
		c.n.cfg.MaxOutputBytes, 2*int64(held))) {
		c.n.stats.overflows.Add(1)
		c.n.stats.shed.Add(1)
	} // else it is ending already (lingering after its own overflow, counted then): it ends now
	_ = c.gc.Wake(nil) // the next turn closes it, dropping what it held
}

// holdPartial counts the n bytes of a frame still arriving against
// MaxPartialBytes; fresh says the frame began in this read. When it grows
// the node past the bound, the frames that have stalled are ended to make
// room, costliest first (shedPartial): a peer pinning frames half-sent
// must not lock out everyone whose read ends mid-frame. Failing that,
// this connection is refused. Event loop.
func (c *conn) holdPartial(n int, fresh bool) error {
	held := int64(n)
	switch {
	case n == 0:
		c.partialSince.Store(0)
	case fresh || c.partialSince.Load() == 0 || held-c.partMark >= partialProgress:
		c.partialSince.Store(c.readAt.UnixNano())
		c.partMark = held
	}
	grow := held - c.partial.Load()
	if total := c.n.partialBytes.Add(grow); grow > 0 && total > int64(c.n.cfg.MaxPartialBytes) && !c.n.shedPartial(c, held, total) {
		c.n.partialBytes.Add(-grow)
		c.n.stats.partialShed.Add(1)
		return newConnError(frame.CodeOverloaded, "the node holds %d bytes of frames still arriving, its limit", c.n.cfg.MaxPartialBytes)
	}
	c.partial.Store(held)
	return nil
}

// A frame still arriving makes progress when it grows by partialProgress;
// one that has made none for partialStall has stalled, and may be ended
// to make room for others. So an honest burst that takes the node past
// MaxPartialBytes is refused its newest frame, as the bound says, while
// frames pinned half-sent (a byte now and then does not count) give way.
const (
	partialProgress = 64 << 10
	partialStall    = 200 * time.Millisecond
)

// shedPartial ends stalled frames' connections, costliest first — bytes
// times the time since the frame last made progress — until total fits
// MaxPartialBytes. It reports false, ending no more, when no stalled
// frame is left that costs more than c's own (with held bytes).
func (n *Node) shedPartial(c *conn, held, total int64) bool {
	now, stall := time.Now().UnixNano(), n.partialStall.Load()
	cost := func(bytes, since int64) float64 {
		if since == 0 || bytes == 0 || now-since < stall {
			return 0 // not stalled
		}
		return float64(bytes) * float64(now-since)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.chooseLocked(total-int64(n.cfg.MaxPartialBytes), cost(held, c.partialSince.Load()),
		func(o *conn) int64 { return o.partial.Load() },
		func(o *conn) float64 {
			if o == c {
				return 0 // ranked by the floor, with the bytes it grows to
			}
			return cost(o.partial.Load(), o.partialSince.Load())
		},
		func(o *conn) bool { return o.shed.Load() },
		func(o *conn) {
			o.shed.Store(true)
			if o.closing.CompareAndSwap(nil, newConnError(frame.CodeOverloaded,
				"the node holds %d bytes of frames still arriving, its limit, and this connection's frame costs the most (%d bytes, no progress for %v)",
				n.cfg.MaxPartialBytes, o.partial.Load(), time.Duration(now-o.partialSince.Load()).Round(time.Millisecond))) {
				n.stats.partialShed.Add(1)
			}
			_ = o.gc.Wake(nil) // its loop closes it, dropping the frame
		})
}

// chooseLocked chooses connections to end, costliest first, until over
// bytes are given back: held is what ending one gives back, and only one
// costing more than floor is chosen. Connections chosen already (chosen)
// count as given back: their loops close them at their next turn. choose
// must make chosen true. It reports whether over was met. Caller holds
// n.mu.
func (n *Node) chooseLocked(over int64, floor float64, held func(*conn) int64, cost func(*conn) float64, chosen func(*conn) bool, choose func(*conn)) bool {
	for c := range n.conns {
		if chosen(c) {
			over -= held(c)
		}
	}
	for over > 0 {
		var victim *conn
		most := floor
		for c := range n.conns {
			if v := cost(c); v > most && !chosen(c) {
				victim, most = c, v
			}
		}
		if victim == nil {
			return false
		}
		choose(victim)
		over -= held(victim)
	}
	return true
}
