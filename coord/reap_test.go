package coord

import (
	"context"
	"errors"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"
)

// The seed's scenarios: whenever the coordinator ends, every worker it
// started on every node is gone within 50 ms.
const reapBound = 50 * time.Millisecond

// (a) cancelled while Submit is running, at a random moment.
func TestReapCancelledDuringSubmit(t *testing.T) {
	c := newCluster(t, 3, nil, nil)
	for trial := 0; trial < 20; trial++ {
		ctx, cancel := context.WithCancel(context.Background())
		co := mustNew(t, c.cl, ctx, 192)
		done := make(chan time.Time, 1)
		go func() {
			runtime.Gosched()
			cancel()
			done <- time.Now()
		}()
		co.Submit(c.jobs(64, 3, "block", "")...)
		c.waitReaped(t, <-done, reapBound)
		co.Close()
	}
}

// (b) cancelled between two DOIT batches: the reaper's KILL_ALL overtakes
// the DOITs of the later batches, and the nodes' tombstones stop them.
func TestReapBetweenDoitBatches(t *testing.T) {
	c := newCluster(t, 3, nil, nil)
	ctx, cancel := context.WithCancel(context.Background())
	co := mustNew(t, c.cl, ctx, 192)
	defer co.Close()
	var reapedAt time.Time
	co.s.hookBetweenBatches = func(node int) {
		if node != 1 {
			return
		}
		// Fire as the cancelled context would, but let Submit go on
		// sending: the KILL_ALLs are queued before the DOITs of nodes 1, 2.
		reapedAt = time.Now()
		co.s.table.Fire()
		eventually(t, "the reaper fired", func() bool { return c.cl.Stats().ReaperFirings == 1 })
	}
	co.Submit(c.jobs(64, 3, "block", "")...)
	eventually(t, "node 0 killed its 64 workers", func() bool { return c.nodes[0].Stats().Killed == 64 })
	for i, n := range c.nodes[1:] {
		eventually(t, "64 DOITs stopped by tombstones", func() bool { return n.Stats().Tombstoned == 64 })
		if s := n.Stats(); s.Started != 0 {
			t.Errorf("node %d started %d workers after their KILL_ALL", i+1, s.Started)
		}
	}
	c.waitReaped(t, reapedAt, reapBound)
	cancel()
}

