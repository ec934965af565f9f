package integration

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/rexi-go/rexi/coord"
	"github.com/rexi-go/rexi/internal/proctest"
)

// A coordinator process frozen mid-stream (SIGSTOP: its sockets stay open,
// it neither reads nor writes) loses its workers after a few missed
// heartbeats — its HELLO announced 1 s, so 4 s of silence — not after the
// nodes' 30 s idle timeout.
func TestFrozenCoordinatorLosesItsWorkers(t *testing.T) {
	c := startCluster(t, 3)
	fanout := exec.Command(rexinodeBin, "fanout", "-secret-file", c.sf, "-nodes", c.addrs[0]+","+c.addrs[1]+","+c.addrs[2],
		"-q", "16", "-n", "3", "-rows", "100000000", "-timeout", "1m")
	if err := fanout.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		fanout.Process.Signal(syscall.SIGCONT)
		fanout.Process.Kill()
		fanout.Wait()
	}()
	proctest.Eventually(t, "the fan-out streaming", func() bool {
		var rows float64
		for _, p := range c.procs {
			rows += p.Metric("rexi_node_rows_streamed_total")
		}
		return rows > 1000
	})
	if err := fanout.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	at := time.Now()
	proctest.Eventually(t, "no live worker on any node", func() bool { return c.live() == 0 })
	took := time.Since(at)
	t.Logf("workers of the frozen coordinator gone %v after it froze", took.Round(time.Millisecond))
	if took > 10*time.Second { // 4 s of liveness, checked every 250 ms; the idle timeout would be 30 s
		t.Fatalf("workers lived %v after their coordinator froze", took)
	}
}

// 2 000 connections that never send a byte: beyond MaxHandshakes (256)
// each is refused at accept, so the node holds no more than that many
// descriptors for them, and a real client is served meanwhile.
func TestSilentConnectionsAreCapped(t *testing.T) {
	const silent, capped = 2000, 256
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && lim.Cur < silent+200 {
		lim.Cur = min(lim.Max, silent+200)
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
		if lim.Cur < silent+200 {
			t.Skipf("this process may open only %d files; the test needs %d", lim.Cur, silent+200)
		}
	}
	c := startCluster(t, 1)
	node := c.procs[0]
	baseFDs := openFiles(t, node)
	baseRSS := node.RSS()
	var conns []net.Conn
	defer func() {
		for _, nc := range conns {
			nc.Close()
		}
	}()
	for i := 0; i < silent; i++ {
		nc, err := net.DialTimeout("tcp", c.addrs[0], proctest.WaitFor)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		conns = append(conns, nc)
	}
	proctest.Eventually(t, "the extra connections refused", func() bool {
		return node.Metric("rexi_node_handshake_limit_refusals_total") >= silent-capped
	})
	fds, rss := openFiles(t, node), node.RSS()
	t.Logf("%d silent connections: node descriptors %d -> %d, RSS %.1f -> %.1f MiB, in the handshake %v",
		silent, baseFDs, fds, float64(baseRSS)/(1<<20), float64(rss)/(1<<20), node.Metric("rexi_node_handshaking_connections"))
	if fds > baseFDs+capped+16 {
		t.Fatalf("node holds %d descriptors (%d before): more than the %d allowed in the handshake", fds, baseFDs, capped)
	}
	for _, nc := range conns[:capped] { // free the handshake slots the silent ones hold
		nc.Close()
	}
	cl := newClient(t, c.addrs, nil)
	co, err := cl.New(t.Context(), 1)
	if err != nil {
		t.Fatal(err)
	}
	defer co.Close()
	co.Submit(coord.Job{Node: c.addrs[0], Handler: "echo", Args: []byte("served")})
	if err := co.Recv(coord.RecvOptions{Timeout: proctest.WaitFor}, func(m coord.Message) (bool, error) {
		return m.Kind == coord.KindReply, m.Err
	}); err != nil {
		t.Fatal(err)
	}
}

func openFiles(t *testing.T, p *proctest.Proc) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p.Cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}
