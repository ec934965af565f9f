package integration

import (
	"context"
	"testing"

	"github.com/rexi-go/rexi/coord"
	"github.com/rexi-go/rexi/frame"
	"github.com/rexi-go/rexi/handlers"
	"github.com/rexi-go/rexi/internal/proctest"
)

// A coordinator that stops reading while its workers stream: the node's
// memory stays within its outbound bound, other connections keep flowing,
// and the stuck workers stop at the ack timeout.
func TestSlowReader(t *testing.T) {
	const limit, rowSize = 1 << 20, 512 << 10
	c := startCluster(t, 1, "-outbound-limit", "1048576", "-ack-timeout", "2s")
	node := c.procs[0]
	heap0 := node.Metric("go_memstats_heap_inuse_bytes")

	// 64 workers streaming 512 KiB rows: 160 MiB if the windows filled.
	slow := dialAuth(t, c.addrs[0])
	var out []byte
	for ref := uint64(1); ref <= 64; ref++ {
		out = slow.Enc.AppendDoit(out, ref, frame.Doit{Handler: []byte("rows"), Args: []byte(handlers.RowsArgs(1000, rowSize, 0))})
	}
	slow.Out = out
	slow.Send()
	inits := 0
	for inits < 64 {
		f, err := slow.ReadFrame(proctest.WaitFor)
		if err != nil {
			t.Fatal(err)
		}
		if f.Type == frame.TypeStreamInit {
			inits++
			slow.Control(frame.TypeStart, f.Ref)
		}
	}
	// ... and now it reads nothing more.
	var peak float64
	proctest.Eventually(t, "workers waiting for output room", func() bool {
		peak = max(peak, node.Metric("go_memstats_heap_inuse_bytes"))
		return node.Metric("rexi_node_output_waits_total") > 0
	})

	// Another coordinator streams meanwhile, undisturbed.
	cl := newClient(t, c.addrs, nil)
	co, _ := cl.New(context.Background(), 8)
	defer co.Close()
	for _, rg := range coord.Ranges(8) {
		co.Submit(coord.Job{Node: c.addrs[0], Handler: "rows", Range: rg, Args: []byte("100:100")})
	}
	rows := 0
	if err := co.Stream(coord.StreamOptions{RecvOptions: coord.RecvOptions{Timeout: proctest.WaitFor}}, func(m coord.Message) error {
		if m.Kind == coord.KindRow {
			rows++
		}
		return nil
	}); err != nil || rows != 800 {
		t.Fatalf("the other coordinator: %v after %d rows", err, rows)
	}

	proctest.Eventually(t, "the stuck workers stopped by the ack timeout", func() bool {
		peak = max(peak, node.Metric("go_memstats_heap_inuse_bytes"))
		return node.Metric(`rexi_node_timeouts_total{kind="ack"}`) >= 64 && node.Metric("rexi_node_live_workers") == 0
	})
	// Memory: the 160 MiB the windows would hold never piled up in the node.
	// Bound: the outbound limit, each handler's row buffer and as much again
	// for the garbage collector's pacing (GOGC=100 lets the heap reach twice
	// what is live), the two output buffers,
	// and 24 MiB of runtime slack. (Heap, not RSS:
	// the -race build's shadow memory would swamp the figure.)
	bound := float64(3*limit + 2*64*rowSize + 24<<20)
	if grew := peak - heap0; grew > bound {
		t.Fatalf("node heap grew by %.1f MiB, bound %.1f MiB (outbound limit %d MiB)", grew/(1<<20), bound/(1<<20), limit>>20)
	}
	t.Logf("node heap grew by %.1f MiB at most (bound %.1f MiB); ack timeouts %v",
		(peak-heap0)/(1<<20), bound/(1<<20), node.Metric(`rexi_node_timeouts_total{kind="ack"}`))
	slow.NC.Close()
}
