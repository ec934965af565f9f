//go:build linux

package netns

import (
	"context"
	"errors"
	"os"
	"syscall"
	"time"

	"github.com/rexi-go/rexi/bench"
)

// W-stream latency over the namespaces with 1 ms added each way (toxiproxy
// latency 1 ms, no jitter): the anchor workload of bench/ (Q=64 × N=3, 10
// rows of 100 B per chosen worker, window 5, Close's KILL_ALLs included),
// run by the bench package's own runner so the figure means the same as
// bench/README.md's. Measured twice, 200 timed fan-outs after 20 warm-up
// ones each: with the 1 % loss rules in place, then without them (the
// figure for the README). Nothing is asserted about speed; every fan-out
// must complete.
func init() {
	register(scenario{name: "wstream_p50", order: 5, latency: 1, jitter: 0, bound: 90 * time.Second, run: wstreamP50})
}

func wstreamP50(e *coordEnv) {
	const fanouts, warmup = 200, 20
	cl := e.client(e.config())
	shared := benchLock(e)
	measure := func(what string) bench.Result {
		r, err := bench.NewRunner(cl, bench.Options{Nodes: e.addrs, Fanouts: fanouts, Warmup: warmup})
		if err != nil {
			e.t.Fatal(err)
		}
		res, err := r.Run(context.Background(), bench.WStream)
		if err != nil {
			e.t.Fatalf("W-stream %s: %v", what, err)
		}
		return res
	}
	lossy := measure("with 1% loss")
	if _, err := e.ask(request{Op: "loss", Nodes: allNodes, On: false}); err != nil {
		e.t.Fatal(err)
	}
	clean := measure("without loss")
	if _, err := e.ask(request{Op: "loss", Nodes: allNodes, On: true}); err != nil {
		e.t.Fatal(err)
	}
	e.must("live0", allNodes...)
	note := ""
	if shared {
		note = " (another benchmark held /tmp/rexi-bench.lock: figures disturbed)"
	}
	e.result(map[string]float64{"p50_ms": ms(clean.P50), "p99_ms": ms(clean.P99), "lossy_p50_ms": ms(lossy.P50), "lossy_p99_ms": ms(lossy.P99)},
		"W-stream, 3 node namespaces + coordinator namespace over veth/bridge, encrypted, toxiproxy +1 ms each way: "+
			"p50 %.2f ms, p99 %.2f ms, mean %.2f ms (%d fan-outs, Q=64 N=3, 10 rows × 100 B, window 5); "+
			"with 1%% TCP loss on the node links: p50 %.2f ms, p99 %.2f ms%s",
		ms(clean.P50), ms(clean.P99), ms(clean.Mean), clean.Fanouts, ms(lossy.P50), ms(lossy.P99), note)
}

// benchLock takes make compare's lock (/tmp/rexi-bench.lock) so the two
// never measure each other, waiting at most a minute; it reports whether
// the measurement had to go ahead without it.
func benchLock(e *coordEnv) (shared bool) {
	f, err := os.OpenFile("/tmp/rexi-bench.lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		e.t.Logf("bench lock: %v; measuring anyway", err)
		return true
	}
	e.t.Cleanup(func() { f.Close() })
	deadline := time.Now().Add(time.Minute)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return false
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) || time.Now().After(deadline) {
			e.t.Logf("bench lock: %v; measuring anyway", err)
			return true
		}
		time.Sleep(100 * time.Millisecond) // another process's lock: no event to wait on
	}
}
