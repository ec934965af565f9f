package node

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rexi-go/rexi/frame"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.uber.org/goleak"
)

// runLog counts how often each job (by its unique nonce) ran its handler.
type runLog struct {
	mu   sync.Mutex
	runs map[string]int
	dups atomic.Int64
}

func (r *runLog) ran(w *Worker) {
	r.mu.Lock()
	r.runs[string(w.Nonce())]++
	if r.runs[string(w.Nonce())] > 1 {
		r.dups.Add(1)
	}
	r.mu.Unlock()
}

// handleStress registers the stress handlers: q replies at once, qs yields
// and replies, b blocks until stopped, st (Streaming) streams 3 rows and
// LAST, sb (Streaming) streams a row and blocks until stopped.
func handleStress(n *Node, log *runLog) {
	n.Handle("q", func(ctx context.Context, w *Worker) error {
		log.ran(w)
		return w.Reply(w.Args())
	})
	n.Handle("qs", func(ctx context.Context, w *Worker) error {
		log.ran(w)
		runtime.Gosched()
		return w.Reply(w.Args())
	})
	n.Handle("b", func(ctx context.Context, w *Worker) error {
		log.ran(w)
		<-ctx.Done()
		return ctx.Err()
	})
	n.Handle("st", func(ctx context.Context, w *Worker) error {
		log.ran(w)
		for i := range 3 {
			if err := w.Stream(fmt.Appendf(nil, "row %d", i)); err != nil {
				return err
			}
		}
		return w.Last([]byte("done"))
	}, Streaming())
	n.Handle("sb", func(ctx context.Context, w *Worker) error {
		log.ran(w)
		if err := w.Stream([]byte("first")); err != nil {
			return err
		}
		<-ctx.Done()
		return ctx.Err()
	}, Streaming())
}

var nonceSeq atomic.Uint64

// spanCount counts job spans started and ended: every job's span must end
// once, whether it ran or was released unstarted.
type spanCount struct {
	started, ended atomic.Int64
}

func (s *spanCount) OnStart(context.Context, sdktrace.ReadWriteSpan) { s.started.Add(1) }
func (s *spanCount) OnEnd(sdktrace.ReadOnlySpan)                     { s.ended.Add(1) }
func (s *spanCount) Shutdown(context.Context) error                  { return nil }
func (s *spanCount) ForceFlush(context.Context) error                { return nil }

