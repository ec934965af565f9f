package main

import (
	"context"
	"encoding/json"
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
	admins := fs.String("metrics", "", "comma-separated admin addresses (host:port) of the nodes, read for w-reap's live-worker count")
	sec := addSecretFlags(fs)
	workloads := fs.String("workload", "all", "w-cast, w-stream, w-reap, w-conc, a comma list, or all")
	var o bench.Options
	fs.IntVar(&o.Fanouts, "fanouts", 2000, "timed fan-outs (w-reap: trials)")
	fs.IntVar(&o.Warmup, "warmup", 200, "untimed fan-outs first")
	fs.DurationVar(&o.Duration, "duration", 10*time.Second, "w-conc run time")
	fs.IntVar(&o.Concurrency, "concurrency", 8, "w-conc coordinators")
	asJSON := fs.Bool("json", false, "print results as JSON")
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
		o.LiveWorkers = scrapeLive(metricsAddrs)
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
		if w == bench.WReap && o.LiveWorkers == nil {
			fmt.Fprintln(stderr, "rexinode bench: skipping w-reap: it needs -metrics to read the nodes' live workers")
			continue
		}
		res, err := r.Run(context.Background(), w)
		if err != nil {
			return fail(exitFailed, "%v", err)
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

// scrapeLive sums rexi_node_live_workers over the nodes' /metrics.
func scrapeLive(addrs []string) func(context.Context) (int64, error) {
	client := &http.Client{Timeout: 5 * time.Second}
	return func(ctx context.Context) (int64, error) {
		var total int64
		for _, a := range addrs {
			v, err := scrapeGauge(ctx, client, "http://"+a+"/metrics", "rexi_node_live_workers")
			if err != nil {
				return 0, err
			}
			total += int64(v)
		}
		return total, nil
	}
}

func scrapeGauge(ctx context.Context, c *http.Client, url, name string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, fmt.Errorf("%s: no %s metric", url, name)
}
