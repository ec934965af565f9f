package integration

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rexi-go/rexi/coord"
	"github.com/rexi-go/rexi/handlers"
	"github.com/rexi-go/rexi/internal/proctest"
)

// ending is one way a coordinator's life can end.
type ending int

const (
	endNormal      ending = iota // Stream returns nil, then Close
	endError                     // the callback returns an error
	endTimeout                   // the receive loop's timeout passes mid-stream
	endCancel                    // the coordinator's context is cancelled mid-stream
	endCloseInside               // Close called from the callback
	endPanicClose                // the callback panics; the caller recovers and Closes
	endPanicDrop                 // the callback panics; the caller recovers and drops it
	endDropped                   // returned early without Close
	numEndings
)

var endingNames = [numEndings]string{"normal", "error", "timeout", "cancel", "close in callback",
	"recovered panic + Close", "recovered panic, dropped", "dropped without Close"}

// endingsRun drives coordinators that end in every way against a cluster
// of real processes, and checks that every fan-out that completes got each
// of its rows exactly once.
type endingsRun struct {
	c     *cluster
	cl    *coord.Client
	q     int
	rows  int
	kills bool // include node kills (the nodes restart on their address)

	mu       sync.Mutex
	counts   [numEndings]int
	complete int
	failures []error
	nodeKill atomic.Int32
}

// one runs one fan-out that ends by e; a completed normal fan-out is
// checked for exactly-once delivery.
func (r *endingsRun) one(e ending) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	co, err := r.cl.New(ctx, r.q*3)
	if err != nil {
		r.fail(err)
		return
	}
	starts := make([]int, 0, r.q*3)
	for i, rg := range coord.Ranges(r.q) {
		for cp := 0; cp < 3; cp++ {
			co.Submit(coord.Job{Node: r.c.addrs[(i+cp)%3], Handler: "rows", Range: rg,
				Args: []byte(handlers.RowsArgs(r.rows, 20, 0))})
			starts = append(starts, 0)
		}
	}
	stopAt := 1 + rand.IntN(r.q*r.rows)
	seen := make(map[string]int, r.q*r.rows)
	total := 0
	opts := coord.StreamOptions{RecvOptions: coord.RecvOptions{Timeout: proctest.WaitFor}}
	if e == endTimeout {
		opts.Timeout = time.Duration(1+rand.IntN(3000)) * time.Microsecond
	}
	opts.Replace = func(failed coord.WorkerInfo, cause error) ([]coord.Job, error) {
		if !errors.Is(cause, coord.ErrNodeDown) {
			return nil, cause
		}
		for k := 1; k < 3; k++ { // resume after the rows received, on a node that is up
			next := r.c.addrs[(indexOf(r.c.addrs, failed.Node)+k)%3]
			if r.cl.NodeUp(next) {
				starts = append(starts, starts[failed.Slot]+int(failed.Rows))
				return []coord.Job{{Node: next, Handler: "rows", Range: failed.Range,
					Args: []byte(handlers.RowsArgs(r.rows, 20, starts[len(starts)-1]))}}, nil
			}
		}
		return nil, nil
	}
	errEnd := errors.New("callback gave up")
	func() {
		defer func() {
			if p := recover(); p != nil && p != "callback panic" {
				panic(p)
			}
		}()
		if e == endPanicClose {
			defer co.Close()
		}
		err = co.Stream(opts, func(m coord.Message) error {
			if m.Kind != coord.KindRow {
				return nil
			}
			n, _ := strconv.Atoi(string(m.Payload[:strings.IndexByte(string(m.Payload), '/')]))
			seen[m.Worker.Range.String()+"#"+strconv.Itoa(n)]++
			if total++; total != stopAt {
				return nil
			}
			switch e {
			case endError, endDropped:
				return errEnd
			case endCancel:
				cancel()
			case endCloseInside:
				co.Close()
			case endPanicClose, endPanicDrop:
				panic("callback panic")
			}
			return nil
		})
	}()
	switch e {
	case endNormal:
		if err == nil {
			err = exactlyOnce(seen, r.q, r.rows)
		} else if r.kills && errors.Is(err, coord.ErrProgressImpossible) {
			err = nil // every copy of a range was on nodes being killed
		}
		if err != nil {
			r.fail(fmt.Errorf("normal fan-out: %w", err))
		} else {
			r.mu.Lock()
			r.complete++
			r.mu.Unlock()
		}
		co.Close()
	case endDropped, endPanicDrop:
		// dropped: the runtime cleanup reaps it
	default:
		co.Close()
	}
	r.mu.Lock()
	r.counts[e]++
	r.mu.Unlock()
}

func (r *endingsRun) fail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.failures) < 10 {
		r.failures = append(r.failures, err)
	}
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

func exactlyOnce(seen map[string]int, q, rows int) error {
	if len(seen) != q*rows {
		return fmt.Errorf("%d distinct rows, want %d", len(seen), q*rows)
	}
	for k, n := range seen {
		if n != 1 {
			return fmt.Errorf("row %s arrived %d times", k, n)
		}
	}
	return nil
}

// drive runs coordinators goroutines, each looping over random endings,
// until ctx ends; with kills, one node at a time is killed and restarted.
func (r *endingsRun) drive(ctx context.Context, t *testing.T, coordinators int) {
	var wg sync.WaitGroup
	for g := 0; g < coordinators; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				r.one(ending(rand.IntN(int(numEndings))))
			}
		}()
	}
	if r.kills {
		for k := 0; ; k++ {
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
				r.killAndRestart(t, k%3)
				continue
			}
			break
		}
	}
	wg.Wait()
}