// stressConn drives one connection: rounds of bursts of mixed DOITs in one
// write, with START, CANCEL and KILL_ALL in the same write or the next,
// checking that every quick job replies once and every started stream
// ends with LAST. abruptAt >= 0 closes the socket (RST) in that round,
// with jobs in flight.
func stressConn(c *rawClient, seed uint64, rounds, abruptAt int) error {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	var wmu sync.Mutex // the reader ACKs rows
	write := func(b []byte) error {
		wmu.Lock()
		defer wmu.Unlock()
		_ = c.NC.SetWriteDeadline(time.Now().Add(waitFor))
		_, err := c.NC.Write(b)
		return err
	}

	type want struct {
		reply, last, exit int
		kind              frame.ExitKind
	}
	var mu sync.Mutex
	cond := sync.NewCond(&mu)
	got := map[uint64]*want{}
	var readErr error
	deadlined := map[uint64]bool{} // jobs with a 1 ms deadline: EXIT DEADLINE allowed
	go func() {                    // reader
		enc := frame.Encoder{}
		for {
			f, err := c.ReadFrame(time.Hour)
			mu.Lock()
			if err != nil {
				readErr = err
				cond.Broadcast()
				mu.Unlock()
				return
			}
			g := got[f.Ref]
			if g == nil {
				g = &want{}
				got[f.Ref] = g
			}
			switch f.Type {
			case frame.TypeReply:
				g.reply++
			case frame.TypeLast:
				g.last++
			case frame.TypeExit:
				x, _ := frame.ParseExit(f.Payload)
				g.exit++
				g.kind = x.Kind
			case frame.TypeError:
				readErr = fmt.Errorf("ERROR frame: %q", f.Payload)
			}
			cond.Broadcast()
			mu.Unlock()
			if f.Type == frame.TypeStream {
				if err := write(enc.AppendAck(nil, f.Ref, 1)); err != nil {
					return
				}
			}
		}
	}()

	enc := frame.Encoder{}
	ref := uint64(0)
	var later []uint64 // blocking jobs to cancel in the next write
	for round := range rounds {
		var out []byte
		type exp struct {
			ref         uint64
			reply, last bool
		}
		var expects []exp
		var killAll []uint64
		for _, r := range later {
			switch rng.IntN(2) {
			case 0:
				out = enc.AppendEmpty(out, frame.TypeCancel, r)
			default:
				killAll = append(killAll, r)
			}
		}
		later = later[:0]
		burst := 1 + rng.IntN(80)
		for range burst {
			ref++
			nonce := fmt.Appendf(nil, "%d", nonceSeq.Add(1))
			doit := func(h string) {
				out = enc.AppendDoit(out, ref, frame.Doit{Handler: []byte(h), Nonce: nonce, Args: []byte("x")})
			}
			switch k := rng.IntN(10); {
			case k < 4:
				doit("q")
				expects = append(expects, exp{ref: ref, reply: true})
			case k < 5:
				doit("qs")
				expects = append(expects, exp{ref: ref, reply: true})
			case k < 7: // blocking: cancelled now, in the next write, or by KILL_ALL; some with a 1 ms deadline
				if rng.IntN(4) == 0 {
					out = enc.AppendDoit(out, ref, frame.Doit{TimeoutMillis: 1, Handler: []byte("b"), Nonce: nonce})
					mu.Lock()
					deadlined[ref] = true
					mu.Unlock()
				} else {
					doit("b")
				}
				switch rng.IntN(3) {
				case 0:
					out = enc.AppendEmpty(out, frame.TypeCancel, ref)
				case 1:
					later = append(later, ref)
				default:
					killAll = append(killAll, ref)
				}
			case k < 9: // streaming: START now, START and CANCEL now, CANCEL before START
				doit("st")
				switch rng.IntN(4) {
				case 0, 1:
					out = enc.AppendEmpty(out, frame.TypeStart, ref)
					expects = append(expects, exp{ref: ref, last: true})
				case 2:
					out = enc.AppendEmpty(out, frame.TypeStart, ref)
					out = enc.AppendEmpty(out, frame.TypeCancel, ref)
				default:
					out = enc.AppendEmpty(out, frame.TypeCancel, ref)
				}
			default: // streaming, blocking: START now, CANCEL next write
				doit("sb")
				out = enc.AppendEmpty(out, frame.TypeStart, ref)
				later = append(later, ref)
			}
		}
		if len(killAll) > 0 {
			out = enc.AppendKillAll(out, killAll)
		}
		if err := write(out); err != nil {
			return fmt.Errorf("round %d: write: %w", round, err)
		}
		if round == abruptAt {
			if rng.IntN(2) == 0 {
				time.Sleep(time.Duration(rng.IntN(500)) * time.Microsecond)
			}
			if tc, ok := c.NC.(*net.TCPConn); ok {
				_ = tc.SetLinger(0)
			}
			c.NC.Close()
			return nil
		}
		deadline := time.Now().Add(waitFor)
		timer := time.AfterFunc(waitFor, func() { mu.Lock(); cond.Broadcast(); mu.Unlock() })
		mu.Lock()
		for {
			if readErr != nil {
				break
			}
			done := true
			for _, e := range expects {
				g := got[e.ref]
				if g == nil || (e.reply && g.reply == 0) || (e.last && g.last == 0) {
					done = false
					break
				}
			}
			if done || time.Now().After(deadline) {
				break
			}
			cond.Wait()
		}
		timer.Stop()
		var err error
		switch {
		case readErr != nil:
			err = fmt.Errorf("round %d: read: %w", round, readErr)
		}
		for r, g := range got {
			if err == nil && (g.exit > 1 || g.exit == 1 && (!deadlined[r] || g.kind != frame.ExitDeadline)) {
				err = fmt.Errorf("round %d: ref %d: unexpected EXIT %v (%d)", round, r, g.kind, g.exit)
			}
			if err == nil && (g.reply > 1 || g.last > 1) {
				err = fmt.Errorf("round %d: ref %d: %+v", round, r, g)
			}
		}
		for _, e := range expects {
			g := got[e.ref]
			if err == nil && (g == nil || (e.reply && g.reply != 1) || (e.last && g.last != 1)) {
				err = fmt.Errorf("round %d: ref %d: got %+v, want reply=%v last=%v", round, e.ref, g, e.reply, e.last)
			}
		}
		mu.Unlock()
		if err != nil {
			return err
		}
	}
	c.NC.Close()
	return nil
}

// poolState reads the pool's fields under its lock.
func poolState(n *Node) (queued, capQueue, idle int, waking bool) {
	p := &n.pool
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.queue) - p.head, cap(p.queue), len(p.idle), p.waking
}

func setMaxIdle(n *Node, k int) {
	n.pool.mu.Lock()
	n.pool.maxIdle = k
	n.pool.mu.Unlock()
}

