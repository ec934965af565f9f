package coord

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/rexi-go/rexi/frame"
)

func TestReplyFanout(t *testing.T) {
	c := newCluster(t, 3, nil, nil)
	co := mustNew(t, c.cl, context.Background(), 192)
	defer co.Close()
	if _, err := co.Submit(c.jobs(64, 3, "echo", "hi")...); err != nil {
		t.Fatal(err)
	}
	got := 0
	err := co.Recv(RecvOptions{Timeout: waitFor}, func(m Message) (bool, error) {
		if m.Kind != KindReply || string(m.Payload) != "hi" {
			t.Errorf("message %v %q %v", m.Kind, m.Payload, m.Err)
		}
		got++
		return false, nil
	})
	if err != nil || got != 192 {
		t.Fatalf("Recv: %v after %d replies, want nil after 192", err, got)
	}
}

func TestStreamFanoutOneCopyPerRange(t *testing.T) {
	c := newCluster(t, 3, func(cfg *Config) { cfg.Checksum = true }, nil)
	co := mustNew(t, c.cl, context.Background(), 192)
	defer co.Close()
	if _, err := co.Submit(c.jobs(64, 3, "rows", "10")...); err != nil {
		t.Fatal(err)
	}
	rowsBySlot := map[int]int{}
	rangeOwner := map[Range]int{}
	lasts := 0
	err := co.Stream(StreamOptions{RecvOptions: RecvOptions{Timeout: waitFor}}, func(m Message) error {
		if owner, ok := rangeOwner[m.Worker.Range]; ok && owner != m.Worker.Slot {
			t.Errorf("range %v served by slots %d and %d", m.Worker.Range, owner, m.Worker.Slot)
		}
		rangeOwner[m.Worker.Range] = m.Worker.Slot
		switch m.Kind {
		case KindRow:
			rowsBySlot[m.Worker.Slot]++
		case KindLast:
			lasts++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, n := range rowsBySlot {
		total += n
	}
	if len(rangeOwner) != 64 || total != 640 || lasts != 64 {
		t.Fatalf("ranges %d rows %d lasts %d, want 64, 640, 64", len(rangeOwner), total, lasts)
	}
	co.Close()
	c.waitLive(t, 0)
}

func TestStreamSplitShardsOfUnequalSize(t *testing.T) {
	c := newCluster(t, 3, nil, nil)
	co := mustNew(t, c.cl, context.Background(), 16)
	defer co.Close()
	var jobs []Job
	for i, q := range []int{4, 8, 2} { // each node holds the ring split differently
		for _, rg := range Ranges(q) {
			jobs = append(jobs, Job{Node: c.addrs[i], Handler: "rows", Args: []byte("3"), Range: rg})
		}
	}
	if _, err := co.Submit(jobs...); err != nil {
		t.Fatal(err)
	}
	var served []Range
	err := co.Stream(StreamOptions{RecvOptions: RecvOptions{Timeout: waitFor}}, func(m Message) error {
		if m.Kind == KindLast {
			served = append(served, m.Worker.Range)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var total uint64
	for _, r := range served {
		total += rangeLen(r)
	}
	if total != ringSize || len(gaps(served)) != 0 {
		t.Fatalf("served ranges %v do not cover the ring exactly once", served)
	}
}

func TestWorkerExitIsTyped(t *testing.T) {
	c := newCluster(t, 3, nil, nil)
	co := mustNew(t, c.cl, context.Background(), 1)
	defer co.Close()
	co.Submit(Job{Node: c.addrs[1], Handler: "crash"})
	var werr *WorkerError
	co.Recv(RecvOptions{Timeout: waitFor}, func(m Message) (bool, error) {
		if m.Kind != KindExit || !errors.Is(m.Err, ErrWorkerExit) || !errors.As(m.Err, &werr) {
			t.Fatalf("message %v err %v, want a typed EXIT", m.Kind, m.Err)
		}
		return true, nil
	})
	if werr.Kind != frame.ExitPanic || !strings.Contains(werr.Reason, "boom") || werr.Stack == "" || werr.Worker.Node != c.addrs[1] {
		t.Fatalf("worker error %+v", werr)
	}
}

func TestTimeoutNamesTheSilentWorkers(t *testing.T) {
	c := newCluster(t, 3, nil, nil)
	co := mustNew(t, c.cl, context.Background(), 3)
	defer co.Close()
	co.Submit(Job{Node: c.addrs[0], Handler: "echo"}, Job{Node: c.addrs[1], Handler: "block", Range: Range{5, 9}}, Job{Node: c.addrs[2], Handler: "block"})
	err := co.Recv(RecvOptions{MessageTimeout: 300 * time.Millisecond}, func(m Message) (bool, error) { return false, nil })
	var te *TimeoutError
	if !errors.Is(err, ErrTimeout) || !errors.As(err, &te) {
		t.Fatalf("err %v, want a *TimeoutError", err)
	}
	if len(te.Pending) != 2 || te.Pending[0].Node != c.addrs[1] || te.Pending[0].Range != (Range{5, 9}) || te.Pending[1].Slot != 2 {
		t.Fatalf("pending %+v, want slots 1 and 2", te.Pending)
	}
	if !strings.Contains(err.Error(), c.addrs[2]) {
		t.Fatalf("error %q does not name the node", err)
	}
}

func TestSubmitToDownNodeFailsAtOnce(t *testing.T) {
	c := newCluster(t, 3, nil, nil)
	c.nodes[2].Close()
	eventually(t, "client notices node 2 is down", func() bool { return !c.cl.NodeUp(c.addrs[2]) })
	co := mustNew(t, c.cl, context.Background(), 2)
	defer co.Close()
	start := time.Now()
	co.Submit(Job{Node: c.addrs[2], Handler: "echo"}, Job{Node: c.addrs[0], Handler: "echo"})
	kinds := map[Kind]int{}
	err := co.Recv(RecvOptions{Timeout: waitFor}, func(m Message) (bool, error) {
		kinds[m.Kind]++
		if m.Kind == KindNodeDown && !errors.Is(m.Err, ErrNodeDown) {
			t.Errorf("node-down error %v is not ErrNodeDown", m.Err)
		}
		return false, nil
	})
	if err != nil || kinds[KindNodeDown] != 1 || kinds[KindReply] != 1 {
		t.Fatalf("err %v kinds %v", err, kinds)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("Submit to a down node took %v", time.Since(start))
	}
}

func TestNodeLossFailsJobsInOneSweepAndReconnects(t *testing.T) {
	c := newCluster(t, 3, func(cfg *Config) { cfg.ReconnectMax = 100 * time.Millisecond }, nil)
	co := mustNew(t, c.cl, context.Background(), 192)
	defer co.Close()
	co.Submit(c.jobs(64, 3, "block", "")...)
	c.waitLive(t, 192)
	addr := c.addrs[1]
	c.nodes[1].Close()
	down := 0
	err := co.Recv(RecvOptions{Timeout: waitFor}, func(m Message) (bool, error) {
		if m.Kind != KindNodeDown || m.Worker.Node != addr {
			t.Fatalf("got %v from %s", m.Kind, m.Worker.Node)
		}
		down++
		return down == 64, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	co.Close()
	// A node restarted on the same address is reconnected to.
	c.nodes[1] = restartNode(t, addr, "n1")
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := c.cl.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	co2 := mustNew(t, c.cl, context.Background(), 1)
	defer co2.Close()
	co2.Submit(Job{Node: addr, Handler: "echo", Args: []byte("back")})
	if err := co2.Recv(RecvOptions{Timeout: waitFor}, func(m Message) (bool, error) { return m.Kind == KindReply, nil }); err != nil {
		t.Fatal(err)
	}
}

// A receive loop that stops early leaves the rest of its batch for the
// next one: a Recv that returns at the first INIT, then a Stream, still
// sees every INIT and completes.
func TestMessagesAfterAnEarlyStopAreKept(t *testing.T) {
	c := newCluster(t, 3, nil, nil)
	co := mustNew(t, c.cl, context.Background(), 24)
	defer co.Close()
	co.Submit(c.jobs(8, 3, "rows", "5")...)
	eventually(t, "all 24 INITs queued", func() bool {
		co.s.inbox.mu.Lock()
		defer co.s.inbox.mu.Unlock()
		return len(co.s.inbox.cur.entries) == 24
	})
	first := -1
	if err := co.Recv(RecvOptions{Timeout: waitFor}, func(m Message) (bool, error) {
		first = m.Worker.Slot
		return true, nil // stop at once: 23 INITs stay queued
	}); err != nil {
		t.Fatal(err)
	}
	// Recv consumed the first INIT; that worker is the caller's to decide
	// on, and here it is cancelled: its range has two other copies.
	co.Cancel(first)
	rows := 0
	err := co.Stream(StreamOptions{RecvOptions: RecvOptions{Timeout: waitFor}}, func(m Message) error {
		if m.Kind == KindRow {
			rows++
		}
		return nil
	})
	if err != nil || rows != 8*5 {
		t.Fatalf("Stream: %v after %d rows, want 40", err, rows)
	}
}

// Close names in KILL_ALL only jobs that may still run: replies that
// arrived but were never received count as finished (a node would keep a
// tombstone for each ref it does not know).
func TestCloseSkipsJobsWhoseFinalMessageArrived(t *testing.T) {
	c := newCluster(t, 3, nil, nil)
	co := mustNew(t, c.cl, context.Background(), 30)
	co.Submit(c.jobs(10, 3, "echo", "x")...)
	eventually(t, "30 replies in the inbox", func() bool {
		co.s.inbox.mu.Lock()
		defer co.s.inbox.mu.Unlock()
		return len(co.s.inbox.cur.entries) == 30
	})
	co.Close()
	if s := c.cl.Stats(); s.KillAllSent != 0 {
		t.Fatalf("%d KILL_ALLs sent for jobs that had all replied", s.KillAllSent)
	}
}

// A range served by a LAST without rows can be the piece that completes the
// ring; the workers that asked to stream the other ranges must start then,
// not wait for the timeout.
func TestStreamStartsWhenARowlessLastCompletesTheRing(t *testing.T) {
	c := newCluster(t, 1, nil, nil)
	co := mustNew(t, c.cl, context.Background(), 2)
	defer co.Close()
	rs := Ranges(2)
	queued := func(n int) { // wait until the inbox holds n events, in arrival order
		deadline := time.Now().Add(waitFor)
		for {
			co.s.inbox.mu.Lock()
			got := len(co.s.inbox.cur.entries)
			co.s.inbox.mu.Unlock()
			if got >= n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("inbox holds %d events, want %d", got, n)
			}
			time.Sleep(time.Millisecond)
		}
	}
	if _, err := co.Submit(Job{Node: c.addrs[0], Handler: "rows", Args: []byte("5"), Range: rs[0]}); err != nil {
		t.Fatal(err)
	}
	queued(1) // range 0's STREAM_INIT
	if _, err := co.Submit(Job{Node: c.addrs[0], Handler: "rows", Args: []byte("0"), Range: rs[1]}); err != nil {
		t.Fatal(err)
	}
	queued(2) // range 1's LAST, after the INIT
	rows := 0
	err := co.Stream(StreamOptions{RecvOptions: RecvOptions{Timeout: waitFor}}, func(m Message) error {
		if m.Kind == KindRow {
			rows++
		}
		return nil
	})
	if err != nil || rows != 5 {
		t.Fatalf("Stream: %v after %d rows, want nil after 5", err, rows)
	}
}
