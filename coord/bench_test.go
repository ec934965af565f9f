package coord

import (
	"context"
	"errors"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/rexi-go/rexi/frame"
)

// reportLatencies adds p50/p99/mean per fan-out as benchmark metrics.
func reportLatencies(b *testing.B, d []time.Duration) {
	if len(d) == 0 {
		return
	}
	slices.Sort(d)
	var sum time.Duration
	for _, x := range d {
		sum += x
	}
	b.ReportMetric(float64(d[len(d)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(d[len(d)*99/100].Microseconds()), "p99-µs")
	b.ReportMetric(float64(sum.Microseconds())/float64(len(d)), "mean-µs")
}

// benchFanouts times one fan-out of Q=64 × N=3 jobs per op on three
// in-process nodes; receive runs the fan-out's receive loop.
func benchFanouts(b *testing.B, handler, args string, receive func(*Coordinator) error) {
	c := newCluster(b, 3, nil, nil)
	jobs := c.jobs(64, 3, handler, args)
	lat := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	for b.Loop() {
		start := time.Now()
		co, err := c.cl.New(context.Background(), len(jobs))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := co.Submit(jobs...); err != nil {
			b.Fatal(err)
		}
		if err := receive(co); err != nil {
			b.Fatal(err)
		}
		co.Close()
		lat = append(lat, time.Since(start))
	}
	reportLatencies(b, lat)
}

// BenchmarkReplyFanout: Q=64, N=3 echo jobs (64-byte payloads) on three
// in-process nodes; one op is one fan-out until all 192 replies are in.
func BenchmarkReplyFanout(b *testing.B) {
	benchFanouts(b, "echo", string(make([]byte, 64)), func(co *Coordinator) error {
		return co.Recv(RecvOptions{Timeout: waitFor}, func(Message) (bool, error) { return false, nil })
	})
}

// BenchmarkStreamFanout: Q=64, N=3 streaming jobs, 10 rows of 100 bytes
// each, window 5; one op is one fan-out including the Close KILL_ALLs.
func BenchmarkStreamFanout(b *testing.B) {
	benchFanouts(b, "rows", "10:100", func(co *Coordinator) error {
		return co.Stream(StreamOptions{RecvOptions: RecvOptions{Timeout: waitFor}}, func(Message) error { return nil })
	})
}

// BenchmarkDispatch: the reader's per-frame work for a 100-byte row, from
// decoded frame to the coordinator's inbox, and the coordinator taking it.
func BenchmarkDispatch(b *testing.B) {
	c := newCluster(b, 1, nil, nil)
	co, _ := c.cl.New(context.Background(), 1)
	defer co.Close()
	sess := c.cl.members.Load().peers[0].current()
	co.s.slots = append(co.s.slots, slot{sess: sess}) // a slot without a job: no DOIT is sent
	co.s.inbox.own(0, co.s.slots)
	row := make([]byte, 100)
	f := frame.Frame{Type: frame.TypeStream, Ref: co.s.ref(0)}
	var rb readBatch
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if err := sess.dispatch(f, row, &rb); err != nil {
			b.Fatal(err) // measuring the refusal path instead would say nothing
		}
		rb.touched, rb.acks = rb.touched[:0], rb.acks[:0]
		if i++; i%sess.window == 0 {
			rb.seq++ // the next read: a node within its window sends a job at most a window of rows per read
		}
		if i%64 == 0 {
			rb.release() // a read's run of frames holds the inbox lock, as the reader does
			co.s.spare = co.s.inbox.take(co.s.spare).reset()
		}
	}
	rb.release() // before Close, which takes the inbox lock
}

// dropUnanswered lets go of a coordinator as Close does, without the
// KILL_ALLs (and their per-call map) for jobs sent to nodes that never
// answer: what the two measurements below leave out of their figures.
func dropUnanswered(co *Coordinator) {
	co.s.table.Close()
	co.s.release()
	co.cleanup.Stop()
}

// echoJobs is n echo jobs for the node at addr, 64 bytes of args each.
func echoJobs(addr string, n int) []Job {
	js := make([]Job, n)
	for i := range js {
		js[i] = Job{Node: addr, Handler: "echo", Args: make([]byte, 64), Range: Range{0, 9}}
	}
	return js
}

// TestSubmitAllocatesNothingPerJob: submitting 192 jobs costs the same
// allocations as submitting 3 (the coordinator's own, per fan-out).
func TestSubmitAllocatesNothingPerJob(t *testing.T) {
	addr := silentNode(t)                                                                                    // accepts the handshake, then discards everything
	cl := connectedClient(t, Config{Nodes: []string{addr}, OutboundLimit: 1 << 30, InsecurePlaintext: true}) // the silent node speaks plaintext
	measure := func(jobs []Job) float64 {
		return testing.AllocsPerRun(50, func() {
			co, _ := cl.New(context.Background(), len(jobs))
			co.Submit(jobs...)
			dropUnanswered(co)
		})
	}
	small, large := measure(echoJobs(addr, 3)), measure(echoJobs(addr, 192))
	if large > small+1 { // +1: buffer growth in the writer, amortised
		t.Fatalf("allocs per fan-out: %v for 3 jobs, %v for 192: Submit allocates per job", small, large)
	}
	t.Logf("allocs per fan-out: %v (3 jobs), %v (192 jobs)", small, large)
}

// TestFanoutBytesDoNotGrowWithJobs: a fan-out's per-job arrays (its
// slots, the inbox's view of them, the reaper's pairs) are the ones the
// coordinator released before it left, so 192 jobs cost about the bytes 3
// do. Allocated per fan-out, they made a W-stream coordinator collect
// garbage every ~90 fan-outs, and those collections were its 99th
// percentile.
func TestFanoutBytesDoNotGrowWithJobs(t *testing.T) {
	addr := silentNode(t)
	cl := connectedClient(t, Config{Nodes: []string{addr}, OutboundLimit: 1 << 30, InsecurePlaintext: true})
	measure := func(jobs []Job) uint64 {
		run := func() {
			co, _ := cl.New(context.Background(), len(jobs))
			co.Submit(jobs...)
			dropUnanswered(co)
		}
		for range 5 { // the pools hold arrays of this size
			run()
		}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		const runs = 200
		for range runs {
			run()
		}
		runtime.ReadMemStats(&after)
		return (after.TotalAlloc - before.TotalAlloc) / runs
	}
	small, large := measure(echoJobs(addr, 3)), measure(echoJobs(addr, 192))
	// Allocated per fan-out, 192 jobs' arrays are about 17 KiB; the race
	// detector drops a quarter of what a sync.Pool is given (4 KiB on
	// average, and within 1 KiB of it over 200 runs).
	if large > small+10<<10 {
		t.Fatalf("bytes per fan-out: %d for 3 jobs, %d for 192: the job arrays are not reused", small, large)
	}
	t.Logf("bytes per fan-out: %d (3 jobs), %d (192 jobs)", small, large)
}

// TestClosedCoordinatorHasNoJobs: Close hands the job arrays to the next
// coordinator, so a closed one has none, and Start or Cancel on it does
// nothing.
func TestClosedCoordinatorHasNoJobs(t *testing.T) {
	addr := silentNode(t)
	cl := connectedClient(t, Config{Nodes: []string{addr}, InsecurePlaintext: true})
	co, err := cl.New(context.Background(), 2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := co.Submit(Job{Node: addr, Handler: "rows"}, Job{Node: addr, Handler: "rows"}); err != nil {
		t.Fatal(err)
	}
	if co.Len() != 2 {
		t.Fatalf("Len %d before Close, want 2", co.Len())
	}
	co.Close()
	if co.Len() != 0 {
		t.Fatalf("Len %d after Close, want 0", co.Len())
	}
	co.Start(0)
	co.Cancel(1)
	if _, err := co.Submit(Job{Node: addr, Handler: "rows"}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Submit after Close: %v, want ErrClosed", err)
	}
}

// BenchmarkSubmit: New, Submit of Q=64 × N=3 echo jobs to three nodes
// that read and discard, and the coordinator let go: the coordinator's
// own work before a fan-out's first reply can arrive, its three writes
// included.
func BenchmarkSubmit(b *testing.B) {
	addrs := []string{silentNode(b), silentNode(b), silentNode(b)}
	cl := connectedClient(b, Config{Nodes: addrs, OutboundLimit: 1 << 30, InsecurePlaintext: true}) // the silent nodes speak plaintext
	jobs := make([]Job, 0, 192)
	for r := range 64 {
		for _, a := range addrs {
			jobs = append(jobs, Job{Node: a, Handler: "echo", Nonce: []byte("nonce-12"), Args: make([]byte, 64), Range: Range{uint32(r), uint32(r)}, Timeout: 5 * time.Second})
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		co, _ := cl.New(context.Background(), len(jobs))
		if _, err := co.Submit(jobs...); err != nil {
			b.Fatal(err)
		}
		dropUnanswered(co)
	}
}
