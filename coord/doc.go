// Package coord is the client side of rexi: connections to the nodes, and
// coordinators that fan jobs out to them and collect what comes back — the
// Go counterpart of CouchDB's fabric_streams, rexi_utils:recv and the
// worker cleaner.
//
// A Client keeps one session per node: one authenticated TCP connection
// with its own output queue, writer state, reader goroutine and list of
// the coordinators with jobs on it, all of which end together. Losing the
// connection fails every job sent on it in one sweep; the client then
// reconnects with a jittered backoff, and the new connection is a new
// session, so nothing queued for the old one can reach it. Many
// coordinators share the client.
//
// A Coordinator is one request's fan-out:
//
//	co, err := client.New(ctx, 192) // ref table allocated and registered with the reaper
//	defer co.Close()                // KILL_ALL for whatever is not finished, on every path
//	co.Submit(jobs...)              // table filled first, then DOITs batched per node
//	err = co.Stream(opts, onRow)    // one copy per range chosen, rows acked, replacements
//
// The worker-leak race of the CouchDB seed change cannot happen: every
// job's (node, ref) pair is in the reaper's table before its DOIT can be
// written, so whenever the coordinator ends — its context is cancelled,
// a bound context (Bind) ends, or it is dropped without Close — the reaper
// kills every worker it started. Nothing has to be drained to be released.
//
// Nothing here blocks on a node: Submit to a node that is down yields a
// KindNodeDown message at once, output beyond a node's bound fails with
// KindOverload, and a slow consumer only fills its own workers' windows.
// A node that breaks the protocol (rows past its window, malformed
// frames, features it was not asked for) loses its connection; one that
// keeps to it can still fill windows of MaxPayload rows, so the client
// bounds what it holds for all its coordinators (Config.MaxHeldBytes) and
// ends the coordinator holding the most with ErrHeldBytes.
package coord