// killAndRestart SIGKILLs node i and starts it again on its address.
func (r *endingsRun) killAndRestart(t *testing.T, i int) {
	p := r.c.procs[i]
	p.Stop(syscall.SIGKILL)
	r.c.procs[i] = proctest.StartServe(t, rexinodeBin, "-secret-file", r.c.sf, "-name", fmt.Sprint("n", i),
		"-log-level", "warn", "-listen", r.c.addrs[i])
	r.nodeKill.Add(1)
	proctest.Eventually(t, "the client reconnected", func() bool { return r.cl.NodeUp(r.c.addrs[i]) })
}

// finish checks the run: no failure, and no worker left on any node once
// the coordinators dropped without Close are collected.
func (r *endingsRun) finish(t *testing.T) {
	t.Helper()
	for _, err := range r.failures {
		t.Error(err)
	}
	proctest.Eventually(t, "0 live workers on every node", func() bool {
		runtime.GC() // runs the cleanups of dropped coordinators
		return r.c.live() == 0
	})
	t.Logf("endings %v; %d normal fan-outs complete and exact; %d node kills", r.summary(), r.complete, r.nodeKill.Load())
}

func (r *endingsRun) summary() string {
	var b strings.Builder
	for e, n := range r.counts {
		fmt.Fprintf(&b, "%s=%d ", endingNames[e], n)
	}
	return strings.TrimSpace(b.String())
}

// Every way a coordinator can end — normal, error, timeout, context
// cancel, Close in the callback, recovered panic with and without Close,
// dropped without Close, and nodes killed under it — mixed at random over
// 4 concurrent coordinators: every fan-out that completes gets each row
// exactly once, and no node keeps a worker at the end. A few seconds in
// make test; 2 minutes in make soak.
func TestEveryWayACoordinatorEnds(t *testing.T) {
	dur := 4 * time.Second
	if soak() {
		dur = 2 * time.Minute
	}
	c := startCluster(t, 3)
	r := &endingsRun{c: c, cl: newClient(t, c.addrs, nil), q: 16, rows: 30, kills: true}
	ctx, cancel := context.WithTimeout(context.Background(), dur)
	defer cancel()
	r.drive(ctx, t, 4)
	r.finish(t)
	for e, n := range r.counts {
		if n == 0 {
			t.Errorf("no fan-out ended by %s", endingNames[e])
		}
	}
}

// Memory stays flat over a long run of random endings (make soak, 10
// minutes; REXI_MEM_DURATION overrides): the heap after a GC at the end is
// within a few MiB of the heap after a GC at the start, for the
// coordinator process and every node.
func TestMemoryFlatOverRandomEndings(t *testing.T) {
	if !soak() {
		t.Skip("memory soak runs in make soak (REXI_SOAK=1)")
	}
	dur := 10 * time.Minute
	if d, err := time.ParseDuration(os.Getenv("REXI_MEM_DURATION")); err == nil {
		dur = d
	}
	// The warm-up outlasts the nodes' 60 s tombstone TTL, so the measured
	// run starts with tombstones at their steady state.
	const warmup, growthBound = 70 * time.Second, 4 << 20
	c := startCluster(t, 3)
	r := &endingsRun{c: c, cl: newClient(t, c.addrs, nil), q: 16, rows: 30}
	ctx, cancel := context.WithTimeout(context.Background(), warmup+dur)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.drive(ctx, t, 4)
	}()
	time.Sleep(warmup) // the measured run starts after buffers reached their working size
	start := heapsAfterGC(t, c)
	fanouts0 := r.fanouts()
	<-done
	end := heapsAfterGC(t, c)
	if dir := os.Getenv("REXI_HEAP_DIR"); dir != "" { // for investigating a failure
		for i, p := range c.procs {
			_ = os.WriteFile(fmt.Sprintf("%s/node%d.heap", dir, i), []byte(p.Get("/debug/pprof/heap?gc=1")), 0o644)
		}
	}
	r.finish(t)
	n := r.fanouts() - fanouts0
	t.Logf("%d fan-outs in %v (%.0f/s)", n, dur, float64(n)/dur.Seconds())
	for i, name := range heapNames(c) {
		t.Logf("%s heap in use after GC: start %.1f MiB, end %.1f MiB", name, float64(start[i])/(1<<20), float64(end[i])/(1<<20))
		if end[i]-start[i] > growthBound {
			t.Errorf("%s heap grew by %.1f MiB over %v (bound %d MiB)", name, float64(end[i]-start[i])/(1<<20), dur, growthBound>>20)
		}
	}
}

func (r *endingsRun) fanouts() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, k := range r.counts {
		n += k
	}
	return n
}

func heapNames(c *cluster) []string {
	names := []string{"coordinator"}
	for i := range c.procs {
		names = append(names, fmt.Sprint("node n", i))
	}
	return names
}

// heapsAfterGC returns the heap in use right after a forced GC: this
// process's, then each node's (pprof's heap endpoint runs a GC first with
// gc=1, and prints the MemStats).
func heapsAfterGC(t *testing.T, c *cluster) []int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	out := []int64{int64(ms.HeapInuse)}
	for _, p := range c.procs {
		out = append(out, memStat(t, p.Get("/debug/pprof/heap?gc=1&debug=1"), "HeapInuse"))
	}
	return out
}

// memStat reads "# name = value" from a debug=1 heap profile.
func memStat(t *testing.T, profile, name string) int64 {
	t.Helper()
	for _, line := range strings.Split(profile, "\n") {
		if v, ok := strings.CutPrefix(line, "# "+name+" = "); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			return n
		}
	}
	t.Fatalf("%s missing from the heap profile", name)
	return 0
}
