//go:build linux

package netns

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"
)

// A rolling restart of all three nodes while fan-outs run without pause:
// one node at a time gets SIGTERM while it has workers streaming (it
// drains: new jobs and connections are refused, running workers finish),
// must exit 0, and starts again on the same address; the next one goes
// only once the client is connected to it again. Two goroutines run
// Q=16 × N=3 fan-outs of 200 rows per range back to back throughout, with
// a Replace that resumes a lost range on a node that is up. Every fan-out
// that completes has every row exactly once; none fails (with two of three
// nodes up, every range keeps a copy or a replacement); a fan-out was in
// flight at every SIGTERM; and no node keeps a live worker at the end
// while the client is still connected.
func init() {
	register(scenario{name: "rolling_restart", order: 3, latency: 3, jitter: 2, bound: 90 * time.Second, run: rollingRestart})
}

// runLog records the fan-outs of goroutines running them back to back.
type runLog struct {
	mu        sync.Mutex
	completed int
	failed    int
	replaced  int
	failures  []string
	spans     [][2]time.Time // start and end of every fan-out, completed or not
}

func (l *runLog) add(start time.Time, f *fanout, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.spans = append(l.spans, [2]time.Time{start, time.Now()})
	l.replaced += len(f.replaced)
	if err != nil {
		l.failed++
		if len(l.failures) < 10 {
			l.failures = append(l.failures, err.Error())
		}
		return
	}
	l.completed++
}

func (l *runLog) done() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.completed
}

// inFlight counts the fan-outs running at instant at (those still running
// when asked are not in spans yet, so callers ask after the fact).
func (l *runLog) inFlight(at time.Time) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, s := range l.spans {
		if s[0].Before(at) && s[1].After(at) {
			n++
		}
	}
	return n
}

func rollingRestart(e *coordEnv) {
	const q, n, rows, size, workers, perStep = 16, 3, 200, 20, 2, 5
	cl := e.client(e.config())
	jobs, err := shardJobs(q, n, e.addrs)
	if err != nil {
		e.t.Fatal(err)
	}
	runs := &runLog{}
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { stop(); wg.Wait() }() // also when a check below fails the test
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				f := &fanout{rows: rows, size: size, jobs: jobs, pick: pickUp(cl, func() []string { return e.addrs })}
				start := time.Now()
				err := f.run(context.Background(), cl)
				if err == nil {
					if xerr := f.exact(); xerr != nil {
						err = fmt.Errorf("completed fan-out not exact: %w", xerr)
					}
				} else {
					err = fmt.Errorf("fan-out failed: %w (replacements %v, causes %v)", err, f.replaced, f.causes)
				}
				runs.add(start, f, err)
			}
		}()
	}
	more := func(k int) {
		target := runs.done() + k
		e.eventually(fmt.Sprintf("%d more fan-outs to complete", k), func() bool { return runs.done() >= target })
	}
	more(perStep)
	var steps []string
	sigterms := make([]time.Time, numNodes)
	for i := range numNodes {
		before := runs.done()
		sigterms[i] = time.Now()
		rep, err := e.ask(request{Op: "restart", Nodes: []int{i}, Busy: true})
		if err != nil {
			e.t.Fatal(err)
		}
		back := e.eventually(fmt.Sprintf("the client to reconnect to n%d", i+1), func() bool { return cl.NodeUp(e.addrs[i]) })
		v := func(k string) float64 { return rep.Values[fmt.Sprintf("n%d_%s", i+1, k)] }
		steps = append(steps, fmt.Sprintf("n%d drained with %.0f workers streaming in %.0f ms, restarted after %.0f ms, reconnected %v later, %d fan-outs completed meanwhile",
			i+1, v("streaming"), v("drain_ms"), v("down_ms"), back.Round(time.Millisecond), runs.done()-before))
		more(perStep)
	}
	stop()
	wg.Wait()
	for _, f := range runs.failures {
		e.t.Error(f)
	}
	for i, at := range sigterms {
		if runs.inFlight(at) == 0 {
			e.t.Errorf("no fan-out was running when n%d got SIGTERM", i+1)
		}
	}
	e.must("live0", allNodes...)
	e.result(map[string]float64{"completed": float64(runs.done()), "replaced": float64(runs.replaced)},
		"rolling_restart: %d fan-outs completed, every row once, %d failed, %d ranges replaced; %s",
		runs.done(), runs.failed, runs.replaced, strings.Join(steps, "; "))
}
