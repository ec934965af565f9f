package main

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/rexi-go/rexi/coord"
	"github.com/rexi-go/rexi/node"
)

// metrics exports a node's and a client's counters, read at scrape time,
// plus the fan-out latency histogram of this daemon's coordinators.
type metrics struct {
	reg     *prometheus.Registry
	latency *prometheus.HistogramVec
}

func newMetrics(n *node.Node, cl *coord.Client) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "rexi_coord_fanout_duration_seconds",
		Help:    "Duration of fan-outs run by this daemon's coordinators, by handler and outcome.",
		Buckets: prometheus.ExponentialBuckets(50e-6, 2, 20), // 50µs .. 26s
	}, []string{"handler", "outcome"})
	b := readBuildInfo()
	buildInfoGauge := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "rexi_build_info",
		Help:        "Always 1; the labels tell which build of rexinode runs.",
		ConstLabels: prometheus.Labels{"version": b.Version, "revision": b.Revision, "goversion": b.GoVersion},
	})
	buildInfoGauge.Set(1)
	m.reg.MustRegister(m.latency, buildInfoGauge, &statsCollector{n: n, cl: cl},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

type metricDesc struct {
	desc *prometheus.Desc
	kind prometheus.ValueType
}

func newDesc(name, help string, kind prometheus.ValueType, labels ...string) metricDesc {
	return metricDesc{prometheus.NewDesc(name, help, labels, nil), kind}
}

var (
	mLive        = newDesc("rexi_node_live_workers", "Workers in the node's job tables.", prometheus.GaugeValue)
	mRunning     = newDesc("rexi_node_running_handlers", "Handler goroutines that have not returned.", prometheus.GaugeValue)
	mIdle        = newDesc("rexi_node_idle_workers", "Pooled worker goroutines waiting for a job.", prometheus.GaugeValue)
	mFramesOut   = newDesc("rexi_node_frames_out_total", "Frames queued for coordinators.", prometheus.CounterValue)
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
	mHSRefused   = newDesc("rexi_node_handshake_limit_refusals_total", "Connections refused at accept because too many were in the handshake.", prometheus.CounterValue)
	mHandshaking = newDesc("rexi_node_handshaking_connections", "Connections accepted and not yet authenticated.", prometheus.GaugeValue)
	mTombstones  = newDesc("rexi_node_tombstones", "Tombstones held (KILL_ALL refs not live).", prometheus.GaugeValue)
	mBytes       = newDesc("rexi_node_bytes_total", "Bytes read and written on coordinator connections.", prometheus.CounterValue, "direction")

	mFanouts   = newDesc("rexi_coord_fanouts_total", "Coordinators created.", prometheus.CounterValue)
	mOpen      = newDesc("rexi_coord_open_coordinators", "Coordinators not yet closed.", prometheus.GaugeValue)
	mFirings   = newDesc("rexi_coord_reaper_firings_total", "Coordinators reaped without Close.", prometheus.CounterValue)
	mKillAll   = newDesc("rexi_coord_kill_all_sent_total", "KILL_ALL frames sent.", prometheus.CounterValue)
	mNodeDowns = newDesc("rexi_coord_node_down_total", "Peer connection losses.", prometheus.CounterValue)
	mOverloads = newDesc("rexi_coord_overloads_total", "Jobs not sent because a peer's outbound buffer was full.", prometheus.CounterValue)
	mNodeOverl = newDesc("rexi_coord_node_overloads_total", "Jobs a peer refused at its live-job limit (EXIT OVERLOADED).", prometheus.CounterValue)
	mDropped   = newDesc("rexi_coord_dropped_frames_total", "Frames for refs no open coordinator owns.", prometheus.CounterValue)
	mNodesUp   = newDesc("rexi_coord_peers_up", "Peers connected.", prometheus.GaugeValue)
)

type statsCollector struct {
	n  *node.Node
	cl *coord.Client
}

var allDescs = []metricDesc{mLive, mRunning, mIdle, mFramesOut, mWrites, mStarted, mReplied, mStreamed, mKilled, mErrors, mPanics, mUnknown,
	mTombstoned, mTimeouts, mConns, mRefused, mProtoErrs, mOutputWaits, mOverloaded, mOverflows, mHSRefused, mHandshaking, mTombstones, mBytes,
	mFanouts, mOpen, mFirings, mKillAll, mNodeDowns, mOverloads, mNodeOverl, mDropped, mNodesUp}

func (c *statsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range allDescs {
		ch <- d.desc
	}
}

func (c *statsCollector) Collect(ch chan<- prometheus.Metric) {
	emit := func(d metricDesc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d.desc, d.kind, v, labels...)
	}
	s := c.n.Stats()
	emit(mLive, float64(s.Live))
	emit(mRunning, float64(s.Running))
	emit(mIdle, float64(s.Idle))
	emit(mFramesOut, float64(s.FramesOut))
	emit(mWrites, float64(s.Writes))
	emit(mStarted, float64(s.Started))
	emit(mReplied, float64(s.Replied))
	emit(mStreamed, float64(s.Streamed))
	emit(mKilled, float64(s.Killed))
	emit(mErrors, float64(s.Errors))
	emit(mPanics, float64(s.Panics))
	emit(mUnknown, float64(s.Unknown))
	emit(mTombstoned, float64(s.Tombstoned))
	emit(mTimeouts, float64(s.InitTimeouts), "init")
	emit(mTimeouts, float64(s.AckTimeouts), "ack")
	emit(mTimeouts, float64(s.Deadlines), "deadline")
	emit(mConns, float64(s.Connections))
	emit(mRefused, float64(s.Refused))
	emit(mProtoErrs, float64(s.ProtocolErrors))
	emit(mOutputWaits, float64(s.OutputWaits))
	emit(mOverloaded, float64(s.Overloaded))
	emit(mOverflows, float64(s.Overflows))
	emit(mHSRefused, float64(s.HandshakeRefusals))
	emit(mHandshaking, float64(s.Handshaking))
	emit(mTombstones, float64(s.Tombstones))
	emit(mBytes, float64(s.BytesIn), "in")
	emit(mBytes, float64(s.BytesOut), "out")
	cs := c.cl.Stats()
	emit(mFanouts, float64(cs.Fanouts))
	emit(mOpen, float64(cs.Open))
	emit(mFirings, float64(cs.ReaperFirings))
	emit(mKillAll, float64(cs.KillAllSent))
	emit(mNodeDowns, float64(cs.NodeDowns))
	emit(mOverloads, float64(cs.Overloads))
	emit(mNodeOverl, float64(cs.NodeOverloads))
	emit(mDropped, float64(cs.Dropped))
	emit(mNodesUp, float64(cs.NodesUp))
}
