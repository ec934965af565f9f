// Package reaper kills remote workers whose coordinator ended without
// cleaning up.
//
// A coordinator allocates a Table and fills it with (target, ref) pairs
// *before* it sends any DOIT, so there is no instant at which a worker can
// exist that the reaper does not know about (the race CouchDB fixed in
// rexi/fabric_streams, apache/couchdb#5152, is impossible by construction).
// A target is the one connection a job's DOIT travels on. When the
// coordinator's context ends, or the coordinator becomes unreachable
// without Close, the table is fired: KILL_ALL, batched per target, for
// every pair not known to be finished. Close on the table sends the same
// KILL_ALL itself and disarms it, so a table is killed at most once.
//
// Firing runs on the caller's goroutine (a context.AfterFunc callback or a
// runtime cleanup) and never blocks, because a Target only queues: there is
// no reaper goroutine to wake, which keeps a goroutine hand-off off the
// path from a coordinator's death to its workers' KILL_ALL.
//
// The package imports neither node nor coord: it needs only a Target that
// queues a KILL_ALL without blocking.
package reaper
