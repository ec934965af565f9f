package integration

import (
	"context"
	"errors"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/rexi-go/rexi/coord"
	"github.com/rexi-go/rexi/internal/proctest"
)

// A node killed (SIGKILL) mid-stream: node-down within the heartbeat
// timeout, its ranges resumed on another node, every row exactly once.
func TestNodeKilledMidStream(t *testing.T) {
	c := startCluster(t, 3)
	cl := newClient(t, c.addrs, nil)
	var killedAt time.Time
	r := &resumable{q: 16, rows: 500, size: 20,
		place:  func(i int) string { return c.addrs[i%2] }, // ranges on nodes 0 and 1
		spares: []string{c.addrs[2], c.addrs[0]},
		onRow: func(total int) error {
			if total == 1000 && killedAt.IsZero() {
				killedAt = time.Now()
				c.procs[1].Cmd.Process.Kill()
			}
			return nil
		}}
	if err := r.run(context.Background(), cl, proctest.WaitFor); err != nil {
		t.Fatalf("fan-out failed: %v", err)
	}
	r.checkExactlyOnce(t)
	if len(r.replaced) != 8 {
		t.Fatalf("%d replacements, want node 1's 8 ranges: %v", len(r.replaced), r.replaced)
	}
	for _, err := range r.causes {
		if !errors.Is(err, coord.ErrNodeDown) {
			t.Fatalf("replacement cause %v, want node-down", err)
		}
	}
	proctest.Eventually(t, "no live worker on the surviving nodes", func() bool {
		return c.procs[0].Metric("rexi_node_live_workers") == 0 && c.procs[2].Metric("rexi_node_live_workers") == 0
	})
}

// The coordinator process killed (SIGKILL) mid-stream: every node's live
// workers reach 0 within 100 ms, by the nodes' connection-loss rule.
func TestCoordinatorProcessKilled(t *testing.T) {
	c := startCluster(t, 3)
	fanout := exec.Command(rexinodeBin, "fanout", "-secret-file", c.sf, "-nodes", c.addrs[0]+","+c.addrs[1]+","+c.addrs[2],
		"-q", "64", "-n", "3", "-rows", "100000000", "-timeout", "1m")
	if err := fanout.Start(); err != nil {
		t.Fatal(err)
	}
	defer fanout.Process.Kill()
	proctest.Eventually(t, "the fan-out streaming", func() bool {
		var rows float64
		for _, p := range c.procs {
			rows += p.Metric("rexi_node_rows_streamed_total")
		}
		return rows > 1000
	})
	var waits []func() (int64, error)
	for _, p := range c.procs {
		waits = append(waits, p.ArmZeroLive(5*time.Second))
	}
	at := time.Now()
	fanout.Process.Signal(syscall.SIGKILL)
	for i, wait := range waits {
		if left, err := wait(); err != nil || left != 0 {
			t.Fatalf("node %d: %d live workers (%v) 5 s after the coordinator died", i, left, err)
		}
	}
	if took := time.Since(at); took > 100*time.Millisecond {
		t.Fatalf("workers reaped %v after the coordinator died, want within 100ms", took)
	}
	fanout.Wait()
	if v := c.live(); v != 0 { // and /metrics agrees
		t.Fatalf("/metrics shows %v live workers", v)
	}
}

// A node frozen (SIGSTOP): detected by missed heartbeats within the
// timeout; after SIGCONT its orphaned workers are killed and it rejoins.
func TestFrozenNodeDetectedAndRejoins(t *testing.T) {
	c := startCluster(t, 2)
	cl := newClient(t, c.addrs, nil) // heartbeat timeout 1 s
	co, err := cl.New(context.Background(), 8)
	if err != nil {
		t.Fatal(err)
	}
	defer co.Close()
	for i := 0; i < 4; i++ {
		co.Submit(coord.Job{Node: c.addrs[1], Handler: "block"})
	}
	proctest.Eventually(t, "4 live workers on node 1", func() bool { return c.procs[1].Metric("rexi_node_live_workers") == 4 })
	frozen := c.procs[1]
	frozen.Cmd.Process.Signal(syscall.SIGSTOP)
	at := time.Now()
	downs := 0
	err = co.Recv(coord.RecvOptions{Timeout: proctest.WaitFor}, func(m coord.Message) (bool, error) {
		if m.Kind != coord.KindNodeDown {
			return false, errors.New("unexpected " + m.Kind.String())
		}
		downs++
		return downs == 4, nil
	})
	took := time.Since(at)
	if err != nil || downs != 4 {
		t.Fatalf("Recv: %v after %d node-down events", err, downs)
	}
	if took > 3*time.Second { // heartbeat timeout 1 s, checked every 1/8 of it
		t.Fatalf("frozen node detected after %v, want within the 1s heartbeat timeout (+ margin)", took)
	}
	frozen.Cmd.Process.Signal(syscall.SIGCONT)
	proctest.Eventually(t, "the orphaned workers killed", func() bool { return frozen.Metric("rexi_node_live_workers") == 0 })
	proctest.Eventually(t, "the node rejoined", func() bool { return cl.NodeUp(c.addrs[1]) })
	co2, _ := cl.New(context.Background(), 1)
	defer co2.Close()
	co2.Submit(coord.Job{Node: c.addrs[1], Handler: "echo", Args: []byte("back")})
	if err := co2.Recv(coord.RecvOptions{Timeout: proctest.WaitFor}, func(m coord.Message) (bool, error) {
		return m.Kind == coord.KindReply, m.Err
	}); err != nil {
		t.Fatal(err)
	}
}
