package node

import (
	"runtime"
	"testing"

	"github.com/rexi-go/rexi/frame"
)

// BenchmarkReplyJobs: one connection, 1 000 concurrent echo jobs per op
// (DOITs written in one batch, then all 1 000 REPLYs read). Reports ns/job
// and allocs/job for the whole round trip, client side included.
func BenchmarkReplyJobs(b *testing.B) {
	const jobs = 1000
	n := startNode(b, newProbe(), nil)
	c := connect(b, n, 0)
	doit := frame.Doit{Handler: []byte("echo"), Nonce: []byte("bench"), Args: make([]byte, 64)}
	var ref uint64
	batch := func() {
		c.Out = c.Out[:0]
		for i := 0; i < jobs; i++ {
			ref++
			c.Out = c.Enc.AppendDoit(c.Out, ref, doit)
		}
		c.Send()
		for i := 0; i < jobs; i++ {
			if f, err := c.ReadFrame(waitFor); err != nil || f.Type != frame.TypeReply {
				b.Fatalf("reply %d: %s %v", i, f.Type, err)
			}
		}
	}
	batch() // warm up buffers
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	allocs0 := ms.Mallocs
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		batch()
	}
	b.StopTimer()
	runtime.ReadMemStats(&ms)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*jobs), "ns/job")
	b.ReportMetric(float64(ms.Mallocs-allocs0)/float64(b.N*jobs), "allocs/job")
}
