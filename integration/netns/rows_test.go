//go:build linux

package netns

import (
	"context"
	"time"
)

// W-stream rows exact: Q=64 × N=3 streaming fan-outs of the rows handler,
// 50 in a row, over the lossy, delayed links. Every row of every range
// arrives exactly once with one LAST per range, and since nothing fails,
// nothing is replaced: 1 % loss and a few ms of jitter are TCP's business,
// never a node-down (heartbeat timeout 1 s). Afterwards no node keeps a
// live worker while the client is still connected, so Close's KILL_ALLs,
// not the connection loss, did the cleanup.
func init() {
	register(scenario{name: "rows_exact", order: 1, latency: 3, jitter: 2, bound: time.Minute, run: rowsExact})
}

func rowsExact(e *coordEnv) {
	const fanouts, q, n, rows, size = 50, 64, 3, 20, 100
	cl := e.client(e.config())
	jobs, err := shardJobs(q, n, e.addrs)
	if err != nil {
		e.t.Fatal(err)
	}
	start := time.Now()
	for i := range fanouts {
		f := &fanout{rows: rows, size: size, jobs: jobs}
		if err := f.run(context.Background(), cl); err != nil {
			e.t.Fatalf("fan-out %d of %d failed: %v", i+1, fanouts, err)
		}
		if err := f.exact(); err != nil {
			e.t.Fatalf("fan-out %d: %v", i+1, err)
		}
		if len(f.replaced) > 0 {
			e.t.Fatalf("fan-out %d: %d workers replaced on links that only lose and delay packets: %v (causes %v)",
				i+1, len(f.replaced), f.replaced, f.causes)
		}
	}
	took := time.Since(start)
	e.must("live0", allNodes...)
	e.result(map[string]float64{"fanouts": fanouts, "ms_per_fanout": ms(took) / fanouts},
		"rows_exact: %d fan-outs of Q=%d N=%d × %d rows of %d B, every row once, nothing replaced, %.1f ms per fan-out",
		fanouts, q, n, rows, size, ms(took)/fanouts)
}
