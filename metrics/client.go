package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rexi-go/rexi/coord"
)

var (
	mFanouts     = newDesc("rexi_coord_fanouts_total", "Coordinators created.", prometheus.CounterValue)
	mOpen        = newDesc("rexi_coord_open_coordinators", "Coordinators not yet closed.", prometheus.GaugeValue)
	mFirings     = newDesc("rexi_coord_reaper_firings_total", "Coordinators reaped without Close.", prometheus.CounterValue)
	mKillAll     = newDesc("rexi_coord_kill_all_sent_total", "KILL_ALL requests sent, one per node with unfinished jobs (Close and reaper).", prometheus.CounterValue)
	mNodeDowns   = newDesc("rexi_coord_node_down_total", "Peer connection losses.", prometheus.CounterValue)
	mOverloads   = newDesc("rexi_coord_overloads_total", "Jobs not sent because a peer's outbound buffer was full.", prometheus.CounterValue)
	mNodeOverl   = newDesc("rexi_coord_node_overloads_total", "Jobs a peer refused at its live-job limit (EXIT OVERLOADED).", prometheus.CounterValue)
	mDropped     = newDesc("rexi_coord_dropped_frames_total", "Frames for refs no open coordinator owns.", prometheus.CounterValue)
	mNodesUp     = newDesc("rexi_coord_peers_up", "Peers connected.", prometheus.GaugeValue)
	mNodeState   = newDesc("rexi_coord_node_state", "1 for each node's current state (connecting, up, down, removing), by node address.", prometheus.GaugeValue, "node", "state")
	clientDescs  = []desc{mFanouts, mOpen, mFirings, mKillAll, mNodeDowns, mOverloads, mNodeOverl, mDropped, mNodesUp, mNodeState}
	nodeStateAll = []coord.NodeState{coord.NodeConnecting, coord.NodeUp, coord.NodeDown, coord.NodeRemoving}
)

// NewClientCollector returns a collector of cl's metrics: its totals and
// each node's connection state.
func NewClientCollector(cl *coord.Client) prometheus.Collector { return clientCollector{cl} }

type clientCollector struct{ cl *coord.Client }

func (c clientCollector) Describe(ch chan<- *prometheus.Desc) { describe(ch, clientDescs) }

func (c clientCollector) Collect(ch chan<- prometheus.Metric) {
	e := emitter(ch)
	s := c.cl.Stats()
	e.emit(mFanouts, float64(s.Fanouts))
	e.emit(mOpen, float64(s.Open))
	e.emit(mFirings, float64(s.ReaperFirings))
	e.emit(mKillAll, float64(s.KillAllSent))
	e.emit(mNodeDowns, float64(s.NodeDowns))
	e.emit(mOverloads, float64(s.Overloads))
	e.emit(mNodeOverl, float64(s.NodeOverloads))
	e.emit(mDropped, float64(s.Dropped))
	e.emit(mNodesUp, float64(s.NodesUp))
	seen := map[string]bool{}
	for _, n := range c.cl.Nodes() {
		if seen[n.Addr] { // re-added while its old session was still removing: one series per address
			continue
		}
		seen[n.Addr] = true
		for _, st := range nodeStateAll {
			v := 0.0
			if n.State == st {
				v = 1
			}
			e.emit(mNodeState, v, n.Addr, st.String())
		}
	}
}
