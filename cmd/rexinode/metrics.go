package main

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/rexi-go/rexi/coord"
	rexmetrics "github.com/rexi-go/rexi/metrics"
	"github.com/rexi-go/rexi/node"
)

// metrics exports the node's and the client's collectors (package
// metrics, which library users register the same way), plus the fan-out
// latency histogram of this daemon's coordinators and the build info.
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
	m.reg.MustRegister(m.latency, buildInfoGauge, rexmetrics.NewNodeCollector(n), rexmetrics.NewClientCollector(cl),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}
