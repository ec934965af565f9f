// Package integration holds the fault, hostile-input and load tests that
// run real rexinode processes (built once per test binary) against a
// coordinator in the test process: node and coordinator crashes, frozen
// nodes, network faults through a TCP fault proxy, slow readers, hostile
// peers, and load. `make test` runs the short versions; `make soak` the
// long ones (REXI_SOAK=1).
package integration
