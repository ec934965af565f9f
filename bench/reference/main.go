// Command reference measures what the transport allows for W-cast and
// W-stream on this host, with none of rexi: three gnet node processes that
// run every job on their event loop, and a coordinator with a reader
// goroutine per connection, as small as the workloads permit. It has no
// handshake, reaper, timeouts, checksums or error handling beyond stopping.
// Run it next to `make compare` to see how far rexi is from the floor:
//
//	go run ./bench/reference            # or: make reference
//
// It starts three copies of itself as nodes on 127.0.0.1, holds
// /tmp/rexi-bench.lock while it measures (as make compare does), and
// prints p50, p99 and mean over the timed fan-outs and the CPU of all four
// processes per fan-out, warm-up included.
//
// A fan-out sends 64 requests per node, each about a rexi DOIT's size, in
// one write per node. W-cast: each node answers every request with 64
// bytes, all answers of one read in one write. W-stream, with rexi's
// semantics: each job answers INIT and waits; the first INIT per range is
// chosen and the others get CANCEL at once; once all 64 ranges are
// covered the chosen jobs get START and stream 10 rows of 100 bytes, at
// most 5 un-acked, then a last message; the coordinator's readers ACK rows
// on receipt (one write of coalesced ACKs per read). The caller is woken
// per batch of frames, as rexi's is.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/rexi-go/rexi/internal/benchproc"
)

func main() {
	node := flag.Bool("node", false, "run as a node (started by the coordinator)")
	fanouts := flag.Int("fanouts", 2000, "timed fan-outs")
	warmup := flag.Int("warmup", 200, "warm-up fan-outs")
	workloads := flag.String("workload", "w-cast,w-stream", "w-cast, w-stream or a comma list")
	flag.Parse()
	var err error
	if *node {
		err = serve()
	} else {
		err = measure(strings.Split(*workloads, ","), *fanouts, *warmup)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "reference:", err)
		os.Exit(1)
	}
}

// runs are the workloads: one fan-out each.
var runs = map[string]func(*coordinator) error{"w-cast": (*coordinator).cast, "w-stream": (*coordinator).stream}

// measure starts three nodes, connects, and times the fan-outs of each
// workload in turn.
func measure(workloads []string, fanouts, warmup int) error {
	for _, w := range workloads {
		if runs[w] == nil {
			return fmt.Errorf("unknown workload %q (w-cast, w-stream)", w)
		}
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	var addrs []string
	var cmds []*exec.Cmd
	defer func() { benchproc.Stop(cmds) }()
	for range 3 {
		var lines []string
		cmd, err := benchproc.Start(self, []string{"-node"}, func(line string) bool {
			lines = append(lines, line)
			return len(lines) == 2 // its address, then "listening"
		})
		if err != nil {
			return err
		}
		cmds = append(cmds, cmd)
		addrs = append(addrs, lines[0])
	}
	unlock, err := benchproc.Lock(benchproc.LockPath)
	if err != nil {
		return err
	}
	defer unlock()
	var conns []net.Conn
	for _, a := range addrs {
		c, err := net.Dial("tcp", a)
		if err != nil {
			return err
		}
		defer c.Close()
		conns = append(conns, c)
	}
	co := newCoordinator(conns)
	for _, w := range workloads {
		run := runs[w]
		self0, nodes0 := cpuSeconds(cmds)
		lat := make([]time.Duration, 0, fanouts)
		for i := range warmup + fanouts {
			start := time.Now()
			if err := run(co); err != nil {
				return fmt.Errorf("%s: %w", w, err)
			}
			if i >= warmup {
				lat = append(lat, time.Since(start))
			}
		}
		self1, nodes1 := cpuSeconds(cmds)
		report(w, lat, float64(warmup+fanouts), self1-self0, nodes1-nodes0)
	}
	return nil
}

// report prints p50, p99 and mean of lat and the CPU per fan-out.
func report(w string, lat []time.Duration, runs, self, nodeCPU float64) {
	slices.Sort(lat)
	var sum time.Duration
	for _, d := range lat {
		sum += d
	}
	us := func(d time.Duration) string { return d.Round(time.Microsecond).String() }
	fmt.Printf("%-8s %d runs  p50 %s  p99 %s  mean %s  CPU per fan-out (warm-up included): %.3f ms, nodes %.3f, coordinator %.3f\n",
		w, len(lat), us(lat[len(lat)/2]), us(lat[len(lat)*99/100]), us(sum/time.Duration(len(lat))),
		(self+nodeCPU)*1000/runs, nodeCPU*1000/runs, self*1000/runs)
}

// cpuSeconds is the CPU time of this process and of the nodes so far.
func cpuSeconds(cmds []*exec.Cmd) (self, total float64) {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	self = float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
	for _, c := range cmds {
		total += benchproc.CPUSeconds(c.Process.Pid)
	}
	return self, total
}
