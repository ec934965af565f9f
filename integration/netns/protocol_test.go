//go:build linux

package netns

import (
	"sort"
	"time"
)

// The parent (TestNetns, root namespace) and the coordinator child
// (TestNetnsCoordinator, inside rexi-c) talk in JSON lines: the child
// writes msgPrefix + a request on stdout, among its test output, and every
// request but "result" gets exactly one reply line on its stdin. The
// child is the one that knows when a fault must happen (after so many
// rows, once a fan-out is running), the parent the one that owns the
// links and the node processes.
const (
	envScenario = "REXI_NETNS_SCENARIO"
	msgPrefix   = "@@rexi-netns "
	secret      = "netns-cluster-secret"
)

// Requests (Op):
//
//	cut, heal   bring the veth of Nodes down or up, inside their namespaces
//	restart     SIGTERM each of Nodes, wait for exit 0, start it again on its address;
//	            with Busy, only once the node has live workers, so the drain has work to wait for
//	live0       wait until each of Nodes reports rexi_node_live_workers 0
//	loss        add (On) or remove the 1 % loss rule of Nodes
//	result      no reply: the parent logs Line and keeps Values
type request struct {
	Op     string             `json:"op"`
	Nodes  []int              `json:"nodes,omitempty"` // 0-based: node i is rexi-n(i+1)
	On     bool               `json:"on,omitempty"`
	Busy   bool               `json:"busy,omitempty"`
	Line   string             `json:"line,omitempty"`
	Values map[string]float64 `json:"values,omitempty"`
}

type reply struct {
	Err    string             `json:"err,omitempty"`
	Values map[string]float64 `json:"values,omitempty"`
}

// allNodes is every node's index.
var allNodes = []int{0, 1, 2}

// scenario is one coordinator-side run. Scenarios register themselves from
// their own files, so one can be left out by a build tag.
type scenario struct {
	name            string
	order           int           // position in TestNetns
	latency, jitter int           // toxiproxy latency toxic each way, ms: delay in [latency-jitter, latency+jitter)
	bound           time.Duration // the child's whole run, with the fan-outs' own bounds inside it
	run             func(e *coordEnv)
}

var scenarios = map[string]scenario{}

func register(s scenario) { scenarios[s.name] = s }

func orderedScenarios() []scenario {
	out := make([]scenario, 0, len(scenarios))
	for _, s := range scenarios {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].order < out[j].order })
	return out
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
