// Package metrics exports a rexi node's and a rexi client's counters as
// Prometheus collectors, the ones rexinode serves on /metrics:
//
//	reg := prometheus.NewRegistry()
//	reg.MustRegister(metrics.NewNodeCollector(n), metrics.NewClientCollector(cl))
//	http.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
//
// Values are read from the node's and client's atomic counters at scrape
// time: the collectors add nothing to the job path. Node metrics are named
// rexi_node_*, with per-handler series labelled "handler"; client metrics
// rexi_coord_*, with per-node series labelled "node" (its address).
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
)

// desc is a metric's description and value type.
type desc struct {
	d    *prometheus.Desc
	kind prometheus.ValueType
}

func newDesc(name, help string, kind prometheus.ValueType, labels ...string) desc {
	return desc{prometheus.NewDesc(name, help, labels, nil), kind}
}

func describe(ch chan<- *prometheus.Desc, ds []desc) {
	for _, d := range ds {
		ch <- d.d
	}
}

// emitter sends const metrics to a Collect channel.
type emitter chan<- prometheus.Metric

func (e emitter) emit(d desc, v float64, labels ...string) {
	e <- prometheus.MustNewConstMetric(d.d, d.kind, v, labels...)
}
