// Package netns runs rexi over a real, impaired network: three `rexinode
// serve` processes and one coordinator, each in its own Linux network
// namespace with its own address on 10.77.0.0/24, joined by veth pairs to
// a bridge in a fifth namespace.
//
//	rexi-c   10.77.0.10  coordinator (this test binary, re-executed)
//	rexi-n1  10.77.0.11  rexinode serve -listen 10.77.0.11:7070
//	rexi-n2  10.77.0.12  rexinode serve -listen 10.77.0.12:7070
//	rexi-n3  10.77.0.13  rexinode serve -listen 10.77.0.13:7070
//	rexi-br  bridge rexi-br0, the other end of every veth
//
// Every node link drops 1 % of the TCP packets it receives (iptables
// statistic match on the node's INPUT chain; the kernel has no netem), and
// the coordinator reaches each node through an in-process toxiproxy that
// adds 1–4 ms of latency each way. Connections are encrypted, as in
// production.
//
// The coordinator runs inside rexi-c: the parent test (TestNetns) re-executes
// its own binary under `ip netns exec rexi-c` with REXI_NETNS_SCENARIO set,
// and TestNetnsCoordinator runs that scenario with package coord. The child
// asks the parent for faults (cut a link, restart a node, check a node's live
// workers) with JSON lines on stdout and reads the answers on stdin.
//
// It needs Linux (the test files are built only there), root, iproute2 and
// iptables; it takes under a minute and runs only with REXI_NETNS=1: `make
// test-netns`. Without it, or without the privileges, it skips saying why.
// Everything it creates is named rexi-* and torn down at the end, also on a
// failure, a panic or SIGINT/SIGTERM; what a SIGKILLed run left is swept by
// the next one (runs are serialised by flock on /run/rexi-netns.lock).
//
// Scenarios (one child process each, in this order):
//
//	rows_exact       50 W-stream fan-outs (Q=64 N=3): every row once, nothing replaced
//	node_cut         a node's veth down mid-stream: typed node-down within the
//	                 heartbeat timeout, ranges resumed elsewhere, every row once;
//	                 link up: no live worker, the client reconnects
//	rolling_restart  SIGTERM/restart each node in turn under continuous fan-outs
//	membership       a Resolver's answer goes {n1,n2} → {n1,n2,n3} → {n2,n3}
//	                 under fan-outs placed by coord.ShardMap over Client.Nodes
//	wstream_p50      W-stream latency with +1 ms each way, printed for bench/README.md
package netns
