package integration

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/rexi-go/rexi/coord"
	"github.com/rexi-go/rexi/internal/proctest"
)

// Load: 50 concurrent coordinators doing W-stream fan-outs for 60 s
// (make soak only): no errors, each node's RSS within a stated bound, and
// at the end zero live workers and goroutines back to their baseline.
func TestLoad(t *testing.T) {
	if !soak() {
		t.Skip("load test runs in make soak (REXI_SOAK=1)")
	}
	const coordinators = 50
	dur := 60 * time.Second
	if d, err := time.ParseDuration(os.Getenv("REXI_LOAD_DURATION")); err == nil {
		dur = d
	}
	const rssBound = 128 << 20 // per node, built without -race (make soak); 24 MiB measured
	c := startCluster(t, 3)
	cl := newClient(t, c.addrs, nil)
	base := make([]float64, len(c.procs))
	for i, p := range c.procs {
		base[i] = p.Metric("go_goroutines")
	}
	testBase := runtime.NumGoroutine()

	jobs := make([]coord.Job, 0, 192)
	for _, rg := range coord.Ranges(64) {
		for cp := 0; cp < 3; cp++ {
			jobs = append(jobs, coord.Job{Node: c.addrs[cp], Handler: "rows", Range: rg, Args: []byte("10:100")})
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), dur)
	defer cancel()
	var mu sync.Mutex
	var errs []error
	fanouts := 0
	var peakRSS [3]int64
	var wg sync.WaitGroup
	for g := 0; g < coordinators; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				co, err := cl.New(context.Background(), len(jobs))
				if err == nil {
					co.Submit(jobs...)
					err = co.Stream(coord.StreamOptions{RecvOptions: coord.RecvOptions{Timeout: 30 * time.Second}},
						func(coord.Message) error { return nil })
					co.Close()
				}
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				} else {
					fanouts++
				}
				mu.Unlock()
			}
		}()
	}
	for ctx.Err() == nil {
		for i, p := range c.procs {
			peakRSS[i] = max(peakRSS[i], p.RSS())
		}
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d fan-outs failed, first: %v", len(errs), errs[0])
	}
	for i, p := range c.procs {
		if peakRSS[i] > rssBound {
			t.Errorf("node %d RSS peaked at %d MiB, bound %d MiB", i, peakRSS[i]>>20, rssBound>>20)
		}
		proctest.Eventually(t, "no live workers", func() bool { return p.Metric("rexi_node_live_workers") == 0 })
		proctest.Eventually(t, fmt.Sprintf("node %d goroutines back to baseline", i), func() bool {
			return p.Metric("go_goroutines")-p.Metric("rexi_node_idle_workers") <= base[i]
		})
	}
	proctest.Eventually(t, "test process goroutines back", func() bool { return runtime.NumGoroutine() <= testBase })
	t.Logf("%d coordinators for %v: %d fan-outs (%.0f/s), 0 errors; peak RSS per node %d, %d, %d MiB (bound %d MiB)",
		coordinators, dur, fanouts, float64(fanouts)/dur.Seconds(), peakRSS[0]>>20, peakRSS[1]>>20, peakRSS[2]>>20, rssBound>>20)
}
