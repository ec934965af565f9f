package coord

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rexi-go/rexi/frame"
	"github.com/rexi-go/rexi/node"
	"github.com/rexi-go/rexi/secure"
)

func TestProgressImpossibleNamesTheMissingRange(t *testing.T) {
	c := newCluster(t, 3, nil, nil)
	co := mustNew(t, c.cl, context.Background(), 12)
	defer co.Close()
	jobs := c.jobs(4, 3, "rows", "3")
	for i := range jobs {
		if jobs[i].Range == Ranges(4)[2] {
			jobs[i].Handler = "crash" // every copy of range 2 fails
		}
	}
	co.Submit(jobs...)
	err := co.Stream(StreamOptions{RecvOptions: RecvOptions{Timeout: waitFor}}, func(Message) error { return nil })
	var pe *ProgressError
	if !errors.Is(err, ErrProgressImpossible) || !errors.As(err, &pe) {
		t.Fatalf("err %v, want ErrProgressImpossible", err)
	}
	if len(pe.Missing) != 1 || pe.Missing[0] != Ranges(4)[2] || !errors.Is(err, ErrWorkerExit) {
		t.Fatalf("missing %v cause %v, want range 2 and the worker's EXIT", pe.Missing, pe.Cause)
	}
}

func TestReplacementCompletesTheRing(t *testing.T) {
	c := newCluster(t, 3, nil, nil)
	co := mustNew(t, c.cl, context.Background(), 4)
	defer co.Close()
	// One copy per range, on node 0; range 1's copy crashes.
	for i, rg := range Ranges(4) {
		h := "rows"
		if i == 1 {
			h = "crash"
		}
		co.Submit(Job{Node: c.addrs[0], Handler: h, Args: []byte("5"), Range: rg})
	}
	var replaced []WorkerInfo
	rows := 0
	err := co.Stream(StreamOptions{
		RecvOptions: RecvOptions{Timeout: waitFor},
		Replace: func(failed WorkerInfo, cause error) ([]Job, error) {
			replaced = append(replaced, failed)
			return []Job{{Node: c.addrs[2], Handler: "rows", Args: []byte("5"), Range: failed.Range}}, nil
		},
	}, func(m Message) error {
		if m.Kind == KindRow {
			rows++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(replaced) != 1 || replaced[0].Range != Ranges(4)[1] || rows != 20 || co.Len() != 5 {
		t.Fatalf("replaced %v, rows %d, jobs %d; want range 1 replaced once, 20 rows, 5 jobs", replaced, rows, co.Len())
	}
}

// A node lost mid-stream: its ranges are resumed on another node after the
// rows already received, so every row arrives exactly once.
func TestMidStreamNodeLossResumesWithoutDuplicates(t *testing.T) {
	c := newCluster(t, 3, func(cfg *Config) { cfg.ReconnectMax = 50 * time.Millisecond }, nil)
	co := mustNew(t, c.cl, context.Background(), 8)
	defer co.Close()
	const perRange = 200
	for i, rg := range Ranges(8) {
		co.Submit(Job{Node: c.addrs[i%2], Handler: "rows", Args: []byte(fmt.Sprint(perRange, ":20")), Range: rg})
	}
	seen := map[string]int{}
	killed := false
	err := co.Stream(StreamOptions{
		RecvOptions: RecvOptions{Timeout: waitFor},
		Replace: func(failed WorkerInfo, cause error) ([]Job, error) {
			if !errors.Is(cause, ErrNodeDown) {
				return nil, fmt.Errorf("unexpected failure: %w", cause)
			}
			args := fmt.Sprint(perRange, ":20:", failed.Rows) // resume after what arrived
			return []Job{{Node: c.addrs[2], Handler: "rows", Args: []byte(args), Range: failed.Range}}, nil
		},
	}, func(m Message) error {
		if m.Kind != KindRow {
			return nil
		}
		key := m.Worker.Range.String() + "#" + strings.SplitN(string(m.Payload), "/", 2)[0]
		seen[key]++
		if !killed && len(seen) == 300 {
			killed = true
			c.nodes[1].Close() // node 1 dies mid-stream
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != 8*perRange {
		t.Fatalf("%d distinct rows, want %d", len(seen), 8*perRange)
	}
	for k, n := range seen {
		if n != 1 {
			t.Fatalf("row %s arrived %d times", k, n)
		}
	}
}

func TestOverloadedNodeFailsJobsTyped(t *testing.T) {
	c := newCluster(t, 1, func(cfg *Config) { cfg.OutboundLimit = 4096 }, nil)
	co := mustNew(t, c.cl, context.Background(), 100)
	defer co.Close()
	var jobs []Job
	for i := 0; i < 100; i++ {
		jobs = append(jobs, Job{Node: c.addrs[0], Handler: "echo", Args: make([]byte, 1000)})
	}
	co.Submit(jobs...)
	kinds := map[Kind]int{}
	err := co.Recv(RecvOptions{Timeout: waitFor}, func(m Message) (bool, error) {
		kinds[m.Kind]++
		if m.Kind == KindOverload && !errors.Is(m.Err, ErrOverloaded) {
			t.Errorf("overload error %v", m.Err)
		}
		return false, nil
	})
	if err != nil || kinds[KindOverload] == 0 || kinds[KindOverload]+kinds[KindReply] != 100 {
		t.Fatalf("err %v kinds %v, want some overloads and the rest replies", err, kinds)
	}
	if got := c.cl.Stats().Overloads; got != uint64(kinds[KindOverload]) {
		t.Fatalf("Overloads stat %d, %d messages", got, kinds[KindOverload])
	}
}

func TestWrongSecretIsReported(t *testing.T) {
	n, err := node.New(node.Config{Secret: []byte("the-real-one"), Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	n.Start()
	defer n.Close()
	cl, err := NewClient(Config{Nodes: []string{n.Addr()}, Secret: []byte("a-wrong-one"), Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	err = cl.WaitConnected(ctx)
	if err == nil || !strings.Contains(err.Error(), "secret") {
		t.Fatalf("WaitConnected: %v, want an error naming the secret", err)
	}
	eventually(t, "the node counts refusals", func() bool { return n.Stats().Refused > 0 })
}

// silentNode completes the handshake and then never sends a byte, like a
// frozen process.
func silentNode(t testing.TB) string {
	return fakeNode(t, func(conn net.Conn) {
		if _, err := welcomeAs(conn, frame.Welcome{Version: frame.Version, MaxPayload: frame.DefaultMaxPayload, Name: []byte("frozen")}); err == nil {
			io.Copy(io.Discard, conn)
		}
	})
}

func TestMissedHeartbeatsMeanNodeDown(t *testing.T) {
	if took := downByHeartbeats(t, silentNode(t), "echo"); took > 5*time.Second {
		t.Fatalf("node-down after %v", took)
	}
}

// downByHeartbeats submits one job to the node at addr, with a 300 ms
// heartbeat timeout, and returns how long the job took to fail as
// node-down naming missed heartbeats.
func downByHeartbeats(t *testing.T, addr, handler string) time.Duration {
	t.Helper()
	cl := connectedClient(t, Config{Nodes: []string{addr}, InsecurePlaintext: true, // the fake nodes speak plaintext
		HeartbeatInterval: 50 * time.Millisecond, HeartbeatTimeout: 300 * time.Millisecond})
	co := mustNew(t, cl, context.Background(), 1)
	defer co.Close()
	co.Submit(Job{Node: addr, Handler: handler})
	start := time.Now()
	var got error
	err := co.Recv(RecvOptions{Timeout: waitFor}, func(m Message) (bool, error) {
		got = m.Err
		return true, nil
	})
	if err != nil || !errors.Is(got, ErrNodeDown) || !strings.Contains(got.Error(), "heartbeat") {
		t.Fatalf("Recv %v, message error %v; want node-down naming missed heartbeats", err, got)
	}
	return time.Since(start)
}

// A node that trickles a frame, a byte at a time, is found down like a
// silent one: the read deadline moves on frames, and on 64 KiB of one
// still arriving, not on any byte.
func TestTricklingNodeIsFoundDown(t *testing.T) {
	addr := fakeNode(t, func(conn net.Conn) {
		if _, err := welcomeAs(conn, frame.Welcome{Version: frame.Version, MaxPayload: frame.DefaultMaxPayload, Window: 5, Name: []byte("trickle")}); err != nil {
			return
		}
		var enc frame.Encoder
		row := enc.Append(nil, frame.TypeStream, 1, make([]byte, 1<<20)) // a 1 MiB row that never ends
		for _, b := range row {
			if _, err := conn.Write([]byte{b}); err != nil {
				return
			}
			time.Sleep(20 * time.Millisecond) // the trickle itself, not a wait for anything
		}
	})
	downByHeartbeats(t, addr, "rows")
}

// One coordinator that stops reading must not stall the connection for
// another: the window is the only brake.
func TestStalledCoordinatorDoesNotStallOthers(t *testing.T) {
	c := newCluster(t, 3, nil, nil)
	stalled := mustNew(t, c.cl, context.Background(), 192)
	defer stalled.Close()
	stalled.Submit(c.jobs(64, 3, "rows", "1000")...)
	// Start its streams and then never read again.
	inits := 0
	stalled.Recv(RecvOptions{Timeout: waitFor}, func(m Message) (bool, error) {
		if m.Kind == KindStreamInit {
			stalled.Start(m.Worker.Slot)
			inits++
		}
		return inits == 192, nil
	})
	co := mustNew(t, c.cl, context.Background(), 192)
	defer co.Close()
	co.Submit(c.jobs(64, 3, "rows", "50")...)
	rows := 0
	if err := co.Stream(StreamOptions{RecvOptions: RecvOptions{Timeout: waitFor}}, func(m Message) error {
		if m.Kind == KindRow {
			rows++
		}
		return nil
	}); err != nil || rows != 64*50 {
		t.Fatalf("Stream: %v after %d rows", err, rows)
	}
	// The stalled coordinator's inbox holds at most what was acknowledged
	// on receipt (ackBudget) plus a window per worker (rows of 100 bytes).
	stalled.s.inbox.mu.Lock()
	held := len(stalled.s.inbox.cur.data)
	stalled.s.inbox.mu.Unlock()
	if bound := ackBudget + 192*node.DefaultWindow*100; held > bound {
		t.Fatalf("stalled inbox holds %d bytes of rows, more than the %d the budget and windows allow", held, bound)
	}
}

func TestFramesForClosedCoordinatorsAreDropped(t *testing.T) {
	c := newCluster(t, 1, nil, nil)
	co := mustNew(t, c.cl, context.Background(), 1)
	co.Submit(Job{Node: c.addrs[0], Handler: "echo"})
	ref := co.Worker(0).Ref
	co.Close()
	// A REPLY that crossed the KILL_ALL on the wire: nobody owns it now.
	var rb readBatch
	if err := c.cl.members.Load().peers[0].current().dispatch(frame.Frame{Type: frame.TypeReply, Ref: ref}, []byte("late"), &rb); err != nil {
		t.Fatal(err)
	}
	if got := c.cl.Stats().Dropped; got != 1 || len(rb.touched) != 0 {
		t.Fatalf("dropped %d, touched %d; want the frame dropped", got, len(rb.touched))
	}
}

// The HTTP pattern: a coordinator bound to the request; the client hangs
// up mid-stream and every worker is reaped.
func TestBoundToHTTPRequest(t *testing.T) {
	c := newCluster(t, 3, nil, nil)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		co := mustNew(t, c.cl, context.Background(), 192)
		defer co.Close()
		co.Bind(r.Context())
		co.Submit(c.jobs(64, 3, "rows", "100000")...)
		co.Stream(StreamOptions{}, func(m Message) error {
			_, err := fmt.Fprintf(w, "%s\n", m.Payload)
			w.(http.Flusher).Flush()
			return err
		})
	}))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(resp.Body)
	for i := 0; i < 100; i++ {
		if _, err := br.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
	}
	c.waitLive(t, 64) // the chosen workers stream
	at := time.Now()
	resp.Body.Close() // hang up
	c.waitReaped(t, at, time.Second)
	// Whichever came first, the reaper or the handler's deferred Close,
	// the workers were killed once: at most one KILL_ALL per node (nodes
	// whose jobs were all CANCELled need none).
	// Counted after each send, which the nodes may act on first.
	eventually(t, "a KILL_ALL counted", func() bool { return c.cl.Stats().KillAllSent >= 1 })
	if got := c.cl.Stats().KillAllSent; got > 3 {
		t.Fatalf("KILL_ALLs sent %d, want 1..3", got)
	}
}

// A node at its live-job limit refuses jobs with EXIT OVERLOADED: the
// coordinator sees a typed error (ErrNodeOverloaded) and Stream's
// replacement routes each refused range to another node.
func TestNodeOverloadRoutedToAnotherCopy(t *testing.T) {
	c := newCluster(t, 2, nil, func(cfg *node.Config) {
		if cfg.Name == "n0" {
			cfg.MaxConnJobs = 2
		}
	})
	co := mustNew(t, c.cl, context.Background(), 16)
	defer co.Close()
	for _, rg := range Ranges(8) {
		co.Submit(Job{Node: c.addrs[0], Handler: "rows", Args: []byte("10"), Range: rg})
	}
	var causes []error
	rows := 0
	err := co.Stream(StreamOptions{RecvOptions: RecvOptions{Timeout: waitFor},
		Replace: func(failed WorkerInfo, cause error) ([]Job, error) {
			causes = append(causes, cause)
			return []Job{{Node: c.addrs[1], Handler: "rows", Args: []byte("10"), Range: failed.Range}}, nil
		}}, func(m Message) error {
		if m.Kind == KindRow {
			rows++
		}
		return nil
	})
	if err != nil || rows != 80 {
		t.Fatalf("Stream: %v after %d rows, want 80", err, rows)
	}
	if len(causes) != 6 {
		t.Fatalf("%d replacements, want the 6 jobs node n0 refused", len(causes))
	}
	for _, cause := range causes {
		var we *WorkerError
		if !errors.Is(cause, ErrNodeOverloaded) || !errors.As(cause, &we) || we.Kind != frame.ExitOverloaded {
			t.Fatalf("cause %v, want an EXIT OVERLOADED *WorkerError", cause)
		}
	}
	if got := c.cl.Stats().NodeOverloads; got != 6 {
		t.Fatalf("NodeOverloads %d, want 6", got)
	}
}

// A copy whose STREAM_INIT comes late must not serve a range another
// worker already streamed part of: it would start the range over and
// rows would arrive twice (make soak caught this under node kills). It is
// cancelled, and Replace resumes the range after the rows delivered.
func TestLateCopyDoesNotStartAStreamedRangeOver(t *testing.T) {
	c := newCluster(t, 2, func(cfg *Config) { cfg.InsecurePlaintext = true }, func(cfg *node.Config) { cfg.InsecurePlaintext = true })
	cancelled := make(chan uint64, 4)
	late := scriptedNode(t, func(enc *frame.Encoder, f frame.Frame) []byte {
		if f.Type == frame.TypeCancel {
			cancelled <- f.Ref
		}
		return nil // its STREAM_INIT never comes
	})
	cl := connectedClient(t, Config{Nodes: []string{c.addrs[0], c.addrs[1], late}, InsecurePlaintext: true, Secret: secret})
	co := mustNew(t, cl, context.Background(), 3)
	defer co.Close()
	// Rows of 4 KiB, so that the node cannot finish before it is closed
	// at the 50th row, however slowly the callback runs: past the 256 KiB
	// the coordinator acknowledges on receipt (about 63 of these rows), a
	// row is acknowledged only once consumed, and the node may send just
	// its window (5) more. So at most about 120 of the 300 rows are out
	// when the 50th is consumed. With 20-byte rows, acknowledged on receipt
	// all, a slow callback let the node send all 300 and its LAST first.
	const rows, rowSize = 300, 4096
	whole := Ranges(1)[0]
	args := []byte(fmt.Sprint(rows, ":", rowSize))
	if _, err := co.Submit(Job{Node: c.addrs[0], Handler: "rows", Args: args, Range: whole}, Job{Node: late, Handler: "rows", Args: args, Range: whole}); err != nil {
		t.Fatal(err)
	}
	var replaced []WorkerInfo
	seen := map[string]int{}
	err := co.Stream(StreamOptions{
		RecvOptions: RecvOptions{Timeout: waitFor},
		Replace: func(failed WorkerInfo, cause error) ([]Job, error) {
			replaced = append(replaced, failed)
			return []Job{{Node: c.addrs[1], Handler: "rows", Args: []byte(fmt.Sprint(rows, ":", rowSize, ":", failed.Rows)), Range: failed.Range}}, nil
		},
	}, func(m Message) error {
		if m.Kind == KindRow {
			if seen[strings.SplitN(string(m.Payload), "/", 2)[0]]++; len(seen) == 50 {
				c.nodes[0].Close() // the chosen worker's node goes mid-stream
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(replaced) != 1 || replaced[0].Node != c.addrs[0] || replaced[0].Rows < 50 {
		t.Fatalf("replaced %+v, want the first node's worker, after its rows", replaced)
	}
	if len(seen) != rows {
		t.Fatalf("%d distinct rows, want %d", len(seen), rows)
	}
	for k, n := range seen {
		if n != 1 {
			t.Fatalf("row %s arrived %d times", k, n)
		}
	}
	select {
	case <-cancelled:
	case <-time.After(waitFor):
		t.Fatal("the late copy was never cancelled")
	}
}

// Client.Close does not wait out a node that stalls a reconnection's
// handshake: closing ends the handshake at once, not at DialTimeout.
func TestCloseEndsAStalledHandshake(t *testing.T) {
	stalled := make(chan struct{})
	var conns atomic.Int32
	addr := fakeNode(t, func(conn net.Conn) {
		if conns.Add(1) == 1 { // the first connection: up, then lost
			_, _ = welcomeAs(conn, frame.Welcome{Version: frame.Version, MaxPayload: frame.DefaultMaxPayload, Window: 5, Name: []byte("n")})
			return
		}
		if conns.Load() == 2 {
			close(stalled)
		}
		_, _ = io.Copy(io.Discard, conn) // reads HELLO, never answers
	})
	cl, err := NewClient(Config{Nodes: []string{addr}, InsecurePlaintext: true, Secret: secret, Logger: testLogger(), DialTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	<-stalled
	start := time.Now()
	cl.Close()
	if took := time.Since(start); took > waitFor {
		t.Fatalf("Close took %v", took)
	}
}

// On an encrypted connection a RECORD is not a frame, and what counts as
// progress is what records carry, not their bytes on the wire: a node
// that seals a frame a byte per record (33 bytes on the wire), however
// fast, is found down too.
func TestTricklingEncryptedNodeIsFoundDown(t *testing.T) {
	addr := fakeNode(t, func(conn net.Conn) {
		key, _ := secure.GenerateKey()
		h, err := secure.NewHandshake(secure.Config{Key: key, Secret: secret}, false)
		if err != nil {
			return
		}
		read := func() []byte { // one NOISE frame's payload
			f, _, _, err := readOneFrame(conn, frame.Decoder{MaxPayload: 1024})
			if err != nil {
				return nil
			}
			return f.Payload
		}
		if _, _, err := h.Read(nil, read()); err != nil { // message 1
			return
		}
		msg2, _, _ := h.Write(nil, nil)
		if _, err := conn.Write(secure.NoiseFrame(nil, msg2)); err != nil {
			return
		}
		hello, sess, err := h.Read(nil, read()) // message 3, and the HELLO in it
		if err != nil || sess == nil {
			return
		}
		if _, err := frame.ParseHello(hello); err != nil {
			return
		}
		w := frame.Welcome{Version: frame.Version, MaxPayload: frame.DefaultMaxPayload, Window: 5, Name: []byte("trickle")}
		if _, err := conn.Write(sess.Send.Seal(nil, frame.AppendWelcome(nil, w))); err != nil {
			return
		}
		// Nothing more until the coordinator speaks, as a node does: it
		// takes bytes after its first record for a broken handshake.
		if _, err := conn.Read(make([]byte, 1)); err != nil {
			return
		}
		var enc frame.Encoder
		row := enc.Append(nil, frame.TypeStream, 1, make([]byte, 1<<20)) // a 1 MiB row that never ends
		for len(row) > 0 {
			// 400 records of a byte each every 20 ms: 660 KB/s on the wire,
			// 20 KB/s of the frame.
			var burst []byte
			for i := 0; i < 400 && len(row) > 0; i++ {
				burst, row = sess.Send.Seal(burst, row[:1]), row[1:]
			}
			if _, err := conn.Write(burst); err != nil {
				return
			}
			time.Sleep(20 * time.Millisecond) // the trickle itself, not a wait for anything
		}
	})
	cl := connectedClient(t, Config{Nodes: []string{addr}, HeartbeatInterval: 50 * time.Millisecond, HeartbeatTimeout: 300 * time.Millisecond})
	co := mustNew(t, cl, context.Background(), 1)
	defer co.Close()
	co.Submit(Job{Node: addr, Handler: "rows"})
	if down := nodeDownOf(t, co); !strings.Contains(down.Error(), "heartbeat") {
		t.Fatalf("job ended with %v, want node-down naming missed heartbeats", down)
	}
}

// A node that answers every heartbeat keeps an idle connection up, even
// with a heartbeat timeout under two intervals: the frames of a read
// count for the deadline once they are read, not at the next read.
func TestEchoedHeartbeatsKeepAnIdleConnectionUp(t *testing.T) {
	var echoed atomic.Int32
	echo := scriptedNode(t, func(enc *frame.Encoder, f frame.Frame) []byte {
		if f.Type == frame.TypeHeartbeat {
			echoed.Add(1)
			return enc.AppendEmpty(nil, frame.TypeHeartbeat, f.Ref)
		}
		return nil
	})
	cl := connectedClient(t, Config{Nodes: []string{echo}, InsecurePlaintext: true,
		HeartbeatInterval: 300 * time.Millisecond, HeartbeatTimeout: 500 * time.Millisecond})
	eventually(t, "six heartbeats echoed", func() bool { return echoed.Load() >= 6 })
	if d := cl.Stats().NodeDowns; d != 0 {
		t.Fatalf("%d node-downs on an idle connection echoing every heartbeat", d)
	}
}

// A receive loop that stops at the first of a lost connection's node-down
// messages leaves the others for the next loop: each of its jobs fails
// exactly once, and none is left waiting for ever.
func TestNodeDownsAfterAStopAreNotLost(t *testing.T) {
	addr := silentNode(t)
	cl := connectedClient(t, Config{Nodes: []string{addr}, InsecurePlaintext: true,
		HeartbeatInterval: 50 * time.Millisecond, HeartbeatTimeout: 300 * time.Millisecond})
	co := mustNew(t, cl, context.Background(), 4)
	defer co.Close()
	for range 4 {
		if _, err := co.Submit(Job{Node: addr, Handler: "echo"}); err != nil {
			t.Fatal(err)
		}
	}
	stop := errors.New("stop at the first")
	if err := co.Recv(RecvOptions{Timeout: waitFor}, func(Message) (bool, error) { return false, stop }); !errors.Is(err, stop) {
		t.Fatalf("first Recv: %v, want the callback's error", err)
	}
	downs := 0
	err := co.Recv(RecvOptions{Timeout: waitFor}, func(m Message) (bool, error) {
		if m.Kind == KindNodeDown {
			downs++
		}
		return false, nil
	})
	if err != nil || downs != 3 {
		t.Fatalf("second Recv: %v after %d node-downs, want nil after 3", err, downs)
	}
}
