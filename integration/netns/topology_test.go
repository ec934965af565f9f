//go:build linux

package netns

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Names and addresses. Everything is prefixed rexi- so that sweep can find
// what a killed run left; interface names stay under the kernel's 15 bytes.
const (
	prefix     = "rexi-"
	coordNS    = "rexi-c"
	bridgeNS   = "rexi-br"
	bridgeName = "rexi-br0"
	numNodes   = 3
	nodePort   = 7070
	adminAddr  = "127.0.0.1:7071" // each node's admin, on the loopback of its own namespace
	lossProb   = "0.01"
)

func nodeNS(i int) string     { return fmt.Sprintf("rexi-n%d", i+1) }
func nodeAddr(i int) string   { return fmt.Sprintf("10.77.0.%d:%d", 11+i, nodePort) }
func vethIn(ns string) string { return ns + "-eth" } // the end inside ns, holding its address
func vethBr(ns string) string { return ns + "-br" }  // the end enslaved to the bridge

// cmdTimeout bounds every ip/iptables command: they take milliseconds.
const cmdTimeout = 10 * time.Second

// run runs a command to completion and returns its combined output; the
// error carries the command line and output, for failure messages.
func run(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// topology is the five namespaces and their links, used from the test
// goroutine only (the signal trap calls sweep instead).
type topology struct {
	lossOn  [numNodes]bool
	dropped int64 // packets the loss rules dropped, from rules since removed
}

// newTopology builds the namespaces, the bridge, one veth pair per
// namespace and the loss rules. The first `ip netns add` doubles as the
// permission probe: if it fails the test is skipped, saying why.
func newTopology(t *testing.T) *topology {
	t.Helper()
	if out, err := run("ip", "netns", "add", bridgeNS); err != nil {
		t.Skipf("cannot create network namespaces, skipping (needs root with CAP_SYS_ADMIN and CAP_NET_ADMIN): %v", strings.TrimSpace(out))
	}
	topo := &topology{}
	t.Cleanup(func() {
		for _, err := range topo.teardown() {
			t.Error(err)
		}
	})
	steps := [][]string{
		{"ip", "-n", bridgeNS, "link", "add", bridgeName, "type", "bridge"},
		{"ip", "-n", bridgeNS, "link", "set", bridgeName, "up"},
	}
	hosts := map[string]string{coordNS: "10.77.0.10"}
	for i := 0; i < numNodes; i++ {
		hosts[nodeNS(i)] = strings.Split(nodeAddr(i), ":")[0]
	}
	for ns, ip := range hosts {
		// The pair is created with each end already in its namespace, so
		// nothing of ours ever sits in the root namespace.
		steps = append(steps,
			[]string{"ip", "netns", "add", ns},
			[]string{"ip", "-n", bridgeNS, "link", "add", vethBr(ns), "type", "veth", "peer", "name", vethIn(ns), "netns", ns},
			[]string{"ip", "-n", bridgeNS, "link", "set", vethBr(ns), "master", bridgeName},
			[]string{"ip", "-n", bridgeNS, "link", "set", vethBr(ns), "up"},
			[]string{"ip", "-n", ns, "addr", "add", ip + "/24", "dev", vethIn(ns)},
			[]string{"ip", "-n", ns, "link", "set", vethIn(ns), "up"},
			[]string{"ip", "-n", ns, "link", "set", "lo", "up"}, // admin HTTP and the proxies listen there
		)
	}
	for _, s := range steps {
		if _, err := run(s...); err != nil {
			t.Fatalf("building the topology: %v", err)
		}
	}
	// toxiproxy dials a node synchronously in its accept loop, with no
	// timeout: while a node's link is down that proxy (and its Stop, if
	// the scenario fails then) would wait out the kernel's SYN retries,
	// about 2 minutes. Two retries make a dial give up after 7 s.
	if _, err := run("ip", "netns", "exec", coordNS, "sh", "-c", "echo 2 > /proc/sys/net/ipv4/tcp_syn_retries"); err != nil {
		t.Fatalf("building the topology: %v", err)
	}
	for i := 0; i < numNodes; i++ {
		if err := topo.setLoss(i, true); err != nil {
			t.Fatalf("adding the loss rule: %v", err)
		}
	}
	return topo
}

// lossRule is the iptables rule spec after -A/-D: 1 % of the TCP packets
// arriving on the node's link are dropped (loopback traffic, such as the
// admin endpoint, is spared).
func lossRule(i int) []string {
	return []string{"INPUT", "-i", vethIn(nodeNS(i)), "-p", "tcp",
		"-m", "statistic", "--mode", "random", "--probability", lossProb, "-j", "DROP"}
}

// setLoss adds or removes node i's loss rule; removing it first adds its
// drop counter to dropped.
func (topo *topology) setLoss(i int, on bool) error {
	if topo.lossOn[i] == on {
		return nil
	}
	ns := nodeNS(i)
	if !on {
		n, err := dropCount(ns)
		if err != nil {
			return err
		}
		topo.dropped += n
	}
	op := "-D"
	if on {
		op = "-A"
	}
	if _, err := run(append([]string{"ip", "netns", "exec", ns, "iptables", op}, lossRule(i)...)...); err != nil {
		return err
	}
	topo.lossOn[i] = on
	return nil
}

// dropCount reads the packet counter of the statistic DROP rule in ns.
func dropCount(ns string) (int64, error) {
	out, err := run("ip", "netns", "exec", ns, "iptables", "-L", "INPUT", "-v", "-x", "-n")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 2 && f[2] == "DROP" && strings.Contains(line, "statistic") {
			return strconv.ParseInt(f[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("no loss rule in %s:\n%s", ns, out)
}

// droppedTotal is every packet the loss rules dropped so far.
func (topo *topology) droppedTotal() (int64, error) {
	total := topo.dropped
	for i := 0; i < numNodes; i++ {
		if topo.lossOn[i] {
			n, err := dropCount(nodeNS(i))
			if err != nil {
				return 0, err
			}
			total += n
		}
	}
	return total, nil
}

// setLink brings node i's veth up or down, inside its namespace: for its
// sockets the network is gone, but the process and its loopback admin
// endpoint are untouched.
func setLink(i int, up bool) error {
	state := "down"
	if up {
		state = "up"
	}
	_, err := run("ip", "-n", nodeNS(i), "link", "set", vethIn(nodeNS(i)), state)
	return err
}

// teardown deletes every namespace (and with them the veths and the
// bridge). The node and coordinator processes must be gone already: a
// namespace a process still holds outlives its name, so one is reported.
func (topo *topology) teardown() []error {
	var errs []error
	for _, ns := range ourNamespaces() {
		if pids := nsPids(ns); len(pids) > 0 {
			errs = append(errs, fmt.Errorf("processes %v still in namespace %s at teardown; killing them", pids, ns))
			killPids(pids)
		}
		if _, err := run("ip", "netns", "del", ns); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// ourNamespaces lists the namespaces named rexi-*.
func ourNamespaces() []string {
	out, _ := run("ip", "netns", "list")
	var names []string
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], prefix) {
			names = append(names, f[0])
		}
	}
	return names
}

func nsPids(ns string) []int {
	out, _ := run("ip", "netns", "pids", ns)
	var pids []int
	for _, f := range strings.Fields(out) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// killPids SIGKILLs pids found in our namespaces and waits (bounded) until
// they are gone, so the namespace can be deleted.
func killPids(pids []int) {
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, pid := range pids {
		for time.Now().Before(deadline) {
			if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil {
				break
			}
			time.Sleep(10 * time.Millisecond) // not our child: nothing to wait on but /proc
		}
	}
}

// sweep removes what a killed run left: rexi-* namespaces (after killing
// the processes still in them: a previous run's nodes or coordinator) and
// rexi-* links in the root namespace. It runs under the run lock, so it
// never touches a live run.
func sweep() []string {
	var swept []string
	for _, ns := range ourNamespaces() {
		if pids := nsPids(ns); len(pids) > 0 {
			killPids(pids)
			swept = append(swept, fmt.Sprintf("processes %v in %s", pids, ns))
		}
		if _, err := run("ip", "netns", "del", ns); err == nil {
			swept = append(swept, "namespace "+ns)
		}
	}
	out, _ := run("ip", "-o", "link", "show")
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
		if strings.HasPrefix(name, prefix) {
			if _, err := run("ip", "link", "del", name); err == nil {
				swept = append(swept, "link "+name)
			}
		}
	}
	return swept
}
