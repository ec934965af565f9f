package bench

import (
	"context"
	"errors"
	"runtime"
	"testing"
	"time"

	"github.com/rexi-go/rexi/handlers"
	"github.com/rexi-go/rexi/internal/leak"
	"github.com/rexi-go/rexi/internal/testcluster"
	"github.com/rexi-go/rexi/node"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, leak.IgnoreGnet...)
}

// startInProcess starts three nodes on 127.0.0.1 in this process and a
// client, and returns a Runner over them.
func startInProcess(tb testing.TB, o Options) *Runner {
	tb.Helper()
	return startWith(tb, o, handlers.Register)
}

// startWith is startInProcess with the nodes' handlers installed by
// register (handlers.RegisterOnGoroutines measures the goroutine path).
func startWith(tb testing.TB, o Options, register func(*node.Node)) *Runner {
	tb.Helper()
	c := testcluster.Start(tb, 3, register)
	o.Nodes = c.Addrs
	o.WatchReap = func(ctx context.Context, timeout time.Duration) func() (int64, time.Time, error) {
		return func() (int64, time.Time, error) {
			ctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			var left int64
			for _, n := range c.Nodes {
				if n.WaitNoLive(ctx) != nil {
					left += n.Stats().Live
				}
			}
			return left, time.Time{}, nil
		}
	}
	r, err := NewRunner(c.Client, o)
	if err != nil {
		tb.Fatal(err)
	}
	return r
}

func report(b *testing.B, samples []time.Duration) {
	r := Summarize("", samples)
	b.ReportMetric(float64(r.P50.Nanoseconds())/1e3, "p50-µs")
	b.ReportMetric(float64(r.P99.Nanoseconds())/1e3, "p99-µs")
	b.ReportMetric(float64(r.Mean.Nanoseconds())/1e3, "mean-µs")
}

// timedLoop runs one fan-out per iteration after a warm-up.
func timedLoop(b *testing.B, once fanout) {
	ctx := context.Background()
	for i := 0; i < 20; i++ {
		if _, err := once(ctx); err != nil {
			b.Fatal(err)
		}
	}
	samples := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		start := time.Now()
		end, err := once(ctx)
		if err != nil {
			b.Fatal(err)
		}
		samples = append(samples, end.Sub(start))
	}
	report(b, samples)
}

// BenchmarkWCast: 192 echo jobs with 64-byte replies per op; a sample
// ends when the last reply is in (Close follows, untimed).
func BenchmarkWCast(b *testing.B) {
	r := startInProcess(b, Options{})
	timedLoop(b, r.castOnce)
}

// BenchmarkWStream: 192 streaming jobs, 64 chosen, 10 rows of 100 bytes,
// window 5, Close's KILL_ALLs included.
func BenchmarkWStream(b *testing.B) {
	r := startInProcess(b, Options{})
	timedLoop(b, r.streamOnce)
}

// BenchmarkWCastGoroutine is BenchmarkWCast with echo run by node.Handle,
// a pooled worker goroutine per job.
func BenchmarkWCastGoroutine(b *testing.B) {
	r := startWith(b, Options{}, handlers.RegisterOnGoroutines)
	timedLoop(b, r.castOnce)
}

// BenchmarkWStreamGoroutine is BenchmarkWStream with rows run by
// node.Handle (node.Streaming): each started job streams from a pooled
// worker goroutine through Worker.Stream.
func BenchmarkWStreamGoroutine(b *testing.B) {
	r := startWith(b, Options{}, handlers.RegisterOnGoroutines)
	timedLoop(b, r.streamOnce)
}

// BenchmarkWReap: from the coordinator's death to no live worker anywhere.
func BenchmarkWReap(b *testing.B) {
	r := startInProcess(b, Options{})
	samples := make([]time.Duration, 0, b.N)
	var leaked int64
	for b.Loop() {
		d, left, err := r.reapOnce(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		samples = append(samples, d)
		leaked += left
	}
	report(b, samples)
	b.ReportMetric(float64(leaked), "leaked")
}

// BenchmarkWConc: 8 coordinators running W-stream back to back; each op
// is one fan-out, and fanouts/s is what the 8 achieve together.
func BenchmarkWConc(b *testing.B) {
	r := startInProcess(b, Options{})
	b.SetParallelism(max(1, 8/runtime.GOMAXPROCS(0)))
	b.ReportAllocs()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := r.streamFanout(context.Background()); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "fanouts/s")
}

func TestWorkloadsRun(t *testing.T) {
	r := startInProcess(t, Options{Fanouts: 5, Warmup: 1, Duration: 200 * time.Millisecond})
	for _, w := range Workloads {
		res, err := r.Run(context.Background(), w)
		if err != nil {
			t.Fatalf("%s: %v", w, err)
		}
		if w == WConc {
			if res.Fanouts == 0 {
				t.Fatalf("w-conc completed no fan-out")
			}
			continue
		}
		if res.Fanouts != 5 || res.P50 <= 0 || res.Leaked != 0 {
			t.Fatalf("%s: %+v", w, res)
		}
	}
}

// lateContext has a deadline its Done never reports: a context whose timer
// has not fired yet when a client that reads the deadline itself (gRPC-go)
// already fails its call with "deadline exceeded".
type lateContext struct {
	context.Context
	deadline time.Time
}

func (c lateContext) Deadline() (time.Time, bool) { return c.deadline, true }

func TestConcurrentEndsAtItsDeadlineWhateverTheContextSays(t *testing.T) {
	parent := lateContext{Context: context.Background(), deadline: time.Now().Add(100 * time.Millisecond)}
	type outcome struct {
		res Result
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := Concurrent(parent, 4, time.Hour, func(ctx context.Context) error {
			dl, _ := ctx.Deadline()
			if !time.Now().Before(dl) {
				return errors.New("deadline exceeded, read from the clock")
			}
			time.Sleep(time.Millisecond) // a fan-out's work
			return nil
		})
		done <- outcome{res, err}
	}()
	select {
	case o := <-done:
		if o.err != nil {
			t.Fatalf("a call failed by the run's own deadline failed the run: %v", o.err)
		}
		if o.res.Fanouts == 0 {
			t.Fatal("no fan-out counted")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the run did not end at its deadline")
	}
}

// A sample ends where the fan-out says, not when it returns: W-cast's
// Close, after the last reply, is not timed.
func TestTimedEndsEachSampleWhereTheFanoutSays(t *testing.T) {
	const after = time.Second // work after the sample's end, such as a Close
	r := &Runner{o: Options{Fanouts: 1}}
	res, err := r.timed(context.Background(), "test", func(context.Context) (time.Time, error) {
		end := time.Now()
		time.Sleep(after)
		return end, nil
	})
	if err != nil || res.P50 >= after {
		t.Fatalf("sample %v (%v), want it to end before the work after it (%v)", res.P50, err, after)
	}
}
