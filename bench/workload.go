package bench

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/rexi-go/rexi/coord"
	"github.com/rexi-go/rexi/handlers"
)

// Workload names.
const (
	WCast   = "w-cast"
	WStream = "w-stream"
	WReap   = "w-reap"
	WConc   = "w-conc"
)

// Workloads lists every workload in the order reports show them.
var Workloads = []string{WCast, WStream, WReap, WConc}

// Options size a run. Zero values mean the anchor workload's numbers.
type Options struct {
	Nodes       []string      // node addresses as configured in the client; job (r, c) runs on Nodes[c % len]
	Q, N        int           // shard ranges and copies: 64 and 3
	Rows        int           // W-stream rows per worker: 10
	RowSize     int           // bytes per row: 100
	ReplySize   int           // W-cast reply payload: 64
	Fanouts     int           // timed fan-outs for W-cast and W-stream: 2000; trials for W-reap: 200
	Warmup      int           // untimed fan-outs first: 200 (20 for W-reap)
	Duration    time.Duration // W-conc: 10 s
	Concurrency int           // W-conc coordinators: 8
	// WatchReap observes the nodes for W-reap. It is called before a
	// trial's jobs are submitted and returns a wait function, called right
	// after the coordinator is killed, that returns once no node has a live
	// worker (or ReapTimeout passed) with the number still live and, when
	// known, the moment the last node saw none (else the trial is timed to
	// the wait's return).
	WatchReap func(ctx context.Context, timeout time.Duration) (wait func() (left int64, zeroAt time.Time, err error))
	// ReapTimeout is how long W-reap waits before counting leaks: 5 s.
	ReapTimeout time.Duration
}

func (o Options) withDefaults() Options {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&o.Q, 64)
	def(&o.N, 3)
	def(&o.Rows, 10)
	def(&o.RowSize, 100)
	def(&o.ReplySize, 64)
	def(&o.Fanouts, 2000)
	def(&o.Concurrency, 8)
	if o.Warmup == 0 {
		o.Warmup = max(1, o.Fanouts/10)
	}
	if o.Duration == 0 {
		o.Duration = 10 * time.Second
	}
	if o.ReapTimeout == 0 {
		o.ReapTimeout = 5 * time.Second
	}
	return o
}

// Result is what one workload measured.
type Result struct {
	Workload  string        `json:"workload"`
	Fanouts   int           `json:"fanouts"` // timed fan-outs (trials for W-reap)
	P50       time.Duration `json:"p50_ns"`
	P99       time.Duration `json:"p99_ns"`
	Mean      time.Duration `json:"mean_ns"`
	Max       time.Duration `json:"max_ns"`
	PerSecond float64       `json:"fanouts_per_second,omitempty"` // W-conc
	Leaked    int64         `json:"leaked_workers"`               // W-reap
	// CPUSeconds is the CPU this process (the coordinator) used for the
	// whole workload, warm-up included.
	CPUSeconds float64         `json:"cpu_seconds"`
	Samples    []time.Duration `json:"samples_ns,omitempty"`
}

// String formats the result as one line of `rexinode bench` output.
func (r Result) String() string {
	if r.Workload == WConc {
		return fmt.Sprintf("%-8s %6d fan-outs  %.0f fan-outs/s", r.Workload, r.Fanouts, r.PerSecond)
	}
	s := fmt.Sprintf("%-8s %6d runs  p50 %-9v p99 %-9v mean %-9v max %v", r.Workload, r.Fanouts,
		r.P50.Round(time.Microsecond), r.P99.Round(time.Microsecond), r.Mean.Round(time.Microsecond), r.Max.Round(time.Microsecond))
	if r.Workload == WReap {
		s += fmt.Sprintf("  leaked %d", r.Leaked)
	}
	return s
}

