// Package bench runs the anchor workloads of ../shared/WORKLOAD.md — W-cast,
// W-stream, W-reap and W-conc — against any set of rexi nodes: in-process
// ones in this package's go test benchmarks, running daemons from
// `rexinode bench`. Results carry p50/p99/mean latencies per fan-out.
package bench
