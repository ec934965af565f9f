// Package node is the server side of rexi: a gnet v2 event loop that
// accepts coordinator connections, authenticates them (PROTOCOL.md section
// 3), and runs jobs — registered handlers — on worker goroutines.
//
// The event loop decodes frames in place and never blocks: DOIT starts a
// worker goroutine; ACK, START, CANCEL and KILL_ALL are handled on the loop
// by signalling the job, without a goroutine per frame. Workers append their
// output to a per-connection buffer that the loop flushes in one write for
// many frames; the bytes waiting per connection are bounded, and a worker
// that would exceed the bound waits (context-aware). A worker whose
// streaming window is full queues up to another window of rows in the
// node, which the loop sends as ACKs arrive, before it waits: a short
// stream's goroutine ends without waiting for an ACK at all.
//
// A handler registered with the Streaming option runs only once its job is
// STARTed: the node sends STREAM_INIT for it on the loop, and a copy
// CANCELled before START costs no goroutine at all.
//
// A worker never outlives the reason it runs: it is killed when its
// coordinator cancels it, sends KILL_ALL, or loses the connection, and it is
// stopped with an EXIT at its deadline or a stream timeout. Only handlers
// registered with Handle can run; that is the node's security boundary.
//
// Handlers that never block can instead run on the event loop itself
// (HandleReply, HandleStream): a job then costs no goroutine, context or
// channel, and its rows are pulled into the connection's buffer as its
// window opens. A RowSource that also implements MoreRows has its LAST
// sent right after its last row, without waiting for an ACK.
//
// The package knows nothing of coordinators beyond the wire protocol.
//
// Goroutines: a Node's own goroutines all end in Close. But gnet, the
// event loop underneath, starts a worker pool when its package is
// initialised, whose two goroutines live as long as the process. A test
// of a program that imports node and checks for leaked goroutines with
// go.uber.org/goleak ignores exactly those:
//
//	func TestMain(m *testing.M) {
//		var opts []goleak.Option
//		for _, fn := range node.ProcessGoroutines {
//			opts = append(opts, goleak.IgnoreAnyFunction(fn))
//		}
//		goleak.VerifyTestMain(m, opts...)
//	}
package node
