package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/pprof"
	"runtime/trace"
	"slices"
	"time"

	"github.com/rexi-go/rexi/bench"
	"github.com/rexi-go/rexi/internal/live"
)

// benchCmd: rexinode bench runs the anchor workloads against running
// daemons and prints p50/p99/mean per fan-out (and JSON with -json).
func benchCmd(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("bench", stderr)
	cc := addClientCmd(fs)
	admins := fs.String("metrics", "", "comma-separated admin addresses (host:port) of the nodes; w-reap polls their /live")
	ac := addAdminClientFlags(fs)
	workloads := fs.String("workload", "all", "w-cast, w-stream, w-reap, w-conc, a comma list, or all")
	var o bench.Options
	fs.IntVar(&o.Fanouts, "fanouts", 2000, "timed fan-outs (w-reap: trials)")
	fs.IntVar(&o.Warmup, "warmup", 200, "untimed fan-outs first")
	fs.DurationVar(&o.Duration, "duration", 10*time.Second, "w-conc run time")
	fs.IntVar(&o.Concurrency, "concurrency", 8, "w-conc coordinators")
	asJSON := fs.Bool("json", false, "print results as JSON")
	samples := fs.Bool("samples", false, "with -json, include every latency sample")
	cpuProfile := fs.String("cpuprofile", "", "write this process's CPU profile (the coordinator side) to the file")
	execTrace := fs.String("trace", "", "write this process's execution trace (go tool trace: goroutine wake-ups, system calls, scheduling) to the file")
	var secret []byte
	var err error
	if o.Nodes, secret, err = cc.parse(fs, args); err != nil {
		return err
	}
	list := slices.Clone(bench.Workloads)
	if *workloads != "all" {
		list = splitList(*workloads)
	}
	metricsAddrs := splitList(*admins)
	if len(metricsAddrs) == 0 && slices.Contains(list, bench.WReap) {
		// w-reap reads the nodes' /live: asked for by name, it is a usage
		// error; as part of "all", it is left out.
		if *workloads != "all" {
			return fail(exitUsage, "-workload w-reap needs -metrics: the nodes' admin addresses, whose /live tells when the workers are gone")
		}
		fmt.Fprintln(stderr, "rexinode bench: skipping w-reap: it needs -metrics to read the nodes' live workers")
		list = slices.DeleteFunc(list, func(w string) bool { return w == bench.WReap })
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if len(metricsAddrs) > 0 {
		admin, err := ac.client()
		if err != nil {
			return err
		}
		w := live.NewWatcher(admin, metricsAddrs)
		o.WatchReap = w.Watch
		// A w-reap trial that fails before it waits leaves its long-polls
		// armed: end them with the run, and wait for them.
		defer func() { cancel(); w.Wait() }()
	}
	cl, err := connect(o.Nodes, secret, cc.client, newLogger(stderr, slog.LevelError+4, *cc.logFormat)) // quiet: the results are the output
	if err != nil {
		return err
	}
	defer cl.Close()
	r, err := bench.NewRunner(cl, o)
	if err != nil {
		return fail(exitUsage, "%v", err)
	}
	stopCPU, err := record("cpuprofile", *cpuProfile, pprof.StartCPUProfile, pprof.StopCPUProfile)
	if err != nil {
		return err
	}
	defer stopCPU()
	stopTrace, err := record("trace", *execTrace, trace.Start, trace.Stop)
	if err != nil {
		return err
	}
	defer stopTrace()
	var results []bench.Result
	for _, w := range list {
		res, err := r.Run(ctx, w)
		if err != nil {
			return fail(exitFailed, "%v", err)
		}
		if !*samples {
			res.Samples = nil
		}
		results = append(results, res)
		if !*asJSON {
			fmt.Fprintln(stdout, res)
		}
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(results)
	}
	return nil
}

// record starts a recorder (the CPU profile, the execution trace) writing
// to path, unless path is empty; the returned func stops it and closes the
// file.
func record(flag, path string, start func(io.Writer) error, stop func()) (func(), error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fail(exitUsage, "%s: %v", flag, err)
	}
	if err := start(f); err != nil {
		f.Close()
		return nil, fail(exitUsage, "%s: %v", flag, err)
	}
	return func() { stop(); f.Close() }, nil
}
