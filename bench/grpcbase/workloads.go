package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/rexi-go/rexi/bench"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

type options struct {
	Fanouts, Warmup, Concurrency int
	Duration                     time.Duration
	WatchReap                    func(ctx context.Context, timeout time.Duration) func() (int64, time.Time, error)
}

type result = bench.Result

const (
	q, n     = 64, 3
	jobs     = q * n
	rows     = 10
	rowSize  = 100
	castSize = 64
)

type runner struct {
	conns []*grpc.ClientConn
	o     options
}

func newRunner(conns []*grpc.ClientConn, o options) *runner { return &runner{conns: conns, o: o} }

// node of job j = (range j/n, copy j%n): copy c runs on node c.
func (r *runner) conn(j int) *grpc.ClientConn { return r.conns[(j%n)%len(r.conns)] }

func (r *runner) run(ctx context.Context, w string) (result, error) {
	cpu0 := bench.CPUSeconds()
	var res result
	var err error
	switch w {
	case "w-cast":
		res, err = r.timed(ctx, w, r.cast)
	case "w-stream":
		res, err = r.timed(ctx, w, func(ctx context.Context) error { return r.stream(ctx, false) })
	case "w-reap":
		res, err = r.reap(ctx)
	case "w-conc":
		res, err = r.conc(ctx)
	default:
		err = fmt.Errorf("unknown workload %q", w)
	}
	res.CPUSeconds = bench.CPUSeconds() - cpu0
	return res, err
}

func (r *runner) timed(ctx context.Context, w string, once func(context.Context) error) (result, error) {
	for i := 0; i < r.o.Warmup; i++ {
		if err := once(ctx); err != nil {
			return result{}, err
		}
	}
	s := make([]time.Duration, 0, r.o.Fanouts)
	for i := 0; i < r.o.Fanouts; i++ {
		t := time.Now()
		if err := once(ctx); err != nil {
			return result{}, err
		}
		s = append(s, time.Since(t))
	}
	return bench.Summarize(w, s), nil
}

// cast: 192 concurrent unary calls, done when every reply is in.
func (r *runner) cast(ctx context.Context) error {
	var wg sync.WaitGroup
	errs := make([]error, jobs)
	payload := make([]byte, castSize)
	for j := 0; j < jobs; j++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out := new(wrapperspb.BytesValue)
			errs[j] = r.conn(j).Invoke(ctx, "/rexibench.Worker/Cast", wrapperspb.Bytes(payload), out)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

type event struct {
	job  int
	kind byte // I init, R row, L last, E error
	err  error
}

var streamDesc = &serviceDesc.Streams[0]

func jobMessage() *wrapperspb.BytesValue {
	b := make([]byte, 9)
	b[0] = 'J'
	binary.BigEndian.PutUint32(b[1:], rows)
	binary.BigEndian.PutUint32(b[5:], rowSize)
	return wrapperspb.Bytes(b)
}

// stream is one W-stream fan-out: the first INIT per range is started,
// later ones cancelled; each row is acked; done at 64 LASTs; then every
// stream is cancelled (the kill_all). With reapOnly, it returns once all
// 192 INITs are in, leaving the streams waiting (W-reap).
func (r *runner) stream(ctx context.Context, reapOnly bool) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events := make(chan event, jobs*(rows+3))
	decide := make([]chan bool, jobs)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel() // runs first: the cleanup every stream sees
	for j := 0; j < jobs; j++ {
		decide[j] = make(chan bool, 1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := r.worker(ctx, j, events, decide[j]); err != nil && ctx.Err() == nil {
				events <- event{job: j, kind: 'E', err: err}
			}
		}()
	}
	chosen := make([]int, q)
	for i := range chosen {
		chosen[i] = -1
	}
	covered, lasts, inits := 0, 0, 0
	for lasts < q {
		var e event
		select {
		case e = <-events:
		case <-ctx.Done():
			return ctx.Err()
		}
		switch e.kind {
		case 'E':
			return e.err
		case 'L':
			lasts++
		case 'I':
			inits++
			if reapOnly {
				if inits == jobs {
					return nil
				}
				continue
			}
			rg := e.job / n
			if chosen[rg] >= 0 {
				decide[e.job] <- false
				continue
			}
			chosen[rg] = e.job
			if covered++; covered == q {
				for _, j := range chosen {
					decide[j] <- true
				}
			}
		}
	}
	return nil
}

