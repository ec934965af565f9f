// Package reaper kills remote workers whose coordinator ended without
// cleaning up.
//
// A coordinator allocates a Table and fills it with (node, ref) pairs
// *before* it sends any DOIT, so there is no instant at which a worker can
// exist that the reaper does not know about (the race CouchDB fixed in
// rexi/fabric_streams, apache/couchdb#5152, is impossible by construction).
// When the coordinator's context ends, or the coordinator becomes
// unreachable without Close, the table is fired: one goroutine per Reaper
// sends KILL_ALL, batched per node, for every pair not known to be finished.
// Close on the table sends the same KILL_ALL itself and disarms it, so a
// table is killed at most once.
//
// The package imports neither node nor coord: it needs only a Sender that
// queues a KILL_ALL for a node without blocking.
package reaper
