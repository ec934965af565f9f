package coord

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/rexi-go/rexi/frame"
	"github.com/rexi-go/rexi/node"
)

// A job its node can never take is refused by Submit, typed, before
// anything is sent; one that fits exactly goes out and is answered.
func TestJobOverTheNodesMaxPayloadIsRefused(t *testing.T) {
	const max = 4096
	c := newCluster(t, 1, nil, func(cfg *node.Config) { cfg.MaxPayload = max })
	sess := c.cl.members.Load().peers[0].current()
	fixed := frame.DoitPayloadLen(frame.Doit{Handler: []byte("echo")}, sess.doitOpt)

	co := mustNew(t, c.cl, context.Background(), 2)
	defer co.Close()
	tooLarge := Job{Node: c.addrs[0], Handler: "echo", Args: make([]byte, max-fixed+1)}
	if _, err := co.Submit(Job{Node: c.addrs[0], Handler: "echo"}, tooLarge); !errors.Is(err, ErrJobTooLarge) {
		t.Fatalf("Submit %v, want ErrJobTooLarge", err)
	}
	if co.Len() != 0 {
		t.Fatalf("%d jobs submitted, want none", co.Len())
	}
	exact := bytes.Repeat([]byte("x"), max-fixed)
	if _, err := co.Submit(Job{Node: c.addrs[0], Handler: "echo", Args: exact}); err != nil {
		t.Fatal(err)
	}
	err := co.Recv(RecvOptions{Timeout: waitFor}, func(m Message) (bool, error) {
		if m.Err != nil || !bytes.Equal(m.Payload, exact) {
			t.Errorf("reply of %d bytes, err %v", len(m.Payload), m.Err)
		}
		return false, nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A burst of large DOITs does not leave the session's write buffers at
// the burst's size once it is written.
func TestWriteBuffersGivenBackAfterABurst(t *testing.T) {
	c := newCluster(t, 1, nil, nil)
	co := mustNew(t, c.cl, context.Background(), 8)
	defer co.Close()
	jobs := make([]Job, 8)
	for i := range jobs {
		jobs[i] = Job{Node: c.addrs[0], Handler: "echo", Args: make([]byte, 256<<10)}
	}
	if _, err := co.Submit(jobs...); err != nil {
		t.Fatal(err)
	}
	if err := co.Recv(RecvOptions{Timeout: waitFor}, func(m Message) (bool, error) { return false, m.Err }); err != nil {
		t.Fatal(err)
	}
	sess := c.cl.members.Load().peers[0].current()
	sess.mu.Lock()
	out, wire := cap(sess.out), cap(sess.wireArr)
	sess.mu.Unlock()
	if out > readBufferSize || wire > readBufferSize {
		t.Fatalf("write buffers of %d and %d bytes kept after the burst, want at most %d", out, wire, readBufferSize)
	}
}

// mebibyteRowsNode answers each DOIT with five rows of 1 MiB (a window
// of them), and a LAST if last is set: the bytes a node within the
// protocol may make a coordinator hold before it consumes any.
func mebibyteRowsNode(t *testing.T, last bool) string {
	addr, _ := rowsNode(t, 5, bytes.Repeat([]byte("r"), 1<<20), last)
	return addr
}

// A node within the protocol may send a window of rows per job, each up to
// MaxPayload, before the coordinator consumes any. Past the client's
// MaxHeldBytes, the coordinator holding the most is ended with
// ErrHeldBytes, and others go on; what it held is given back at Close.
func TestHeldBytesEndTheCoordinatorHoldingTheMost(t *testing.T) {
	node := mebibyteRowsNode(t, true)
	cl := connectedClient(t, Config{Nodes: []string{node}, InsecurePlaintext: true, MaxHeldBytes: 8 << 20})
	greedy := mustNew(t, cl, context.Background(), 4)
	defer greedy.Close()
	for range 4 { // 20 MiB, and nothing consumes them
		if _, err := greedy.Submit(Job{Node: node, Handler: "rows"}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "the client to end the greedy coordinator", func() bool { return cl.Stats().HeldShed == 1 })
	eventually(t, "what it held to be given back before its Close", func() bool { return cl.Stats().HeldBytes == 0 })
	err := greedy.Recv(RecvOptions{Timeout: waitFor}, func(Message) (bool, error) { return false, nil })
	if !errors.Is(err, ErrHeldBytes) {
		t.Fatalf("greedy coordinator's Recv: %v, want ErrHeldBytes", err)
	}

	other := mustNew(t, cl, context.Background(), 1) // 5 MiB, consumed
	defer other.Close()
	if _, err := other.Submit(Job{Node: node, Handler: "rows"}); err != nil {
		t.Fatal(err)
	}
	rows := 0
	if err := other.Recv(RecvOptions{Timeout: waitFor}, func(m Message) (bool, error) {
		if m.Kind == KindRow {
			rows++
		}
		return false, nil
	}); err != nil || rows != 5 {
		t.Fatalf("other coordinator: %v after %d rows, want 5 rows and nil", err, rows)
	}
	greedy.Close()
	other.Close()
	if s := cl.Stats(); s.HeldShed != 1 || s.HeldBytes != 0 {
		t.Fatalf("after Close: %d coordinators ended, %d bytes held; want 1 and 0", s.HeldShed, s.HeldBytes)
	}
}

// What a receive loop stopped before (its callback said done) waits for
// the next loop; a coordinator the client ends for what it holds gives it
// back at once, even if the application keeps it open and never receives
// again, so the client holds no more than MaxHeldBytes for it.
func TestShedDropsWhatALoopLeftForTheNext(t *testing.T) {
	node := mebibyteRowsNode(t, false)
	cl := connectedClient(t, Config{Nodes: []string{node}, InsecurePlaintext: true, MaxHeldBytes: 12 << 20})
	idle := mustNew(t, cl, context.Background(), 2)
	defer idle.Close()
	for range 2 { // 10 MiB
		if _, err := idle.Submit(Job{Node: node, Handler: "rows"}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "10 rows held", func() bool { return cl.Stats().HeldBytes >= 10<<20 })
	if err := idle.Recv(RecvOptions{Timeout: waitFor}, func(Message) (bool, error) { return true, nil }); err != nil {
		t.Fatal(err)
	}
	if held := cl.Stats().HeldBytes; held < 9<<20 {
		t.Fatalf("%d bytes held after a loop that took one row of ten, want the other nine still held", held)
	}

	greedy := mustNew(t, cl, context.Background(), 1) // 5 MiB more: over the limit
	defer greedy.Close()
	if _, err := greedy.Submit(Job{Node: node, Handler: "rows"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the client to end the idle coordinator", func() bool { return cl.Stats().HeldShed == 1 })
	eventually(t, "what it set aside to be given back without another Recv", func() bool { return cl.Stats().HeldBytes <= 6<<20 })
	if err := idle.Recv(RecvOptions{Timeout: waitFor}, func(Message) (bool, error) { return false, nil }); !errors.Is(err, ErrHeldBytes) {
		t.Fatalf("the idle coordinator's next Recv: %v, want ErrHeldBytes", err)
	}
	idle.Close()
	greedy.Close()
	if held := cl.Stats().HeldBytes; held != 0 {
		t.Fatalf("%d bytes held after both closed", held)
	}
}

// A coordinator ended for what it holds stops in the middle of the batch
// it is dispatching: the callback running when the client ended it is
// the last, and the rest is given back at once.
func TestHeldBytesStopTheLoopMidBatch(t *testing.T) {
	node := mebibyteRowsNode(t, false)
	cl := connectedClient(t, Config{Nodes: []string{node}, InsecurePlaintext: true, MaxHeldBytes: 8 << 20})
	greedy := mustNew(t, cl, context.Background(), 4)
	defer greedy.Close()
	for range 4 {
		if _, err := greedy.Submit(Job{Node: node, Handler: "rows"}); err != nil {
			t.Fatal(err)
		}
	}
	calls := 0
	err := greedy.Recv(RecvOptions{Timeout: waitFor}, func(Message) (bool, error) {
		if calls++; calls == 1 { // a slow callback, holding its batch, while the rest arrives
			eventually(t, "the client to end the coordinator", func() bool { return cl.Stats().HeldShed == 1 })
		}
		return false, nil
	})
	if !errors.Is(err, ErrHeldBytes) || calls != 1 {
		t.Fatalf("Recv: %v after %d callbacks, want ErrHeldBytes after 1", err, calls)
	}
	if held := cl.Stats().HeldBytes; held != 0 {
		t.Fatalf("%d bytes still counted as held after the loop returned", held)
	}
}

// Client.shedHeld may look at a coordinator as soon as it is registered:
// New registers it whole (its context set), so shedding while coordinators
// are being made and closed is safe.
func TestShedWhileCoordinatorsAreMade(t *testing.T) {
	cl := connectedClient(t, Config{Nodes: []string{silentNode(t)}, InsecurePlaintext: true})
	cl.stats.held.Add(1 << 40) // always over: every scan sheds what it finds
	defer cl.stats.held.Add(-1 << 40)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 2000 {
			co, err := cl.New(context.Background(), 1)
			if err != nil {
				t.Error(err)
				return
			}
			co.Close()
		}
	}()
	for {
		select {
		case <-done:
			return
		default:
			cl.shedHeld()
		}
	}
}

// What a coordinator held is given back exactly once, whichever way the
// read that brought it ended: a frame the reader refuses, or a node's
// ERROR, right after rows in the same read, left the client's total off
// for good.
func TestHeldBytesBalanceWhenAReadEndsInError(t *testing.T) {
	for _, tc := range []struct {
		name string
		tail func(enc *frame.Encoder, ref uint64, out []byte) []byte
	}{
		{"malformed", func(enc *frame.Encoder, ref uint64, out []byte) []byte {
			return enc.Append(out, frame.TypeStreamInit, ref, []byte("x"))
		}},
		{"node ERROR", func(enc *frame.Encoder, ref uint64, out []byte) []byte {
			return enc.AppendError(out, 0, frame.CodeShuttingDown, "bye")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			node := forgingNode(t, func(enc *frame.Encoder, doit frame.Frame) []byte {
				out := enc.Append(nil, frame.TypeStream, doit.Ref, bytes.Repeat([]byte("r"), 1000))
				return tc.tail(enc, doit.Ref, out)
			})
			cl, co := oneJobOn(t, node, "rows")
			_ = co.Recv(RecvOptions{Timeout: waitFor}, func(m Message) (bool, error) { return m.Kind == KindNodeDown, nil })
			co.Close()
			if h := cl.Stats().HeldBytes; h != 0 {
				t.Fatalf("HeldBytes %d after every coordinator closed, want 0", h)
			}
		})
	}
}
