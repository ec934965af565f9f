// Command reference measures what the transport allows for W-cast on this
// host, with none of rexi: three gnet node processes that answer each
// request on their event loop, and a coordinator with a reader goroutine
// per connection, as small as the workload permits. It has no handshake,
// job table, reaper, timeouts, windows or error handling beyond stopping.
// Run it next to `make compare` to see how far rexi is from the floor:
//
//	go run ./bench/reference            # or: make reference
//
// It starts three copies of itself as nodes on 127.0.0.1, holds
// /tmp/rexi-bench.lock while it measures (as make compare does), and
// prints p50, p99 and mean over the timed fan-outs and the CPU of all four
// processes per fan-out, warm-up included.
//
// A fan-out: 64 requests per node, each an 8-byte id and 92 bytes (about
// a rexi DOIT), written in one write per node; each node answers every
// request with its id and 64 bytes, all answers of one read in one write.
// The coordinator's caller is woken per batch of answers, as rexi's is.
package main

import (
	"encoding/binary"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/rexi-go/rexi/internal/benchproc"
)

const (
	perNode  = 64
	reqBytes = 92
)

func main() {
	node := flag.Bool("node", false, "run as a node (started by the coordinator)")
	fanouts := flag.Int("fanouts", 2000, "timed fan-outs")
	warmup := flag.Int("warmup", 200, "warm-up fan-outs")
	flag.Parse()
	var err error
	if *node {
		err = serve()
	} else {
		err = measure(*fanouts, *warmup)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "reference:", err)
		os.Exit(1)
	}
}

// events is the node: frames are a 4-byte length and a body whose first
// 8 bytes are the id.
type events struct {
	gnet.BuiltinEventEngine
	out []byte
}

func (e *events) OnBoot(gnet.Engine) gnet.Action {
	fmt.Println("listening") // the coordinator waits for this line
	return gnet.None
}

func (e *events) OnTraffic(c gnet.Conn) gnet.Action {
	buf, _ := c.Peek(-1)
	out, used := e.out[:0], 0
	for len(buf)-used >= 4 {
		n := int(binary.BigEndian.Uint32(buf[used:]))
		if n < 8 {
			return gnet.Close
		}
		if len(buf)-used < 4+n {
			break
		}
		out = binary.BigEndian.AppendUint32(out, 8+64)
		out = append(out, buf[used+4:used+12]...)
		out = append(out, make([]byte, 64)...)
		used += 4 + n
	}
	if used > 0 { // gnet's Discard(0) would drop a partial frame too
		c.Discard(used)
	}
	e.out = out
	if len(out) > 0 {
		if _, err := c.Write(out); err != nil {
			return gnet.Close
		}
	}
	return gnet.None
}

func serve() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0") // find a free port, then hand it to gnet
	if err != nil {
		return err
	}
	addr := ln.Addr().String()
	ln.Close()
	fmt.Println(addr)
	return gnet.Run(&events{}, "tcp://"+addr) // one event loop: one connection
}

// measure starts three nodes, connects, and times the fan-outs.
func measure(fanouts, warmup int) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	var addrs []string
	var nodes []*exec.Cmd
	defer func() { benchproc.Stop(nodes) }()
	for range 3 {
		var lines []string
		cmd, err := benchproc.Start(self, []string{"-node"}, func(line string) bool {
			lines = append(lines, line)
			return len(lines) == 2 // its address, then "listening"
		})
		if err != nil {
			return err
		}
		nodes = append(nodes, cmd)
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
	var left atomic.Int64
	batch := make(chan struct{}, 1)
	failed := make(chan error, len(conns)) // room for every reader: none blocks after we return
	for _, c := range conns {
		go read(c, &left, batch, failed)
	}
	self0, nodes0 := cpuSeconds(nodes)
	out := make([][]byte, len(conns))
	lat := make([]time.Duration, 0, fanouts)
	var id uint64
	for i := range warmup + fanouts {
		start := time.Now()
		left.Store(int64(perNode * len(conns)))
		for k := range conns {
			b := out[k][:0]
			for range perNode {
				id++
				b = binary.BigEndian.AppendUint32(b, 8+reqBytes)
				b = binary.BigEndian.AppendUint64(b, id)
				b = append(b, make([]byte, reqBytes)...)
			}
			out[k] = b
		}
		for k, c := range conns {
			if _, err := c.Write(out[k]); err != nil {
				return err
			}
		}
		for left.Load() > 0 {
			select {
			case <-batch:
			case err := <-failed:
				return fmt.Errorf("a node's connection failed: %w", err)
			}
		}
		if i >= warmup {
			lat = append(lat, time.Since(start))
		}
	}
	self1, nodes1 := cpuSeconds(nodes)
	runs := float64(warmup + fanouts)
	slices.Sort(lat)
	var sum time.Duration
	for _, d := range lat {
		sum += d
	}
	us := func(d time.Duration) string { return d.Round(time.Microsecond).String() }
	fmt.Printf("w-cast %d runs  p50 %s  p99 %s  mean %s  CPU per fan-out (warm-up included): %.3f ms, nodes %.3f, coordinator %.3f\n",
		len(lat), us(lat[len(lat)/2]), us(lat[len(lat)*99/100]), us(sum/time.Duration(len(lat))),
		(self1-self0+nodes1-nodes0)*1000/runs, (nodes1-nodes0)*1000/runs, (self1-self0)*1000/runs)
	return nil
}

// read counts the answers on one connection and wakes the caller per
// batch; it ends when the connection does.
func read(c net.Conn, left *atomic.Int64, batch chan struct{}, failed chan<- error) {
	buf := make([]byte, 256<<10)
	end := 0
	for {
		n, err := c.Read(buf[end:])
		if err != nil {
			failed <- err
			return
		}
		end += n
		start, got := 0, 0
		for end-start >= 4 {
			m := int(binary.BigEndian.Uint32(buf[start:]))
			if end-start < 4+m {
				break
			}
			start += 4 + m
			got++
		}
		end = copy(buf, buf[start:end])
		left.Add(-int64(got))
		select {
		case batch <- struct{}{}:
		default:
		}
	}
}

// cpuSeconds is the CPU time of this process and of the nodes so far.
func cpuSeconds(nodes []*exec.Cmd) (self, total float64) {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	self = float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
	for _, c := range nodes {
		total += benchproc.CPUSeconds(c.Process.Pid)
	}
	return self, total
}
