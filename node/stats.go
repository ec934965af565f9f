package node

import (
	"slices"
	"strings"
	"sync/atomic"
)

// Stats is a snapshot of a node's counters. Counters only grow; Live and
// Running are gauges.
type Stats struct {
	Live    int64 // jobs in connection job tables now
	Running int64 // handler goroutines that have not returned yet
	Idle    int64 // pooled worker goroutines waiting for a job

	Started      uint64 // workers started
	Replied      uint64 // REPLYs handlers sent (held behind a window, one counts when queued)
	Streamed     uint64 // STREAM rows handlers sent (likewise)
	Killed       uint64 // workers killed by CANCEL, KILL_ALL, connection loss or Close
	Errors       uint64 // workers ended by an error or panic (EXIT sent)
	Panics       uint64 // of those, panics
	Unknown      uint64 // DOITs naming an unregistered handler
	Tombstoned   uint64 // DOITs that found a tombstone and started nothing
	InitTimeouts uint64 // workers stopped waiting for START/CANCEL
	AckTimeouts  uint64 // workers stopped waiting for an ACK
	Deadlines    uint64 // workers stopped at their DOIT deadline

	Connections       uint64 // connections that completed the handshake
	Refused           uint64 // connections refused during the handshake (bad auth, version, garbage, limit)
	HandshakeRefusals uint64 // of those, refused at accept: MaxConns connections open, MaxHandshakes in the handshake (MaxSourceHandshakes from its source), or MaxHandshakeRate reached
	Overloaded        uint64 // DOITs refused with EXIT OVERLOADED (MaxJobs, MaxConnJobs, MaxArgBytes, MaxConnArgBytes)
	Overflows         uint64 // connections ended with OUTPUT_OVERFLOW (output past OutboundHardLimit, or shed)
	Shed              uint64 // of those, ended because the node's output passed MaxOutputBytes and they held the most
	PartialShed       uint64 // connections ended with OVERLOADED over MaxPartialBytes: stalled frames made room, or the growing one was refused
	Handshaking       int64  // connections accepted and not yet authenticated
	Open              int64  // connections open, in the handshake or authenticated (MaxConns)
	Tombstones        int64  // tombstones held, all connections
	ArgBytes          int64  // nonce and argument bytes live goroutine jobs hold (MaxArgBytes)
	PartialBytes      int64  // bytes of frames still arriving, all connections (MaxPartialBytes)
	OutputBytes       int64  // memory of the output held unwritten, all connections, as of each one's last write: twice its bytes (MaxOutputBytes)
	ProtocolErrors    uint64 // connections closed for a protocol error after the handshake
	OutputWaits       uint64 // times a worker waited for room under OutboundLimit

	BytesIn   uint64
	BytesOut  uint64
	FramesOut uint64 // frames written to coordinators (counted per write)
	Writes    uint64 // socket writes that carried them (FramesOut/Writes is the batching)
}

// counters are the node-wide counts. What is counted per job (started,
// replies, rows, kills, failures) is counted once, per handler
// (handlerCounters), and summed by Stats; live is counted both ways
// because admission control reads the node's total on every DOIT.
type counters struct {
	live, running atomic.Int64

	unknown, tombstoned                               atomic.Uint64
	initTimeouts, ackTimeouts                         atomic.Uint64
	connections, refused, protocolErrors, outputWaits atomic.Uint64
	handshakeRefusals, overloaded, overflows, shed    atomic.Uint64
	partialShed                                       atomic.Uint64
	bytesIn, bytesOut, framesOut, writes              atomic.Uint64
}

func (c *counters) snapshot() Stats {
	return Stats{
		Live: c.live.Load(), Running: c.running.Load(),
		Unknown: c.unknown.Load(), Tombstoned: c.tombstoned.Load(),
		InitTimeouts: c.initTimeouts.Load(), AckTimeouts: c.ackTimeouts.Load(),
		Connections: c.connections.Load(), Refused: c.refused.Load(),
		HandshakeRefusals: c.handshakeRefusals.Load(), Overloaded: c.overloaded.Load(), Overflows: c.overflows.Load(), Shed: c.shed.Load(), PartialShed: c.partialShed.Load(),
		ProtocolErrors: c.protocolErrors.Load(), OutputWaits: c.outputWaits.Load(),
		BytesIn: c.bytesIn.Load(), BytesOut: c.bytesOut.Load(),
		FramesOut: c.framesOut.Load(), Writes: c.writes.Load(),
	}
}

// HandlerStats counts the jobs of one registered handler.
type HandlerStats struct {
	Handler   string
	Live      int64  // its jobs in the job tables now
	Started   uint64 // jobs started
	Replied   uint64 // REPLY frames sent
	Rows      uint64 // STREAM rows sent
	Killed    uint64 // jobs killed by CANCEL, KILL_ALL, connection loss or Close
	Errors    uint64 // jobs ended by an error or panic (EXIT sent)
	Panics    uint64 // of those, panics
	Deadlines uint64 // jobs stopped at their DOIT deadline
}

type handlerCounters struct {
	live                                                      atomic.Int64
	started, replied, rows, killed, errors, panics, deadlines atomic.Uint64
}

func (c *handlerCounters) snapshot(name string) HandlerStats {
	return HandlerStats{Handler: name, Live: c.live.Load(), Started: c.started.Load(), Replied: c.replied.Load(),
		Rows: c.rows.Load(), Killed: c.killed.Load(), Errors: c.errors.Load(), Panics: c.panics.Load(), Deadlines: c.deadlines.Load()}
}

// HandlerStats returns the counters of every registered handler, sorted
// by name. A handler registered again under its name keeps its counts.
func (n *Node) HandlerStats() []HandlerStats {
	hs := *n.handlers.Load()
	out := make([]HandlerStats, 0, len(hs))
	for name, h := range hs {
		out = append(out, h.stats.snapshot(name))
	}
	slices.SortFunc(out, func(a, b HandlerStats) int { return strings.Compare(a.Handler, b.Handler) })
	return out
}
