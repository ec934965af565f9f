package node

import (
	"bytes"
	"context"
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

// BenchmarkStreamFanout is one node's share of a streaming fan-out (the
// W-stream workload): 64 DOITs in one write, 64 STREAM_INITs read, then
// START for a third of them and CANCEL for the rest in one write; each
// started job streams 10 rows of 100 bytes under a window of 5 (acked five
// at a time) and a LAST. It compares loop handlers with goroutine
// handlers doing the same, plain and Streaming, client included, in one
// process.
func BenchmarkStreamFanout(b *testing.B) {
	const jobs, rows = 64, 10
	row := bytes.Repeat([]byte("r"), 100)
	for _, mode := range []string{"loop", "goroutine", "streaming"} {
		b.Run(mode, func(b *testing.B) {
			n := startNode(b, newProbe(), func(c *Config) { c.Window = 5 })
			n.HandleStream("lrows10", func(args, nonce []byte) (RowSource, error) {
				return &knownRows{countRows: countRows{n: rows, size: 100}}, nil
			})
			grows := func(ctx context.Context, w *Worker) error {
				for range rows {
					if err := w.Stream(row); err != nil {
						return err
					}
				}
				return w.Last([]byte("done"))
			}
			n.Handle("grows10", grows)
			n.Handle("srows10", grows, Streaming())
			handler := map[string]string{"loop": "lrows10", "goroutine": "grows10", "streaming": "srows10"}[mode]
			c := connect(b, n, 0)
			doit := frame.Doit{Handler: []byte(handler), Nonce: []byte("bench")}
			var ref uint64
			got := map[uint64]int{}
			fanout := func() {
				base := ref
				c.Out = c.Out[:0]
				for range jobs {
					ref++
					c.Out = c.Enc.AppendDoit(c.Out, ref, doit)
				}
				c.Send()
				for i := 0; i < jobs; i++ {
					if f, err := c.ReadFrame(waitFor); err != nil || f.Type != frame.TypeStreamInit {
						b.Fatalf("init %d: %s %v", i, f.Type, err)
					}
				}
				started := 0
				for r := base + 1; r <= ref; r++ {
					if r%3 == 0 {
						c.Out = c.Enc.AppendEmpty(c.Out, frame.TypeStart, r)
						started++
					} else {
						c.Out = c.Enc.AppendEmpty(c.Out, frame.TypeCancel, r)
					}
				}
				c.Send()
				clear(got)
				for lasts := 0; lasts < started; {
					f, err := c.ReadFrame(waitFor)
					switch {
					case err != nil:
						b.Fatal(err)
					case f.Type == frame.TypeLast:
						lasts++
					case f.Type != frame.TypeStream:
						b.Fatalf("%s for ref %d", f.Type, f.Ref)
					default:
						if got[f.Ref]++; got[f.Ref]%5 == 0 {
							c.Out = c.Enc.AppendAck(c.Out, f.Ref, 5)
						}
					}
					if len(c.Out) > 0 && c.Buffered() == 0 { // acks go out once per read, as a coordinator's do
						c.Send()
					}
				}
			}
			fanout()
			b.ResetTimer()
			for b.Loop() {
				fanout()
			}
		})
	}
}
