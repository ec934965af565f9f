package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rexi-go/rexi/node"
)

var (
	mLive        = newDesc("rexi_node_live_workers", "Workers in the node's job tables.", prometheus.GaugeValue)
	mRunning     = newDesc("rexi_node_running_handlers", "Handler goroutines that have not returned.", prometheus.GaugeValue)
	mIdle        = newDesc("rexi_node_idle_workers", "Pooled worker goroutines waiting for a job.", prometheus.GaugeValue)
	mFramesOut   = newDesc("rexi_node_frames_out_total", "Frames written to coordinators.", prometheus.CounterValue)
	mWrites      = newDesc("rexi_node_writes_total", "Socket writes carrying them.", prometheus.CounterValue)
	mStarted     = newDesc("rexi_node_workers_started_total", "Workers started.", prometheus.CounterValue)
	mReplied     = newDesc("rexi_node_replies_total", "REPLY frames sent.", prometheus.CounterValue)
	mStreamed    = newDesc("rexi_node_rows_streamed_total", "STREAM rows sent.", prometheus.CounterValue)
	mKilled      = newDesc("rexi_node_workers_killed_total", "Workers killed by CANCEL, KILL_ALL, connection loss or shutdown.", prometheus.CounterValue)
	mErrors      = newDesc("rexi_node_worker_errors_total", "Workers that ended with an error or panic.", prometheus.CounterValue)
	mPanics      = newDesc("rexi_node_worker_panics_total", "Workers that panicked.", prometheus.CounterValue)
	mUnknown     = newDesc("rexi_node_unknown_handler_total", "DOITs naming an unregistered handler.", prometheus.CounterValue)
	mTombstoned  = newDesc("rexi_node_tombstoned_doits_total", "DOITs that found a tombstone and started nothing.", prometheus.CounterValue)
	mTimeouts    = newDesc("rexi_node_timeouts_total", "Workers stopped by a timeout, by kind.", prometheus.CounterValue, "kind")
	mConns       = newDesc("rexi_node_connections_total", "Coordinator connections that completed the handshake.", prometheus.CounterValue)
	mRefused     = newDesc("rexi_node_connections_refused_total", "Connections refused during the handshake.", prometheus.CounterValue)
	mProtoErrs   = newDesc("rexi_node_protocol_errors_total", "Connections closed for a protocol error.", prometheus.CounterValue)
	mOutputWaits = newDesc("rexi_node_output_waits_total", "Times a worker waited for room under the outbound limit.", prometheus.CounterValue)
	mOverloaded  = newDesc("rexi_node_jobs_overloaded_total", "DOITs refused with EXIT OVERLOADED at the live-job limits.", prometheus.CounterValue)
	mOverflows   = newDesc("rexi_node_output_overflows_total", "Connections ended with OUTPUT_OVERFLOW.", prometheus.CounterValue)
	mShed        = newDesc("rexi_node_output_shed_total", "Of those, connections ended because the node's output passed its budget and they held the most.", prometheus.CounterValue)
	mPartShed    = newDesc("rexi_node_partial_frame_shed_total", "Connections ended with OVERLOADED over the bound on frames still arriving (stalled frames making room, or the growing one refused).", prometheus.CounterValue)
	mOutput      = newDesc("rexi_node_output_bytes", "Memory of the output held unwritten for peers, all connections (twice its bytes: buffers are powers of two).", prometheus.GaugeValue)
	mHSRefused   = newDesc("rexi_node_handshake_limit_refusals_total", "Connections refused at accept: too many open, in the handshake, or let in this second.", prometheus.CounterValue)
	mNodeOpen    = newDesc("rexi_node_open_connections", "Connections open, in the handshake or authenticated.", prometheus.GaugeValue)
	mHandshaking = newDesc("rexi_node_handshaking_connections", "Connections accepted and not yet authenticated.", prometheus.GaugeValue)
	mArgBytes    = newDesc("rexi_node_arg_bytes", "Nonce and argument bytes held by live goroutine jobs.", prometheus.GaugeValue)
	mPartial     = newDesc("rexi_node_partial_frame_bytes", "Bytes of frames still arriving, all connections.", prometheus.GaugeValue)
	mTombstones  = newDesc("rexi_node_tombstones", "Tombstones held (KILL_ALL refs not live).", prometheus.GaugeValue)
	mBytes       = newDesc("rexi_node_bytes_total", "Bytes read and written on coordinator connections.", prometheus.CounterValue, "direction")

	mHLive    = newDesc("rexi_node_handler_live_workers", "A handler's workers in the job tables.", prometheus.GaugeValue, "handler")
	mHStarted = newDesc("rexi_node_handler_jobs_started_total", "A handler's jobs started.", prometheus.CounterValue, "handler")
	mHReplied = newDesc("rexi_node_handler_replies_total", "A handler's REPLY frames.", prometheus.CounterValue, "handler")
	mHRows    = newDesc("rexi_node_handler_rows_total", "A handler's STREAM rows.", prometheus.CounterValue, "handler")
	mHKilled  = newDesc("rexi_node_handler_jobs_killed_total", "A handler's jobs killed by CANCEL, KILL_ALL, connection loss or shutdown.", prometheus.CounterValue, "handler")
	mHErrors  = newDesc("rexi_node_handler_jobs_failed_total", "A handler's jobs that ended with an EXIT, by kind (error, panic, deadline).", prometheus.CounterValue, "handler", "kind")
	nodeDescs = []desc{mLive, mRunning, mIdle, mFramesOut, mWrites, mStarted, mReplied, mStreamed, mKilled, mErrors, mPanics, mUnknown,
		mTombstoned, mTimeouts, mConns, mRefused, mProtoErrs, mOutputWaits, mOverloaded, mOverflows, mShed, mPartShed, mOutput, mHSRefused, mNodeOpen, mHandshaking, mArgBytes, mPartial, mTombstones, mBytes,
		mHLive, mHStarted, mHReplied, mHRows, mHKilled, mHErrors}
)

