// Package bench runs the anchor workloads — W-cast, W-stream, W-reap and
// W-conc, described in bench/README.md — against any set of rexi nodes:
// in-process ones in this package's go test benchmarks, running daemons
// from `rexinode bench`. Results carry p50/p99/mean latencies per fan-out.
package bench
