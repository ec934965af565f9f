//go:build linux

package netns

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestNetns builds the five-namespace topology, starts the three nodes and
// runs every scenario's coordinator in rexi-c, one after the other. The
// cluster is put back in shape between scenarios (links up, loss on, every
// node running, no live worker), so one failure does not cascade.
func TestNetns(t *testing.T) {
	if os.Getenv(envScenario) != "" {
		t.Skip("this process is a coordinator child; TestNetnsCoordinator runs here")
	}
	requireNetns(t)
	began := time.Now()
	lockRun(t)
	trapSignals(t)
	if swept := sweep(); len(swept) > 0 {
		t.Logf("swept what an earlier run left: %v", swept)
	}
	topo := newTopology(t)
	dir := t.TempDir()
	bin, err := buildRexinode(dir)
	if err != nil {
		t.Fatal(err)
	}
	c := startCluster(t, topo, bin, dir)
	for _, sc := range orderedScenarios() {
		t.Run(sc.name, func(t *testing.T) {
			start := time.Now()
			c.runCoordinator(t, sc)
			t.Logf("%s: %v", sc.name, time.Since(start).Round(time.Millisecond))
		})
		if err := c.restore(); err != nil {
			t.Fatalf("putting the cluster back after %s: %v", sc.name, err)
		}
	}
	dropped, err := topo.droppedTotal()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("the 1%% loss rules dropped %d TCP packets on the node links", dropped)
	if dropped == 0 {
		t.Error("the loss rules dropped no packet: the links were not impaired")
	}
	t.Logf("whole run (build included): %v", time.Since(began).Round(time.Second))
}

// requireNetns skips unless REXI_NETNS=1 and the machine can run the test.
// Whether namespaces can really be created is probed by newTopology.
func requireNetns(t *testing.T) {
	t.Helper()
	if os.Getenv("REXI_NETNS") != "1" {
		t.Skip("network-namespace tests need root and a minute or two: `make test-netns` runs them (REXI_NETNS=1)")
	}
	if uid := os.Geteuid(); uid != 0 {
		t.Skipf("creating network namespaces needs root (running as uid %d)", uid)
	}
	for _, tool := range []string{"ip", "iptables"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not found (%v): install iproute2 and iptables (apt-get install -y iproute2 iptables)", tool, err)
		}
	}
}

// lockPath serialises runs on one machine: the topology's names and
// addresses are fixed, and sweep must never delete a live run's namespaces.
const lockPath = "/run/rexi-netns.lock"

// lockRun takes the run lock (flock, released by the kernel if this process
// dies), waiting a bounded time for another run to finish.
func lockRun(t *testing.T) {
	t.Helper()
	f, err := os.OpenFile(lockPath, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatalf("run lock: %v", err)
	}
	t.Cleanup(func() { f.Close() })
	deadline := time.Now().Add(3 * time.Minute)
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			t.Fatalf("run lock %s: %v", lockPath, err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("another netns run still holds %s after 3m", lockPath)
		}
		time.Sleep(100 * time.Millisecond) // another process's lock: no event to wait on
	}
}

// trapSignals makes an interrupted run (Ctrl-C, SIGTERM from CI) clean up
// too: kill the processes it started, delete the namespaces, exit. Test
// failures and panics clean up through t.Cleanup; a run killed with
// SIGKILL is swept by the next one.
func trapSignals(t *testing.T) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		select {
		case s := <-sigs:
			owned.Range(func(pid, _ any) bool {
				syscall.Kill(pid.(int), syscall.SIGKILL)
				return true
			})
			sweep()
			fmt.Fprintf(os.Stderr, "netns: %v: killed the cluster and deleted its namespaces\n", s)
			os.Exit(1)
		case <-stop:
		}
	}()
	t.Cleanup(func() {
		signal.Stop(sigs)
		close(stop)
		<-done
	})
}
