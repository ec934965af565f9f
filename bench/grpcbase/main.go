package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/rexi-go/rexi/internal/live"
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
	go http.Serve(hl, live.Handler(s))
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
	liveAddrs := fs.String("live", "", "comma-separated /live HTTP addresses of the nodes (for w-reap)")
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
	if *liveAddrs != "" {
		w := live.NewWatcher(live.NewAdminClient(nil, nil), strings.Split(*liveAddrs, ","))
		o.WatchReap = w.Watch
		defer w.Wait() // each trial ends its long-polls (runner.reapOnce)
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
