//go:build linux

package netns

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rexi-go/rexi/coord"
)

// Membership through a resolver while fan-outs run: the client starts with
// no configured node and a resolver (polled every 200 ms) that answers
// {n1, n2}; the scenario then makes it answer {n1, n2, n3}, then {n2, n3}.
// A goroutine runs fan-outs back to back, each placed by the shard map
// (Q=16 × N=2) over the nodes Client.Nodes reports up at that moment.
// Checked: each set change shows in Nodes (n3 joins as up with its
// handshake name; n1 leaves the list once its jobs are over), fan-outs
// complete on every set, each with every row exactly once, none placed on
// n1 after its removal, and n1 has no live worker after it is removed.
// A fan-out placed just before a change may name a node Submit no longer
// knows (ErrUnknownNode): it is placed again, as an application would.
func init() {
	register(scenario{name: "membership", order: 4, latency: 3, jitter: 2, bound: 90 * time.Second, run: membership})
}

// placedLog counts completed fan-outs per node set they were placed on.
type placedLog struct {
	mu       sync.Mutex
	bySet    map[string]int
	replaced int
	unknown  int // placements redone after ErrUnknownNode
	failures []string
}

func membership(e *coordEnv) {
	const q, n, rows, size = 16, 2, 50, 20
	var answer atomic.Pointer[[]string]
	resolveTo := func(nodes ...int) {
		var s []string
		for _, i := range nodes {
			s = append(s, e.addrs[i])
		}
		answer.Store(&s)
	}
	resolveTo(0, 1)
	cfg := e.config()
	cfg.Nodes = nil
	cfg.Resolver = coord.ResolverFunc(func(context.Context) ([]string, error) { return *answer.Load(), nil })
	cfg.ResolveInterval = 200 * time.Millisecond
	cl := e.client(cfg)
	up := func() []string {
		var s []string
		for _, ni := range cl.Nodes() {
			if ni.State == coord.NodeUp {
				s = append(s, ni.Addr)
			}
		}
		slices.Sort(s)
		return s
	}
	info := func(addr string) (coord.NodeInfo, bool) {
		for _, ni := range cl.Nodes() {
			if ni.Addr == addr {
				return ni, true
			}
		}
		return coord.NodeInfo{}, false
	}
	setOf := func(nodes ...int) string {
		var s []string
		for _, i := range nodes {
			s = append(s, e.addrs[i])
		}
		slices.Sort(s)
		return strings.Join(s, ",")
	}
	e.eventually("n1 and n2 up from the resolver", func() bool { return strings.Join(up(), ",") == setOf(0, 1) })

	runs := &placedLog{bySet: map[string]int{}}
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { stop(); wg.Wait() }()
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			live := up()
			jobs, err := shardJobs(q, n, live)
			if errors.Is(err, coord.ErrNotEnoughNodes) {
				time.Sleep(5 * time.Millisecond) // a node reconnecting: place again shortly
				continue
			}
			f := &fanout{rows: rows, size: size, jobs: jobs, pick: pickUp(cl, up)}
			if err == nil {
				err = f.run(context.Background(), cl)
			}
			runs.mu.Lock()
			runs.replaced += len(f.replaced)
			switch {
			case errors.Is(err, coord.ErrUnknownNode):
				runs.unknown++ // placed on a node removed since: place again
			case err != nil:
				runs.failures = append(runs.failures, fmt.Sprintf("fan-out on %v failed: %v", live, err))
			default:
				if xerr := f.exact(); xerr != nil {
					runs.failures = append(runs.failures, fmt.Sprintf("fan-out on %v not exact: %v", live, xerr))
				} else {
					runs.bySet[strings.Join(live, ",")]++
				}
			}
			runs.mu.Unlock()
		}
	}()
	completedOn := func(set string, k int) {
		e.eventually(fmt.Sprintf("%d fan-outs placed on %s to complete", k, set), func() bool {
			runs.mu.Lock()
			defer runs.mu.Unlock()
			return runs.bySet[set] >= k
		})
	}
	completedOn(setOf(0, 1), 5)

	// The states each node goes through as the client reports them, for
	// the log: a join shows connecting → up, a removal up → removing (while
	// jobs still run there) → gone.
	seen := map[string][]string{}
	watch := func(addr string) (coord.NodeInfo, bool) {
		ni, ok := info(addr)
		st := "gone"
		if ok {
			st = ni.State.String()
		}
		if h := seen[addr]; len(h) == 0 || h[len(h)-1] != st {
			seen[addr] = append(h, st)
		}
		return ni, ok
	}
	resolveTo(0, 1, 2)
	joined := e.eventually("n3 to join as up", func() bool {
		ni, ok := watch(e.addrs[2])
		return ok && ni.State == coord.NodeUp
	})
	if ni, _ := info(e.addrs[2]); ni.Name != "n3" {
		e.t.Errorf("n3 joined with name %q, want n3 from its handshake", ni.Name)
	}
	completedOn(setOf(0, 1, 2), 5)

	resolveTo(1, 2)
	removed := e.eventually("n1 to leave the node list", func() bool {
		_, ok := watch(e.addrs[0])
		return !ok
	})
	e.must("live0", 0)
	completedOn(setOf(1, 2), 5)
	e.must("live0", 0) // still nothing on n1: no fan-out went there after its removal

	stop()
	wg.Wait()
	for _, f := range runs.failures {
		e.t.Error(f)
	}
	e.must("live0", allNodes...)
	e.result(map[string]float64{"join_ms": ms(joined), "remove_ms": ms(removed)},
		"membership: fan-outs completed exact on {n1,n2} %d, {n1,n2,n3} %d, {n2,n3} %d; n3 %s in %v after the resolver named it, n1 %s in %v after it dropped it, then 0 live workers on n1; %d placements redone (ErrUnknownNode), %d ranges replaced",
		runs.bySet[setOf(0, 1)], runs.bySet[setOf(0, 1, 2)], runs.bySet[setOf(1, 2)],
		strings.Join(seen[e.addrs[2]], "→"), joined.Round(time.Millisecond),
		strings.Join(seen[e.addrs[0]], "→"), removed.Round(time.Millisecond), runs.unknown, runs.replaced)
}
