package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: grpcbase serve|bench [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2:])
	case "bench":
		err = benchCmd(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "grpcbase:", err)
		os.Exit(1)
	}
}

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "gRPC listen address")
	liveAddr := fs.String("live", "127.0.0.1:0", "HTTP address serving /live (running handlers)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	hl, err := net.Listen("tcp", *liveAddr)
	if err != nil {
		return err
	}
	s := &server{}
	g := grpc.NewServer()
	g.RegisterService(&serviceDesc, s)
	go http.Serve(hl, http.HandlerFunc(s.serveLive))
	fmt.Printf("grpcbase listening on %s\nlive http://%s\n", ln.Addr(), hl.Addr())
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
		<-sig
		g.Stop()
	}()
	return g.Serve(ln)
}

func benchCmd(args []string) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	nodes := fs.String("nodes", "", "comma-separated gRPC node addresses")
	live := fs.String("live", "", "comma-separated /live HTTP addresses of the nodes (for w-reap)")
	workload := fs.String("workload", "all", "w-cast, w-stream, w-reap, w-conc or all")
	var o options
	fs.IntVar(&o.Fanouts, "fanouts", 2000, "timed fan-outs (w-reap: trials)")
	fs.IntVar(&o.Warmup, "warmup", 200, "untimed fan-outs first")
	fs.DurationVar(&o.Duration, "duration", 10*time.Second, "w-conc run time")
	fs.IntVar(&o.Concurrency, "concurrency", 8, "w-conc coordinators")
	asJSON := fs.Bool("json", false, "print JSON")
	samples := fs.Bool("samples", false, "include every latency sample in the JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	addrs := strings.Split(*nodes, ",")
	var conns []*grpc.ClientConn
	for _, a := range addrs {
		c, err := grpc.NewClient(a, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return err
		}
		defer c.Close()
		conns = append(conns, c)
	}
	if *live != "" {
		o.WatchReap = watchReap(strings.Split(*live, ","))
	}
	r := newRunner(conns, o)
	list := []string{"w-cast", "w-stream", "w-reap", "w-conc"}
	if *workload != "all" {
		list = strings.Split(*workload, ",")
	}
	var results []result
	for _, w := range list {
		res, err := r.run(context.Background(), w)
		if err != nil {
			return err
		}
		if !*samples {
			res.Samples = nil
		}
		results = append(results, res)
		if !*asJSON {
			fmt.Println(res)
		}
	}
	if *asJSON {
		return json.NewEncoder(os.Stdout).Encode(results)
	}
	return nil
}

// serveLive answers /live like rexinode's: the running handlers, and with
// ?wait=D&from=N it first waits until N more handlers started, then none runs.
func (s *server) serveLive(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if v := q.Get("wait"); v != "" {
		wait, _ := time.ParseDuration(v)
		from, _ := strconv.ParseInt(q.Get("from"), 10, 64)
		ctx, cancel := context.WithTimeout(r.Context(), wait)
		defer cancel()
		base := s.started.Load()     // before the headers: the caller submits once it has them
		w.WriteHeader(http.StatusOK) // the caller knows the watch is armed
		_ = http.NewResponseController(w).Flush()
		t := time.NewTicker(time.Millisecond)
		for s.started.Load()-base < from && ctx.Err() == nil {
			select {
			case <-t.C:
			case <-ctx.Done():
			}
		}
		t.Stop()
		s.waitZero(ctx)
	}
	fmt.Fprintln(w, s.live.Load())
}

// watchReap long-polls every node's /live, as rexinode bench does.
func watchReap(addrs []string) func(context.Context, time.Duration) func() (int64, error) {
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	return func(ctx context.Context, timeout time.Duration) func() (int64, error) {
		type answer struct {
			v   int64
			err error
		}
		answers := make(chan answer, len(addrs))
		armed := make(chan struct{}, len(addrs))
		for _, a := range addrs {
			go func() {
				resp, err := armLive(ctx, c, fmt.Sprintf("http://%s/live?from=1&wait=%s", a, timeout))
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
				left += a.v
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
