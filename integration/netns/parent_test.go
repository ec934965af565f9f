//go:build linux

package netns

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// cluster is the parent's side: the topology, the node processes and an
// admin client per node.
type cluster struct {
	topo       *topology
	bin        string
	secretFile string
	procs      [numNodes]*nodeProc
	admins     [numNodes]*http.Client
}

func startCluster(t *testing.T, topo *topology, bin, dir string) *cluster {
	t.Helper()
	c := &cluster{topo: topo, bin: bin, secretFile: filepath.Join(dir, "secret")}
	if err := os.WriteFile(c.secretFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Registered after the topology's cleanup, so it runs first: the
	// processes are gone before their namespaces are deleted.
	t.Cleanup(func() {
		for _, p := range c.procs {
			if p != nil {
				p.kill()
			}
		}
	})
	for i := range numNodes {
		p, err := startNode(bin, c.secretFile, i)
		if err != nil {
			t.Fatal(err)
		}
		c.procs[i], c.admins[i] = p, admin(i)
	}
	return c
}

// waitZeroLive polls the nodes' /metrics until each reports no live worker.
func (c *cluster) waitZeroLive(nodes []int) error {
	deadline := time.Now().Add(waitFor)
	for {
		var busy []string
		for _, i := range nodes {
			if n, err := metric(c.admins[i], "rexi_node_live_workers"); err != nil || n != 0 {
				busy = append(busy, fmt.Sprintf("n%d: %v live workers (err %v)", i+1, n, err))
			}
		}
		if len(busy) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("still after %v: %s", waitFor, strings.Join(busy, "; "))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// restart drains node i with SIGTERM, requires a clean exit, and starts it
// again on the same address. With busy it first waits until the node has a
// worker streaming (rows sent), so the drain has work to wait for: a copy
// waiting for START is cancelled within a round trip when another copy of
// its range wins.
func (c *cluster) restart(i int, busy bool) (map[string]float64, error) {
	streaming, deadline := 0, time.Now().Add(waitFor)
	for busy {
		var err error
		if streaming, err = streamingWorkers(c.admins[i]); err != nil {
			return nil, err
		}
		if streaming > 0 {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("n%d had no streaming worker to drain for %v", i+1, waitFor)
		}
		time.Sleep(2 * time.Millisecond)
	}
	start := time.Now()
	code, err := c.procs[i].stop(syscall.SIGTERM)
	if err != nil {
		return nil, err
	}
	drained := time.Since(start)
	if code != 0 {
		return nil, fmt.Errorf("n%d exited %d after SIGTERM, want 0 (drained)\nstderr:\n%s", i+1, code, c.procs[i].stderr)
	}
	p, err := startNode(c.bin, c.secretFile, i)
	if err != nil {
		return nil, err
	}
	c.procs[i] = p
	return map[string]float64{"streaming": float64(streaming), "drain_ms": ms(drained), "down_ms": ms(time.Since(start))}, nil
}

// restore undoes whatever a scenario left, even one that failed half-way:
// every link up, every loss rule on, every node running and idle.
func (c *cluster) restore() error {
	for i := range numNodes {
		if err := setLink(i, true); err != nil {
			return err
		}
		if err := c.topo.setLoss(i, true); err != nil {
			return err
		}
		select {
		case <-c.procs[i].done:
			p, err := startNode(c.bin, c.secretFile, i)
			if err != nil {
				return err
			}
			c.procs[i] = p
		default:
		}
	}
	return c.waitZeroLive(allNodes)
}

// handle carries out one request of the coordinator child.
func (c *cluster) handle(req request) reply {
	for _, i := range req.Nodes {
		if i < 0 || i >= numNodes {
			return reply{Err: fmt.Sprintf("no node %d", i)}
		}
	}
	var err error
	values := map[string]float64{}
	for _, i := range req.Nodes {
		switch req.Op {
		case "cut":
			err = setLink(i, false)
		case "heal":
			err = setLink(i, true)
		case "loss":
			err = c.topo.setLoss(i, req.On)
		case "restart":
			var v map[string]float64
			v, err = c.restart(i, req.Busy)
			for k, x := range v {
				values[fmt.Sprintf("n%d_%s", i+1, k)] = x
			}
		case "live0":
			err = c.waitZeroLive([]int{i})
		default:
			err = fmt.Errorf("unknown op %q", req.Op)
		}
		if err != nil {
			return reply{Err: err.Error()}
		}
	}
	return reply{Values: values}
}

// runCoordinator runs scenario sc's coordinator: this test binary again,
// inside rexi-c, with only TestNetnsCoordinator selected. It answers the
// child's requests as they come and fails with the child's whole output if
// the child fails.
func (c *cluster) runCoordinator(t *testing.T, sc scenario) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), sc.bound+30*time.Second)
	defer cancel()
	// -test.timeout below the parent's own bound: a hung child dumps its
	// goroutines before the parent kills it.
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", coordNS, exe,
		"-test.run=^TestNetnsCoordinator$", "-test.v", "-test.count=1", "-test.timeout="+(sc.bound+10*time.Second).String())
	cmd.Env = append(os.Environ(), envScenario+"="+sc.name)
	cmd.WaitDelay = 5 * time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := startOwned(cmd); err != nil {
		t.Fatal(err)
	}
	defer owned.Delete(cmd.Process.Pid)
	enc := json.NewEncoder(stdin)
	var output []string
	reported := false // a child that ran no scenario also exits 0
	lines := bufio.NewScanner(stdout)
	lines.Buffer(make([]byte, 64<<10), 4<<20)
	for lines.Scan() {
		line := lines.Text()
		msg, ok := strings.CutPrefix(line, msgPrefix)
		if !ok {
			output = append(output, line)
			if strings.HasPrefix(line, "    ") { // the child's t.Log lines
				t.Log("coordinator:" + strings.TrimPrefix(line, "   "))
			}
			continue
		}
		var req request
		if err := json.Unmarshal([]byte(msg), &req); err != nil {
			t.Errorf("unreadable message from the coordinator: %q", line)
			continue
		}
		if req.Op == "result" {
			t.Log(req.Line)
			reported = true
			continue
		}
		start := time.Now()
		rep := c.handle(req)
		if rep.Err != "" {
			t.Logf("%s %v failed after %v: %s", req.Op, req.Nodes, time.Since(start).Round(time.Millisecond), rep.Err)
		}
		if err := enc.Encode(rep); err != nil {
			t.Logf("answering %s: %v (the coordinator is gone)", req.Op, err)
		}
	}
	err = cmd.Wait()
	if err != nil || ctx.Err() != nil {
		t.Fatalf("coordinator %s failed: %v (context: %v)\n--- its output ---\n%s\n--- its stderr ---\n%s",
			sc.name, err, ctx.Err(), strings.Join(output, "\n"), stderr.String())
	}
	if !reported {
		t.Fatalf("coordinator %s exited 0 without reporting a result\n--- its output ---\n%s", sc.name, strings.Join(output, "\n"))
	}
	if err := c.waitZeroLive(allNodes); err != nil {
		t.Errorf("after the coordinator exited: %v", err)
	}
}
