package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/rexi-go/rexi/bench"
)

// benchCmd: rexinode bench runs the anchor workloads against running
// daemons and prints p50/p99/mean per fan-out (and JSON with -json).
func benchCmd(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("bench", stderr)
	nodes := fs.String("nodes", "", "comma-separated node addresses (3 for the anchor workloads)")
	admins := fs.String("metrics", "", "comma-separated admin addresses (host:port) of the nodes; w-reap polls their /live")
	sec := addSecretFlags(fs)
	workloads := fs.String("workload", "all", "w-cast, w-stream, w-reap, w-conc, a comma list, or all")
	var o bench.Options
	fs.IntVar(&o.Fanouts, "fanouts", 2000, "timed fan-outs (w-reap: trials)")
	fs.IntVar(&o.Warmup, "warmup", 200, "untimed fan-outs first")
	fs.DurationVar(&o.Duration, "duration", 10*time.Second, "w-conc run time")
	fs.IntVar(&o.Concurrency, "concurrency", 8, "w-conc coordinators")
	asJSON := fs.Bool("json", false, "print results as JSON")
	samples := fs.Bool("samples", false, "with -json, include every latency sample")
	fs.String("config", "", "JSON file of flag values")
	cf := addClientFlags(fs, true)
	if err := fs.parse(args); err != nil {
		return err
	}
	secret, err := sec.resolve()
	if err != nil {
		return err
	}
	o.Nodes = splitList(*nodes)
	if len(o.Nodes) == 0 {
		return fail(exitUsage, "-nodes is required")
	}
	list := bench.Workloads
	if *workloads != "all" {
		list = splitList(*workloads)
	}
	if metricsAddrs := splitList(*admins); len(metricsAddrs) > 0 {
		o.WatchReap = watchReap(metricsAddrs)
	}
	cl, err := connect(o.Nodes, secret, cf, newLogger(stderr, 8))
	if err != nil {
		return err
	}
	defer cl.Close()
	r, err := bench.NewRunner(cl, o)
	if err != nil {
		return fail(exitUsage, "%v", err)
	}
	var results []bench.Result
	for _, w := range list {
		if w == bench.WReap && o.WatchReap == nil {
			fmt.Fprintln(stderr, "rexinode bench: skipping w-reap: it needs -metrics to read the nodes' live workers")
			continue
		}
		res, err := r.Run(context.Background(), w)
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

// watchReap long-polls every node's /live?from=1&wait=...: each request
// is in flight before the jobs are submitted and answers once the node had
// a live worker and then none, so no polling skews the measurement.
func watchReap(addrs []string) func(context.Context, time.Duration) func() (int64, error) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	return func(ctx context.Context, timeout time.Duration) func() (int64, error) {
		type answer struct {
			live int64
			err  error
		}
		answers := make(chan answer, len(addrs))
		armed := make(chan struct{}, len(addrs))
		for _, a := range addrs {
			go func() {
				resp, err := armLive(ctx, client, fmt.Sprintf("http://%s/live?from=1&wait=%s", a, timeout))
				armed <- struct{}{}
				if err != nil {
					answers <- answer{0, err}
					return
				}
				v, err := readLive(resp)
				answers <- answer{v, err}
			}()
		}
		for range addrs {
			<-armed
		}
		return func() (int64, error) {
			var left int64
			var errs []error
			for range addrs {
				a := <-answers
				left += a.live
				errs = append(errs, a.err)
			}
			return left, errors.Join(errs...)
		}
	}
}

// armLive sends a long-poll request and returns once the node has
// answered its headers (the watch is armed); read the body for the result.
func armLive(ctx context.Context, c *http.Client, url string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	return c.Do(req)
}

func readLive(resp *http.Response) (int64, error) {
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
}
