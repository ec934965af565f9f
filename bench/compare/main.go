// Command compare runs the anchor workloads on rexi and on the gRPC-go
// baseline in one run, alternately, with three node processes each and one
// coordinator process, and prints (and writes) a table of ours, gRPC and
// the ratio, plus a latency distribution plot. With -rounds N it runs it
// all N times and the table gives the medians, each round's table after
// it. `make compare` runs it, with three rounds (COMPARE_ROUNDS).
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/rexi-go/rexi/bench"
	"github.com/rexi-go/rexi/internal/benchproc"
)

// result is what both bench commands print, plus the nodes' CPU.
type result struct {
	bench.Result
	NodeCPU   float64 `json:"node_cpu_seconds"`
	TotalRuns int     `json:"total_fanouts"` // warm-up included: CPU is divided by it
}

type system struct {
	name       string
	baseline   bool     // the gRPC-go baseline (grpcbase); the others are rexi (rexinode) variants
	flags      []string // extra flags for its node processes
	benchFlags []string // and for its coordinator
	nodes      []*exec.Cmd
	addrs      []string
	live       []string
	benchFn    func(workload string) []string
	bin        string
}

func main() {
	rexinode := flag.String("rexinode", "bin/rexinode", "rexinode binary")
	grpcbase := flag.String("grpcbase", "bin/grpcbase", "grpcbase binary")
	fanouts := flag.Int("fanouts", 2000, "timed fan-outs per workload (w-reap: trials)")
	warmup := flag.Int("warmup", 200, "warm-up fan-outs")
	duration := flag.Duration("duration", 10*time.Second, "w-conc duration")
	workloads := flag.String("workloads", "w-cast,w-stream,w-reap,w-conc", "workloads to run")
	out := flag.String("out", "bench/results", "directory for compare.json, compare.md and latency.svg")
	rounds := flag.Int("rounds", 1, "rounds: every workload on every system, once per round; the table gives medians")
	flag.Parse()
	if *rounds < 1 {
		fmt.Fprintln(os.Stderr, "compare: -rounds must be at least 1")
		os.Exit(2)
	}
	if err := run(*rexinode, *grpcbase, *fanouts, *warmup, *duration, strings.Split(*workloads, ","), *rounds, *out); err != nil {
		fmt.Fprintln(os.Stderr, "compare:", err)
		os.Exit(1)
	}
}