// Summarize fills the latency fields of a Result from samples.
func Summarize(w string, samples []time.Duration) Result {
	r := Result{Workload: w, Fanouts: len(samples), Samples: samples}
	if len(samples) == 0 {
		return r
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	r.P50, r.P99, r.Max = s[len(s)/2], s[min(len(s)-1, len(s)*99/100)], s[len(s)-1]
	r.Mean = sum / time.Duration(len(s))
	return r
}

// Runner runs workloads over one client.
type Runner struct {
	cl     *coord.Client
	o      Options
	cast   []coord.Job
	stream []coord.Job
	reap   []coord.Job
}

// NewRunner prepares the job lists of every workload.
func NewRunner(cl *coord.Client, o Options) (*Runner, error) {
	o = o.withDefaults()
	if len(o.Nodes) == 0 {
		return nil, errors.New("bench: no nodes")
	}
	r := &Runner{cl: cl, o: o}
	reply := string(make([]byte, o.ReplySize))
	// The shard map places range r's N copies on N distinct nodes; with
	// 3 nodes and N=3, every node serves every range.
	m := coord.ShardMap{Q: o.Q, N: o.N}
	var err error
	if r.cast, err = m.Jobs(o.Nodes, "echo", []byte(reply)); err != nil {
		return nil, err
	}
	r.stream, _ = m.Jobs(o.Nodes, "rows", []byte(handlers.RowsArgs(o.Rows, o.RowSize, 0)))
	r.reap, _ = m.Jobs(o.Nodes, "rows", []byte(handlers.RowsArgs(1, 1, 0)))
	for _, js := range [][]coord.Job{r.cast, r.stream, r.reap} {
		for i := range js { // the range's index, shown in the nodes' error rings
			js[i].Nonce = []byte(fmt.Sprint("r", i/o.N))
		}
	}
	return r, nil
}

// Run runs workload w.
func (r *Runner) Run(ctx context.Context, w string) (Result, error) {
	cpu0 := CPUSeconds()
	var res Result
	var err error
	switch w {
	case WCast:
		res, err = r.timed(ctx, w, r.castOnce)
	case WStream:
		res, err = r.timed(ctx, w, r.streamOnce)
	case WReap:
		res, err = r.reapAll(ctx)
	case WConc:
		res, err = r.conc(ctx)
	default:
		err = fmt.Errorf("bench: unknown workload %q (want one of %v)", w, Workloads)
	}
	res.CPUSeconds = CPUSeconds() - cpu0
	return res, err
}

// CPUSeconds is this process's user+system CPU time.
func CPUSeconds() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

func (r *Runner) timed(ctx context.Context, w string, once fanout) (Result, error) {
	for i := 0; i < r.o.Warmup; i++ {
		if _, err := once(ctx); err != nil {
			return Result{}, fmt.Errorf("%s warm-up: %w", w, err)
		}
	}
	samples := make([]time.Duration, 0, r.o.Fanouts)
	for i := 0; i < r.o.Fanouts; i++ {
		start := time.Now()
		end, err := once(ctx)
		if err != nil {
			return Result{}, fmt.Errorf("%s fan-out %d: %w", w, i, err)
		}
		samples = append(samples, end.Sub(start))
	}
	return Summarize(w, samples), nil
}

// fanout runs one fan-out and returns the instant its sample ends, which
// the workload's definition says: W-cast's when the last reply is in (the
// coordinator's Close follows, untimed), W-stream's once the cleanup's
// KILL_ALLs are sent (part of its timed work).
type fanout func(context.Context) (end time.Time, err error)

// castOnce is one W-cast fan-out: 192 echo jobs, done when every reply is
// in.
func (r *Runner) castOnce(ctx context.Context) (time.Time, error) {
	co, err := r.cl.New(ctx, len(r.cast))
	if err != nil {
		return time.Time{}, err
	}
	defer co.Close()
	if _, err := co.Submit(r.cast...); err != nil {
		return time.Time{}, err
	}
	err = co.Recv(coord.RecvOptions{Timeout: 30 * time.Second}, func(m coord.Message) (bool, error) {
		return false, m.Err
	})
	return time.Now(), err
}

// streamOnce is one timed W-stream fan-out, Close's KILL_ALLs included.
func (r *Runner) streamOnce(ctx context.Context) (time.Time, error) {
	err := r.streamFanout(ctx)
	return time.Now(), err
}

// streamFanout is one W-stream fan-out, including Close's KILL_ALLs (W-conc
// runs it back to back).
func (r *Runner) streamFanout(ctx context.Context) error {
	co, err := r.cl.New(ctx, len(r.stream))
	if err != nil {
		return err
	}
	defer co.Close()
	if _, err := co.Submit(r.stream...); err != nil {
		return err
	}
	return co.Stream(coord.StreamOptions{RecvOptions: coord.RecvOptions{Timeout: 30 * time.Second}},
		func(coord.Message) error { return nil })
}

// reapAll runs W-reap trials: workers wait for START, the coordinator's
// context is cancelled, and the time until no node has a live worker is
// the sample.
func (r *Runner) reapAll(ctx context.Context) (Result, error) {
	if r.o.WatchReap == nil {
		return Result{}, errors.New("bench: w-reap needs Options.WatchReap")
	}
	trials := r.o.Fanouts
	samples := make([]time.Duration, 0, trials)
	var leaked int64
	for i := 0; i < trials+r.o.Warmup/10; i++ {
		d, left, err := r.reapOnce(ctx)
		if err != nil {
			return Result{}, fmt.Errorf("w-reap trial %d: %w", i, err)
		}
		leaked += left
		if i >= r.o.Warmup/10 {
			samples = append(samples, d)
		}
	}
	res := Summarize(WReap, samples)
	res.Leaked = leaked
	return res, nil
}

func (r *Runner) reapOnce(ctx context.Context) (time.Duration, int64, error) {
	cctx, kill := context.WithCancel(ctx)
	defer kill()
	wait := r.o.WatchReap(ctx, r.o.ReapTimeout)
	co, err := r.cl.New(cctx, len(r.reap))
	if err != nil {
		return 0, 0, err
	}
	defer co.Close()
	if _, err := co.Submit(r.reap...); err != nil {
		return 0, 0, err
	}
	inits := 0
	err = co.Recv(coord.RecvOptions{Timeout: 30 * time.Second}, func(m coord.Message) (bool, error) {
		if m.Kind == coord.KindStreamInit {
			inits++
		}
		return inits == len(r.reap), m.Err
	})
	if err != nil {
		return 0, 0, err
	}
	start := time.Now()
	kill() // the coordinator dies: no Close, the reaper must act
	left, zeroAt, err := wait()
	end := time.Now()
	if !zeroAt.IsZero() && zeroAt.Before(end) {
		end = zeroAt
	}
	return max(0, end.Sub(start)), left, err
}

// conc runs W-conc: Concurrency coordinators doing W-stream back to back.
func (r *Runner) conc(ctx context.Context) (Result, error) {
	return Concurrent(ctx, r.o.Concurrency, r.o.Duration, r.streamFanout)
}

// Concurrent runs once from n goroutines back to back for dur and reports
// the fan-outs per second (W-conc); the first error fails the run.
//
// The run ends at its deadline, read from the clock, not only once ctx says
// so: a client that checks the deadline itself (gRPC-go does) may fail a
// call with "deadline exceeded" a moment before the context's own timer
// fires, and that is the run ending, not a failed fan-out (it failed a
// whole make compare once).
func Concurrent(ctx context.Context, n int, dur time.Duration, once func(context.Context) error) (Result, error) {
	ctx, cancel := context.WithTimeout(ctx, dur)
	defer cancel()
	deadline, _ := ctx.Deadline()
	running := func() bool { return ctx.Err() == nil && time.Now().Before(deadline) }
	var mu sync.Mutex
	var firstErr error
	count := 0
	var wg sync.WaitGroup
	start := time.Now()
	for g := 0; g < n; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for running() {
				err := once(ctx)
				mu.Lock()
				if err == nil {
					count++
				} else if running() && firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return Result{}, fmt.Errorf("w-conc: %w", firstErr)
	}
	return Result{Workload: WConc, Fanouts: count, PerSecond: float64(count) / time.Since(start).Seconds()}, nil
}
