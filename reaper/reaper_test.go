package reaper

import (
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// recorder is a Sender that records KILL_ALLs and signals each one.
type recorder struct {
	mu    sync.Mutex
	kills map[int][]uint64
	count int
	sent  chan struct{}
}

func newRecorder() *recorder {
	return &recorder{kills: map[int][]uint64{}, sent: make(chan struct{}, 100)}
}

func (r *recorder) KillAll(node int, refs []uint64) {
	r.mu.Lock()
	r.kills[node] = append(r.kills[node], refs...)
	r.count++
	r.mu.Unlock()
	r.sent <- struct{}{}
}

func (r *recorder) waitKills(t *testing.T, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		select {
		case <-r.sent:
		case <-time.After(10 * time.Second):
			t.Fatalf("waited 10s for KILL_ALL %d of %d", i+1, n)
		}
	}
}

func TestFireKillsUnfinishedBatchedPerNode(t *testing.T) {
	rec := newRecorder()
	r := New(rec)
	defer r.Close()
	tb := r.Register(4)
	for i, node := range []int{0, 1, 0, 2, 1} {
		tb.Add(node, uint64(100+i))
	}
	tb.Finish(3) // node 2's only job finished: no KILL_ALL for node 2
	if r.Stats().Armed != 1 {
		t.Fatalf("a registered table is not visible to the reaper: %+v", r.Stats())
	}
	tb.Fire()
	rec.waitKills(t, 2)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if !slices.Equal(rec.kills[0], []uint64{100, 102}) || !slices.Equal(rec.kills[1], []uint64{101, 104}) || len(rec.kills[2]) != 0 {
		t.Fatalf("kills %v", rec.kills)
	}
	// The firing is counted after its last KILL_ALL was handed over.
	deadline := time.Now().Add(10 * time.Second)
	for s := r.Stats(); s.Fired != 1 || s.KillAllSent != 2 || s.Armed != 0; s = r.Stats() {
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v, want 1 firing, 2 KILL_ALLs, nothing armed", s)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestCloseThenFireSendsOnce(t *testing.T) {
	rec := newRecorder()
	r := New(rec)
	defer r.Close()
	tb := r.Register(2)
	tb.Add(0, 1)
	tb.Add(1, 2)
	if !tb.Close() {
		t.Fatal("Close of an armed table sent nothing")
	}
	rec.waitKills(t, 2)
	tb.Fire()
	tb.Close()
	// A second table fired after the first proves the reaper processed
	// the first table's Fire (the queue is FIFO).
	tb2 := r.Register(1)
	tb2.Add(0, 3)
	tb2.Fire()
	rec.waitKills(t, 1)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.count != 3 {
		t.Fatalf("%d KILL_ALLs, want 2 from Close and 1 from the second table", rec.count)
	}
	if tb.Add(0, 9) != -1 {
		t.Fatal("Add to a closed table accepted")
	}
}

func TestFireAfterReaperClosedStillKills(t *testing.T) {
	rec := newRecorder()
	r := New(rec)
	tb := r.Register(1)
	tb.Add(0, 7)
	r.Close()
	tb.Fire()
	rec.waitKills(t, 1)
}

func TestConcurrentFireAndClose(t *testing.T) {
	rec := newRecorder()
	rec.sent = make(chan struct{}, 10000)
	r := New(rec)
	const tables = 500
	var wg sync.WaitGroup
	for i := 0; i < tables; i++ {
		tb := r.Register(1)
		tb.Add(0, uint64(i+1))
		wg.Add(2)
		go func() { defer wg.Done(); tb.Fire() }()
		go func() { defer wg.Done(); tb.Close() }()
	}
	wg.Wait()
	r.Close()
	if rec.count != tables {
		t.Fatalf("%d KILL_ALLs for %d tables: each must be killed exactly once", rec.count, tables)
	}
}