func run(rexinode, grpcbase string, fanouts, warmup int, duration time.Duration, workloads []string, rounds int, out string) error {
	unlock, err := benchproc.Lock(benchproc.LockPath)
	if err != nil {
		return err
	}
	defer unlock()
	tmp, err := os.MkdirTemp("", "rexi-compare")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	secret := filepath.Join(tmp, "secret")
	if err := os.WriteFile(secret, []byte("compare"), 0o600); err != nil {
		return err
	}
	common := func(w string) []string {
		return []string{"-workload", w, "-fanouts", fmt.Sprint(fanouts), "-warmup", fmt.Sprint(warmup),
			"-duration", duration.String(), "-json", "-samples"}
	}
	// The rexi variants and the baseline: the ratios are to the baseline,
	// and each variant is also compared with the first. The headline rexi
	// rows are plaintext on loopback, like the gRPC baseline's insecure
	// credentials; the encrypted row is rexi's default.
	plain := []string{"-insecure-plaintext"}
	systems := []*system{
		{name: "rexi", bin: rexinode, flags: plain, benchFlags: plain},
		{name: "rexi, goroutine handlers", bin: rexinode, flags: append([]string{"-handler-mode", "goroutine"}, plain...), benchFlags: plain},
		{name: "rexi, encrypted", bin: rexinode},
		{name: "gRPC-go", bin: grpcbase, baseline: true},
	}
	for _, s := range systems {
		defer s.stop()
	}
	for i := 0; i < 3; i++ {
		for _, s := range systems {
			args := append([]string{"serve", "-listen", "127.0.0.1:0", "-admin", "127.0.0.1:0", "-secret-file", secret, "-log-level", "error"}, s.flags...)
			if s.baseline {
				args = []string{"serve", "-listen", "127.0.0.1:0", "-live", "127.0.0.1:0"}
			}
			if err := s.start(args...); err != nil {
				return err
			}
		}
	}
	for _, s := range systems {
		s.benchFn = func(w string) []string {
			if s.baseline {
				return append([]string{"bench", "-nodes", strings.Join(s.addrs, ","), "-live", strings.Join(s.live, ",")}, common(w)...)
			}
			args := append([]string{"bench", "-secret-file", secret, "-nodes", strings.Join(s.addrs, ","), "-metrics", strings.Join(s.live, ",")}, s.benchFlags...)
			return append(args, common(w)...)
		}
	}
	// Each round runs every workload on every system, one after the
	// other, so that the ratios of a round come from one sitting, and
	// starts with a different system (see turnOrder).
	var runs []map[string][]result
	for k := range rounds {
		results := map[string][]result{}
		for _, w := range workloads {
			row := make([]result, len(systems))
			for _, i := range turnOrder(k, len(systems)) {
				s := systems[i]
				fmt.Fprintf(os.Stderr, "round %d/%d: %s %s ...\n", k+1, rounds, s.name, w)
				r, err := s.bench(w)
				if err != nil {
					return fmt.Errorf("%s %s: %w", s.name, w, err)
				}
				r.TotalRuns = r.Fanouts + warmup
				if w == "w-reap" {
					r.TotalRuns = r.Fanouts + warmup/10
				}
				row[i] = r
			}
			results[w] = row
		}
		runs = append(runs, results)
	}
	names := make([]string, len(systems))
	for i, s := range systems {
		names[i] = s.name
	}
	baseline := slices.IndexFunc(systems, func(s *system) bool { return s.baseline })
	return report(os.Stdout, names, baseline, runs, workloads, out)
}

func (s *system) start(args ...string) error {
	var addr, live string
	cmd, err := benchproc.Start(s.bin, args, func(line string) bool {
		if _, a, ok := strings.Cut(line, " listening on "); ok {
			addr = a
		}
		for _, prefix := range []string{"admin http://", "live http://"} {
			if a, ok := strings.CutPrefix(line, prefix); ok {
				live = a
			}
		}
		return addr != "" && live != ""
	})
	if err != nil {
		return err
	}
	s.nodes = append(s.nodes, cmd)
	s.addrs = append(s.addrs, addr)
	s.live = append(s.live, live)
	return nil
}

func (s *system) stop() { benchproc.Stop(s.nodes) }

// bench runs one workload and adds the nodes' CPU seconds.
func (s *system) bench(w string) (result, error) {
	cpu0 := s.nodeCPU()
	cmd := exec.Command(s.bin, s.benchFn(w)...)
	cmd.Stderr = os.Stderr
	b, err := cmd.Output()
	if err != nil {
		return result{}, err
	}
	var rs []result
	if err := json.Unmarshal(b, &rs); err != nil || len(rs) != 1 {
		return result{}, fmt.Errorf("bad bench output %q: %v", b, err)
	}
	rs[0].NodeCPU = s.nodeCPU() - cpu0
	return rs[0], nil
}

// nodeCPU sums the CPU time of the node processes.
func (s *system) nodeCPU() float64 {
	var total float64
	for _, c := range s.nodes {
		total += benchproc.CPUSeconds(c.Process.Pid)
	}
	return total
}

// turnOrder is the order in which round k runs n systems: rotated by k,
// so that over n rounds each system runs in each place once. On the
// development VM, of two runs back to back the first came out 5–15 µs
// faster, whichever it was; a fixed order would have given the first
// system that edge in every round.
func turnOrder(k, n int) []int {
	order := make([]int, n)
	for j := range order {
		order[j] = (j + k) % n
	}
	return order
}
