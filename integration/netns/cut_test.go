//go:build linux

package netns

import (
	"context"
	"errors"
	"time"

	"github.com/rexi-go/rexi/coord"
)

// A node cut off mid-stream: n2's veth goes down in its namespace while a
// fan-out streams from it. Nothing tells the coordinator (no RST, no FIN
// can cross), so only its heartbeats notice: every lost worker must fail
// with a typed node-down within the 1 s heartbeat timeout (plus margin for
// the check interval and a busy machine), Stream's Replace resumes each
// lost range on another node after the rows already received, and every
// row arrives exactly once. Once the link is back, n2 has killed its
// orphaned workers (no live worker anywhere while the client is still
// connected), the client reconnects on its own, and n2 serves a fan-out
// again.
func init() {
	register(scenario{name: "node_cut", order: 2, latency: 3, jitter: 2, bound: time.Minute, run: nodeCut})
}

// detectBound is the heartbeat timeout (1 s) plus margin: the timeout is
// checked every 1/8 of it, and a 2-core machine runs 5 processes here.
const detectBound = 3 * time.Second

func nodeCut(e *coordEnv) {
	const q, rows, size, cutAfter, victim = 16, 400, 20, 1000, 1
	cl := e.client(e.config())
	ranges := coord.Ranges(q)
	jobs := make([]coord.Job, q)
	for i, rg := range ranges {
		jobs[i] = coord.Job{Node: e.addrs[i%2], Range: rg} // odd ranges on the victim, n2
	}
	spares := []string{e.addrs[2], e.addrs[0]}
	var cutAt time.Time
	unfinished := 0 // the victim's ranges without a LAST when it was cut
	var f *fanout
	f = &fanout{rows: rows, size: size, jobs: jobs,
		pick: func(string) string { return spares[len(f.replaced)%len(spares)] },
		onRow: func(total int) error {
			if total != cutAfter || !cutAt.IsZero() {
				return nil
			}
			for i, rg := range ranges {
				if i%2 == victim && f.lasts[rg] == 0 {
					unfinished++
				}
			}
			if _, err := e.ask(request{Op: "cut", Nodes: []int{victim}}); err != nil {
				return err
			}
			cutAt = time.Now()
			return nil
		}}
	if err := f.run(context.Background(), cl); err != nil {
		e.t.Fatalf("fan-out failed: %v (replacements %v, causes %v)", err, f.replaced, f.causes)
	}
	if cutAt.IsZero() {
		e.t.Fatalf("the fan-out ended after %d rows, before the cut at row %d", f.total, cutAfter)
	}
	if err := f.exact(); err != nil {
		e.t.Fatal(err)
	}
	if len(f.replaced) != unfinished || unfinished == 0 {
		e.t.Fatalf("%d replacements, want one per range n2 had not finished at the cut (%d): %v", len(f.replaced), unfinished, f.replaced)
	}
	resumedMid := 0
	for k, w := range f.replaced {
		if w.Node != e.addrs[victim] {
			e.t.Errorf("replaced %v, which was not on the cut node", w)
		}
		if !errors.Is(f.causes[k], coord.ErrNodeDown) {
			e.t.Errorf("replacement cause %v, want a typed node-down (errors.Is coord.ErrNodeDown)", f.causes[k])
		}
		if f.resumed[k] > 0 {
			resumedMid++
		}
	}
	if resumedMid == 0 {
		e.t.Errorf("no replacement resumed after rows already received (starts %v)", f.resumed)
	}
	detect := f.at[0].Sub(cutAt)
	if detect > detectBound {
		e.t.Errorf("node-down %v after the cut, want within the 1s heartbeat timeout (bound %v)", detect, detectBound)
	}

	e.must("heal", victim)
	reconnect := e.eventually("the client to reconnect to n2", func() bool { return cl.NodeUp(e.addrs[victim]) })
	e.must("live0", allNodes...) // n2's orphans were killed; the others finished
	again := &fanout{rows: 50, size: size, jobs: make([]coord.Job, 8)}
	for i, rg := range coord.Ranges(8) {
		again.jobs[i] = coord.Job{Node: e.addrs[victim], Range: rg}
	}
	if err := again.run(context.Background(), cl); err != nil {
		e.t.Fatalf("fan-out on n2 after it came back: %v", err)
	}
	if err := again.exact(); err != nil {
		e.t.Fatalf("fan-out on n2 after it came back: %v", err)
	}
	e.result(map[string]float64{"detect_ms": ms(detect), "replaced": float64(len(f.replaced)), "reconnect_ms": ms(reconnect)},
		"node_cut: n2's link down after %d rows: %d ranges node-down %v later (heartbeat timeout 1s), resumed at rows %v, every row once; link up: 0 live workers, reconnected in %v",
		cutAfter, len(f.replaced), detect.Round(time.Millisecond), f.resumed, reconnect.Round(time.Millisecond))
}