func TestPoolStress(t *testing.T) {
	for _, tc := range []struct {
		idle   int
		traced bool
	}{{-1, false}, {0, false}, {1, true}, {3, false}, {-1, true}} { // -1: the default (1024)
		idle := tc.idle
		t.Run(fmt.Sprintf("idle=%d,traced=%v", idle, tc.traced), func(t *testing.T) {
			log := &runLog{runs: map[string]int{}}
			spans := &spanCount{}
			n := startNode(t, newProbe(), func(cfg *Config) {
				cfg.EventLoops = 2
				if tc.traced {
					tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
					t.Cleanup(func() { tp.Shutdown(context.Background()) })
					cfg.TracerProvider = tp
				}
			})
			if idle >= 0 {
				setMaxIdle(n, idle)
			}
			handleStress(n, log)
			const waves, conns, rounds = 3, 12, 15
			for wave := range waves {
				clients := make([]*rawClient, conns)
				for i := range clients {
					clients[i] = connect(t, n, 0)
				}
				errs := make(chan error, conns)
				for i, c := range clients {
					abrupt := -1
					if i%3 == 0 {
						abrupt = (i + wave) % rounds
					}
					go func() { errs <- stressConn(c, uint64(wave*1000+i), rounds, abrupt) }()
				}
				for range conns {
					if err := <-errs; err != nil {
						t.Error(err)
					}
				}
			}
			eventually(t, "no job live or running", func() bool {
				s := n.Stats()
				return s.Live == 0 && s.Running == 0
			})
			eventually(t, "the pool at rest", func() bool {
				q, _, _, waking := poolState(n)
				return q == 0 && !waking
			})
			q, c, i, _ := poolState(n)
			maxIdle := n.pool.maxIdle
			if i > maxIdle || int64(i) != n.Stats().Idle {
				t.Errorf("idle workers %d (stats %d), max %d", i, n.Stats().Idle, maxIdle)
			}
			if q != 0 || c > maxQueueKept {
				t.Errorf("queue len %d cap %d after the burst", q, c)
			}
			if d := log.dups.Load(); d != 0 {
				t.Errorf("%d handlers ran twice", d)
			}
			// A job's span ends after its counters fall: a worker's run
			// counts it no longer running as its handler returns, and ends
			// the span after taking it out of the table.
			eventually(t, "every job span ended", func() bool { return spans.started.Load() == spans.ended.Load() })
			if tc.traced && spans.started.Load() == 0 {
				t.Error("no job span started")
			}
			s := n.Stats()
			t.Logf("started %d replied %d killed %d deadlines %d", s.Started, s.Replied, s.Killed, s.Deadlines)
		})
	}
}

// Close while jobs are queued and running: every job ends, every worker
// goroutine exits, Close returns.
func TestPoolCloseWithJobsQueued(t *testing.T) {
	var opts []goleak.Option
	for _, fn := range ProcessGoroutines {
		opts = append(opts, goleak.IgnoreAnyFunction(fn))
	}
	for iter := range 20 {
		log := &runLog{runs: map[string]int{}}
		n := startNode(t, newProbe(), func(cfg *Config) { cfg.EventLoops = 2 })
		setMaxIdle(n, iter%3)
		handleStress(n, log)
		var clients []*rawClient
		for range 6 {
			clients = append(clients, connect(t, n, 0))
		}
		for ci, c := range clients {
			var out []byte
			for ref := uint64(1); ref <= 300; ref++ {
				h := []string{"b", "q", "st", "sb", "qs"}[int(ref+uint64(ci))%5]
				out = c.Enc.AppendDoit(out, ref, frame.Doit{Handler: []byte(h), Nonce: fmt.Appendf(nil, "%d", nonceSeq.Add(1))})
				if h == "st" || h == "sb" {
					out = c.Enc.AppendEmpty(out, frame.TypeStart, ref)
				}
			}
			c.Write(out)
		}
		if iter%2 == 1 {
			eventually(t, "jobs started", func() bool { return n.Stats().Running > 0 })
		}
		closed := make(chan struct{})
		go func() { n.Close(); close(closed) }()
		select {
		case <-closed:
		case <-time.After(waitFor):
			buf := make([]byte, 1<<20)
			t.Fatalf("Close hung; stats %+v\n%s", n.Stats(), buf[:runtime.Stack(buf, true)])
		}
		if s := n.Stats(); s.Live != 0 || s.Running != 0 {
			t.Fatalf("after Close: live=%d running=%d", s.Live, s.Running)
		}
		if q, _, i, _ := poolState(n); q != 0 || i != 0 {
			t.Fatalf("after Close: %d queued, %d idle", q, i)
		}
		if d := log.dups.Load(); d != 0 {
			t.Fatalf("%d handlers ran twice", d)
		}
		for _, c := range clients {
			c.NC.Close()
		}
		goleak.VerifyNone(t, opts...)
	}
}

// The queue's array is let go only when the queue drains. Under a load
// that never lets it drain (a steady backlog), the consumed front is never
// reclaimed and every append that grows the array copies it: the array
// grows with every job submitted, not with the backlog.
func TestPoolQueueArrayBoundedByBacklog(t *testing.T) {
	for _, backlog := range []int{1, 1000} {
		p := &pool{}
		p.waking = true // a worker "on its way": submit starts none; the test takes the jobs itself
		w := &Worker{}
		for range backlog {
			p.submit([]task{{w: w}})
		}
		for range 1_000_000 {
			p.submit([]task{{w: w}}) // one job arrives ...
			p.mu.Lock()
			p.takeLocked() // ... and one is taken: the backlog stays the same
			p.mu.Unlock()
		}
		p.mu.Lock()
		c := cap(p.queue)
		p.mu.Unlock()
		if c > 4*backlog+maxQueueKept {
			t.Errorf("backlog %d: queue array holds %d tasks (%d KiB)", backlog, c, c*16/1024)
		}
	}
}