func (r *runner) worker(ctx context.Context, j int, events chan<- event, decide <-chan bool) error {
	st, err := r.conn(j).NewStream(ctx, streamDesc, "/rexibench.Worker/Stream")
	if err != nil {
		return err
	}
	if err := st.SendMsg(jobMessage()); err != nil {
		return err
	}
	m := new(wrapperspb.BytesValue)
	if err := st.RecvMsg(m); err != nil {
		return err
	}
	events <- event{job: j, kind: 'I'}
	var start bool
	select {
	case start = <-decide:
	case <-ctx.Done():
		return ctx.Err()
	}
	if !start {
		return st.SendMsg(wrapperspb.Bytes([]byte{'C'}))
	}
	if err := st.SendMsg(wrapperspb.Bytes([]byte{'S'})); err != nil {
		return err
	}
	ack := wrapperspb.Bytes([]byte{'A', 0, 0, 0, 1})
	for {
		if err := st.RecvMsg(m); err != nil {
			return err
		}
		switch m.Value[0] {
		case 'R':
			events <- event{job: j, kind: 'R'}
			// io.EOF: the server already sent LAST and ended the stream.
			if err := st.SendMsg(ack); err != nil && !errors.Is(err, io.EOF) {
				return err
			}
		case 'L':
			events <- event{job: j, kind: 'L'}
			return nil
		}
	}
}

// reap: workers wait for START; the coordinator's context is cancelled;
// the sample is the time until no node runs a handler.
func (r *runner) reap(ctx context.Context) (result, error) {
	if r.o.WatchReap == nil {
		return result{}, errors.New("w-reap needs -live")
	}
	var s []time.Duration
	var leaked int64
	for i := 0; i < r.o.Fanouts+r.o.Warmup/10; i++ {
		d, left, err := r.reapOnce(ctx)
		if err != nil {
			return result{}, err
		}
		if i >= r.o.Warmup/10 {
			s = append(s, d)
			leaked += left
		}
	}
	res := bench.Summarize("w-reap", s)
	res.Leaked = leaked
	return res, nil
}

// reapOnce is one W-reap trial. What it started, the watch's long-polls
// and the streams, has ended when it returns, early or not.
func (r *runner) reapOnce(ctx context.Context) (time.Duration, int64, error) {
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	wait := r.o.WatchReap(wctx, 5*time.Second)
	cctx, kill := context.WithCancel(ctx)
	defer kill()
	done := make(chan error, 1)
	inited := make(chan struct{})
	go func() {
		// stream returns at 192 INITs; keep its streams open until kill.
		done <- r.streamHold(cctx, inited)
	}()
	select {
	case <-inited:
	case err := <-done:
		stopWatch()
		wait() // returns once the cancelled long-polls have
		return 0, 0, err
	}
	t := time.Now()
	kill()
	left, zeroAt, err := wait()
	end := time.Now()
	<-done
	if err != nil {
		return 0, 0, err
	}
	if !zeroAt.IsZero() && zeroAt.Before(end) {
		end = zeroAt // timed on the node, as rexinode bench does
	}
	return max(0, end.Sub(t)), left, nil
}

// streamHold opens the 192 streams, signals once every INIT is in, and
// returns when ctx ends.
func (r *runner) streamHold(ctx context.Context, inited chan<- struct{}) error {
	events := make(chan event, jobs*2)
	var wg sync.WaitGroup
	for j := 0; j < jobs; j++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			decide := make(chan bool) // never decided: waits for ctx
			if err := r.worker(ctx, j, events, decide); err != nil && ctx.Err() == nil {
				events <- event{job: j, kind: 'E', err: err}
			}
		}()
	}
	defer wg.Wait()
	for inits := 0; inits < jobs; {
		select {
		case e := <-events:
			if e.kind == 'E' {
				return e.err
			}
			inits++
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	close(inited)
	<-ctx.Done()
	return nil
}

func (r *runner) conc(ctx context.Context) (result, error) {
	return bench.Concurrent(ctx, r.o.Concurrency, r.o.Duration, func(ctx context.Context) error { return r.stream(ctx, false) })
}