// NewNodeCollector returns a collector of n's metrics: the node's totals
// and, labelled by handler, each registered handler's.
func NewNodeCollector(n *node.Node) prometheus.Collector { return nodeCollector{n} }

type nodeCollector struct{ n *node.Node }

func (c nodeCollector) Describe(ch chan<- *prometheus.Desc) { describe(ch, nodeDescs) }

func (c nodeCollector) Collect(ch chan<- prometheus.Metric) {
	e := emitter(ch)
	s := c.n.Stats()
	e.emit(mLive, float64(s.Live))
	e.emit(mRunning, float64(s.Running))
	e.emit(mIdle, float64(s.Idle))
	e.emit(mFramesOut, float64(s.FramesOut))
	e.emit(mWrites, float64(s.Writes))
	e.emit(mStarted, float64(s.Started))
	e.emit(mReplied, float64(s.Replied))
	e.emit(mStreamed, float64(s.Streamed))
	e.emit(mKilled, float64(s.Killed))
	e.emit(mErrors, float64(s.Errors))
	e.emit(mPanics, float64(s.Panics))
	e.emit(mUnknown, float64(s.Unknown))
	e.emit(mTombstoned, float64(s.Tombstoned))
	e.emit(mTimeouts, float64(s.InitTimeouts), "init")
	e.emit(mTimeouts, float64(s.AckTimeouts), "ack")
	e.emit(mTimeouts, float64(s.Deadlines), "deadline")
	e.emit(mConns, float64(s.Connections))
	e.emit(mRefused, float64(s.Refused))
	e.emit(mProtoErrs, float64(s.ProtocolErrors))
	e.emit(mOutputWaits, float64(s.OutputWaits))
	e.emit(mOverloaded, float64(s.Overloaded))
	e.emit(mOverflows, float64(s.Overflows))
	e.emit(mShed, float64(s.Shed))
	e.emit(mPartShed, float64(s.PartialShed))
	e.emit(mOutput, float64(s.OutputBytes))
	e.emit(mHSRefused, float64(s.HandshakeRefusals))
	e.emit(mNodeOpen, float64(s.Open))
	e.emit(mHandshaking, float64(s.Handshaking))
	e.emit(mArgBytes, float64(s.ArgBytes))
	e.emit(mPartial, float64(s.PartialBytes))
	e.emit(mTombstones, float64(s.Tombstones))
	e.emit(mBytes, float64(s.BytesIn), "in")
	e.emit(mBytes, float64(s.BytesOut), "out")
	for _, h := range c.n.HandlerStats() {
		e.emit(mHLive, float64(h.Live), h.Handler)
		e.emit(mHStarted, float64(h.Started), h.Handler)
		e.emit(mHReplied, float64(h.Replied), h.Handler)
		e.emit(mHRows, float64(h.Rows), h.Handler)
		e.emit(mHKilled, float64(h.Killed), h.Handler)
		e.emit(mHErrors, float64(h.Errors-h.Panics), h.Handler, "error")
		e.emit(mHErrors, float64(h.Panics), h.Handler, "panic")
		e.emit(mHErrors, float64(h.Deadlines), h.Handler, "deadline")
	}
}