// (c) cancelled while waiting for STREAM_INITs.
func TestReapWhileWaitingForInits(t *testing.T) {
	c := newCluster(t, 3, nil, nil)
	ctx, cancel := context.WithCancel(context.Background())
	co := mustNew(t, c.cl, ctx, 192)
	defer co.Close()
	co.Submit(c.jobs(64, 3, "rows", "10")...)
	inits := 0
	var at time.Time
	err := co.Recv(RecvOptions{Timeout: waitFor}, func(m Message) (bool, error) {
		if m.Kind == KindStreamInit {
			inits++
		}
		if inits == 192 {
			at = time.Now()
			cancel()
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	c.waitReaped(t, at, reapBound)
}

// (d) cancelled mid-stream.
func TestReapMidStream(t *testing.T) {
	c := newCluster(t, 3, nil, nil)
	ctx, cancel := context.WithCancel(context.Background())
	co := mustNew(t, c.cl, ctx, 192)
	defer co.Close()
	co.Submit(c.jobs(64, 3, "rows", "100000")...)
	rows := 0
	var at time.Time
	err := co.Stream(StreamOptions{RecvOptions: RecvOptions{Timeout: waitFor}}, func(m Message) error {
		rows++
		if rows == 500 {
			at = time.Now()
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Stream returned %v, want context.Canceled", err)
	}
	c.waitReaped(t, at, reapBound)
}

func TestCloseThenCancelSendsOneKillAllPerNode(t *testing.T) {
	c := newCluster(t, 3, nil, nil)
	ctx, cancel := context.WithCancel(context.Background())
	co := mustNew(t, c.cl, ctx, 192)
	co.Submit(c.jobs(64, 3, "block", "")...)
	c.waitLive(t, 192)
	co.Close()
	if got := c.cl.Stats().KillAllSent; got != 3 {
		t.Fatalf("Close sent %d KILL_ALLs, want one per node (3)", got)
	}
	c.waitLive(t, 0)
	cancel()
	co.Close()
	// A second coordinator reaped by cancellation is a barrier: once its
	// KILL_ALLs are counted, the reaper has processed everything before.
	ctx2, cancel2 := context.WithCancel(context.Background())
	co2 := mustNew(t, c.cl, ctx2, 3)
	co2.Submit(c.jobs(1, 3, "block", "")...)
	c.waitLive(t, 3)
	cancel2()
	c.waitLive(t, 0)
	// The reaper counts a firing after its last KILL_ALL, which the nodes
	// may act on first: wait for the count before reading the total.
	eventually(t, "the reaper's firing counted", func() bool { return c.cl.Stats().ReaperFirings == 1 })
	if s := c.cl.Stats(); s.KillAllSent != 6 || s.ReaperFirings != 1 {
		t.Fatalf("KILL_ALLs %d, reaper firings %d; want 6 (3 from Close, 3 from the reaped one) and 1", s.KillAllSent, s.ReaperFirings)
	}
	co2.Close()
}

func TestReplacementsAreReapedToo(t *testing.T) {
	c := newCluster(t, 3, nil, nil)
	ctx, cancel := context.WithCancel(context.Background())
	co := mustNew(t, c.cl, ctx, 3)
	defer co.Close()
	co.Submit(c.jobs(1, 3, "block", "")...)
	co.Submit(c.jobs(2, 3, "block", "")...) // added later: the table grows
	c.waitLive(t, 9)
	at := time.Now()
	cancel()
	c.waitReaped(t, at, reapBound)
}

func TestTableRegisteredBeforeSubmit(t *testing.T) {
	c := newCluster(t, 3, nil, nil)
	co := mustNew(t, c.cl, context.Background(), 192)
	if s := c.cl.Stats(); s.ReaperArmed != 1 || s.Open != 1 {
		t.Fatalf("before Submit: armed %d open %d, want 1 1", s.ReaperArmed, s.Open)
	}
	co.Close()
	if s := c.cl.Stats(); s.ReaperArmed != 0 || s.Open != 0 || s.KillAllSent != 0 {
		t.Fatalf("after Close of an empty coordinator: %+v", s)
	}
}

// A coordinator dropped without Close (its goroutine returned early) is
// reaped once it is unreachable.
func TestAbandonedCoordinatorIsReaped(t *testing.T) {
	c := newCluster(t, 3, nil, nil)
	func() {
		co := mustNew(t, c.cl, context.Background(), 192)
		co.Submit(c.jobs(64, 3, "block", "")...)
		c.waitLive(t, 192)
		runtime.KeepAlive(co) // reachable until all its workers run; dropped on return
	}()
	eventually(t, "the abandoned coordinator reaped", func() bool {
		runtime.GC()
		return c.live() == 0
	})
	// Counted after the KILL_ALLs, which the nodes may act on first.
	eventually(t, "one firing counted and nothing open", func() bool {
		s := c.cl.Stats()
		return s.ReaperFirings == 1 && s.Open == 0
	})
}

// The same when the goroutine died in a recovered panic before Close.
func TestCoordinatorLostInRecoveredPanicIsReaped(t *testing.T) {
	c := newCluster(t, 3, nil, nil)
	func() {
		defer func() { recover() }()
		co := mustNew(t, c.cl, context.Background(), 192)
		co.Submit(c.jobs(64, 3, "block", "")...)
		c.waitLive(t, 192)
		runtime.KeepAlive(co)
		panic("request handler bug")
	}()
	eventually(t, "the coordinator reaped", func() bool {
		runtime.GC()
		return c.live() == 0
	})
}

// Stress: 1 000 fan-outs of 192 jobs, each cancelled at a random point.
func TestStressRandomCancellation(t *testing.T) {
	c := newCluster(t, 3, nil, nil)
	runtime.GC()
	base := runtime.NumGoroutine()
	fanouts := 1000
	if testing.Short() {
		fanouts = 100
	}
	jobs := c.jobs(64, 3, "rows", "20:50")
	for i := 0; i < fanouts; i++ {
		ctx, cancel := context.WithCancel(context.Background())
		co := mustNew(t, c.cl, ctx, 192)
		stopAt := rand.IntN(4)
		if stopAt == 0 {
			cancel()
		}
		co.Submit(jobs...)
		if stopAt == 1 {
			cancel()
		}
		rows, limit := 0, rand.IntN(600)
		err := co.Stream(StreamOptions{RecvOptions: RecvOptions{Timeout: waitFor}}, func(m Message) error {
			rows++
			if stopAt >= 2 && rows == limit {
				cancel()
			}
			return nil
		})
		if err != nil && !errors.Is(err, context.Canceled) {
			t.Fatalf("fan-out %d: %v", i, err)
		}
		if stopAt == 3 {
			co.Close() // some end by Close, the rest by cancellation
		}
		cancel()
		co.Close()
	}
	c.waitLive(t, 0)
	eventually(t, "handler goroutines returned", func() bool { return c.running() == 0 })
	// Idle pooled worker goroutines on the nodes are kept for reuse.
	eventually(t, "goroutines back to the baseline", func() bool {
		var idle int64
		for _, n := range c.nodes {
			idle += n.Stats().Idle
		}
		return runtime.NumGoroutine()-int(idle) <= base
	})
}

// A coordinator used without a deferred Close stays alive while its receive
// loop runs: garbage collection during Stream must not reap it.
func TestNoReapingWhileReceiving(t *testing.T) {
	c := newCluster(t, 3, nil, nil)
	rows := 0
	err := func() error {
		co := mustNew(t, c.cl, context.Background(), 48)
		co.Submit(c.jobs(16, 3, "rows", "200:10")...)
		return co.Stream(StreamOptions{RecvOptions: RecvOptions{Timeout: waitFor}}, func(m Message) error {
			if m.Kind == KindRow {
				rows++
				if rows%50 == 0 {
					runtime.GC() // would run the cleanup if co were unreachable
				}
			}
			return nil
		})
	}()
	if err != nil || rows != 16*200 {
		t.Fatalf("Stream: %v after %d rows, want %d", err, rows, 16*200)
	}
}
