package node

import (
	"bytes"
	"encoding/binary"
	"fmt"
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

// BenchmarkLargeEcho: one echo round trip of a large payload, DOIT written
// in one piece and REPLY read whole. The node looks at a frame only once
// it is all buffered, so the time grows linearly with the size (it was
// quadratic: every wake-up copied everything buffered so far).
func BenchmarkLargeEcho(b *testing.B) {
	for _, size := range []int{256 << 10, 1 << 20, 4 << 20, 16<<20 - 64} {
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			n := startLoopNode(b, nil)
			c := connect(b, n, 0)
			args := bytes.Repeat([]byte("e"), size)
			doit := c.Enc.AppendDoit(nil, 1, frame.Doit{Handler: []byte("lecho"), Args: args})
			b.SetBytes(int64(size))
			for ref := uint64(1); b.Loop(); ref++ {
				binary.BigEndian.PutUint64(doit[8:], ref)
				c.Write(doit)
				if f, err := c.ReadFrame(waitFor); err != nil || f.Type != frame.TypeReply || len(f.Payload) != size {
					b.Fatalf("reply: %s of %d bytes, %v", f.Type, len(f.Payload), err)
				}
			}
		})
	}
}
