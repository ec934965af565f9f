package reaper

import (
	"slices"
	"sync"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// target is a Target that records the KILL_ALLs it is handed.
type target struct {
	mu    sync.Mutex
	kills [][]uint64
}

func (tg *target) KillAll(refs []uint64) {
	tg.mu.Lock()
	tg.kills = append(tg.kills, slices.Clone(refs))
	tg.mu.Unlock()
}

func (tg *target) count() int {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	return len(tg.kills)
}

func TestFireKillsUnfinishedBatchedPerTarget(t *testing.T) {
	r := New()
	a, b, c := &target{}, &target{}, &target{}
	tb := r.Register(4)
	for i, tg := range []*target{a, b, a, c, b} {
		addPair(tb, tg, uint64(100+i))
	}
	tb.Finish(3) // c's only job finished: no KILL_ALL for c
	if r.Stats().Armed != 1 {
		t.Fatalf("a registered table is not visible to the reaper: %+v", r.Stats())
	}
	tb.Fire()
	if !slices.EqualFunc(a.kills, [][]uint64{{100, 102}}, slices.Equal) ||
		!slices.EqualFunc(b.kills, [][]uint64{{101, 104}}, slices.Equal) || c.count() != 0 {
		t.Fatalf("kills a=%v b=%v c=%v", a.kills, b.kills, c.kills)
	}
	if s := r.Stats(); s.Fired != 1 || s.KillAllSent != 2 || s.Armed != 0 {
		t.Fatalf("stats %+v, want 1 firing, 2 KILL_ALLs, nothing armed", s)
	}
}

func TestNilTargetIsNeverKilled(t *testing.T) {
	r := New()
	a := &target{}
	tb := r.Register(2)
	addPair(tb, nil, 1) // its node was down: never sent
	addPair(tb, a, 2)
	tb.Fire()
	if !slices.EqualFunc(a.kills, [][]uint64{{2}}, slices.Equal) {
		t.Fatalf("kills %v", a.kills)
	}
}

func TestCloseThenFireSendsOnce(t *testing.T) {
	r := New()
	a, b := &target{}, &target{}
	tb := r.Register(2)
	addPair(tb, a, 1)
	addPair(tb, b, 2)
	if !tb.Close() {
		t.Fatal("Close of an armed table sent nothing")
	}
	tb.Fire()
	tb.Close()
	if a.count() != 1 || b.count() != 1 {
		t.Fatalf("KILL_ALLs %d and %d, want one each from Close", a.count(), b.count())
	}
	if s := r.Stats(); s.Fired != 0 || s.KillAllSent != 2 || s.Armed != 0 {
		t.Fatalf("stats %+v", s)
	}
	if addPair(tb, a, 9) != -1 {
		t.Fatal("Add to a closed table accepted")
	}
}

func TestConcurrentFireAndClose(t *testing.T) {
	r := New()
	a := &target{}
	const tables = 500
	var wg sync.WaitGroup
	for i := 0; i < tables; i++ {
		tb := r.Register(1)
		addPair(tb, a, uint64(i+1))
		wg.Add(2)
		go func() { defer wg.Done(); tb.Fire() }()
		go func() { defer wg.Done(); tb.Close() }()
	}
	wg.Wait()
	if a.count() != tables {
		t.Fatalf("%d KILL_ALLs for %d tables: each must be killed exactly once", a.count(), tables)
	}
	if s := r.Stats(); s.Armed != 0 {
		t.Fatalf("stats %+v: every table fired or closed", s)
	}
}

// A disarmed table's arrays go to the next table: it must see none of the
// old pairs, and a late Finish on the old table must touch nothing.
func TestDisarmedTablesArraysAreReusedClean(t *testing.T) {
	r := New()
	a, b := &target{}, &target{}
	old := r.Register(4)
	for i := range 4 {
		addPair(old, a, uint64(10+i))
	}
	old.Finish(0)
	old.Close()
	old.Finish(1, 2) // after Close, as a coordinator's last batch may
	old.Fire()

	tb := r.Register(2)
	tb.Add(2, func(i int) (Target, uint64) { return b, uint64(20 + i) })
	old.Finish(3) // must not mark the new table's pair
	tb.Fire()
	if !slices.EqualFunc(b.kills, [][]uint64{{20, 21}}, slices.Equal) {
		t.Fatalf("new table's KILL_ALLs %v, want [[20 21]]", b.kills)
	}
	if len(a.kills) != 1 || !slices.Equal(a.kills[0], []uint64{11, 12, 13}) {
		t.Fatalf("old table's KILL_ALLs %v, want one from Close for 11-13", a.kills)
	}
}

// addPair adds one (target, ref) pair and returns its index.
func addPair(tb *Table, tg Target, ref uint64) int {
	return tb.Add(1, func(int) (Target, uint64) { return tg, ref })
}
