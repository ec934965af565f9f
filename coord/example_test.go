package coord_test

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/rexi-go/rexi/coord"
	"github.com/rexi-go/rexi/node"
)

var exampleSecret = []byte("example-secret")

// startExampleNodes runs three nodes on 127.0.0.1 with an "echo", a
// "rows" and a "wait" handler, and returns their addresses.
func startExampleNodes() ([]string, func()) {
	var nodes []*node.Node
	var addrs []string
	for i := 0; i < 3; i++ {
		n, _ := node.New(node.Config{Name: fmt.Sprint("node", i), Secret: exampleSecret, Logger: slog.New(slog.DiscardHandler)})
		n.Handle("echo", func(ctx context.Context, w *node.Worker) error {
			return w.Reply(w.Args())
		})
		n.Handle("rows", func(ctx context.Context, w *node.Worker) error {
			for i := 0; i < 3; i++ {
				if err := w.Stream(fmt.Appendf(nil, "row %d", i)); err != nil {
					return err
				}
			}
			return w.Last(nil)
		})
		n.Handle("wait", func(ctx context.Context, w *node.Worker) error {
			<-ctx.Done() // killed by the coordinator's reaper
			return nil
		})
		n.Start()
		nodes = append(nodes, n)
		addrs = append(addrs, n.Addr())
	}
	return addrs, func() {
		for _, n := range nodes {
			n.Close()
		}
	}
}

func newExampleClient(addrs []string) *coord.Client {
	cl, err := coord.NewClient(coord.Config{Nodes: addrs, Secret: exampleSecret, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := cl.WaitConnected(ctx); err != nil {
		panic(err)
	}
	return cl
}

// A reply fan-out: one job per node, every reply collected.
func Example_replyFanout() {
	addrs, stop := startExampleNodes()
	defer stop()
	cl := newExampleClient(addrs)
	defer cl.Close()

	co, err := cl.New(context.Background(), len(addrs))
	if err != nil {
		panic(err)
	}
	defer co.Close() // kills whatever is left, on every path
	for _, addr := range addrs {
		co.Submit(coord.Job{Node: addr, Handler: "echo", Args: []byte("pong")})
	}
	replies := 0
	err = co.Recv(coord.RecvOptions{Timeout: 5 * time.Second}, func(m coord.Message) (bool, error) {
		if m.Err != nil {
			return false, m.Err
		}
		replies++
		return false, nil // Recv returns nil once every job has finished
	})
	fmt.Println("replies:", replies, "err:", err)
	// Output: replies: 3 err: <nil>
}

// A streaming fan-out: the ring in 4 ranges, 3 copies of each; one copy per
// range streams, the others are cancelled.
func Example_streamingFanout() {
	addrs, stop := startExampleNodes()
	defer stop()
	cl := newExampleClient(addrs)
	defer cl.Close()

	co, _ := cl.New(context.Background(), 12)
	defer co.Close()
	for _, rg := range coord.Ranges(4) {
		for _, addr := range addrs {
			co.Submit(coord.Job{Node: addr, Handler: "rows", Range: rg})
		}
	}
	var rows []string
	err := co.Stream(coord.StreamOptions{RecvOptions: coord.RecvOptions{Timeout: 5 * time.Second}},
		func(m coord.Message) error {
			if m.Kind == coord.KindRow {
				rows = append(rows, fmt.Sprintf("%v %s", m.Worker.Range, m.Payload))
			}
			return nil
		})
	slices.Sort(rows)
	fmt.Println(len(rows), "rows, err:", err)
	fmt.Println(rows[0])
	fmt.Println(rows[len(rows)-1])
	// Output:
	// 12 rows, err: <nil>
	// 00000000-3fffffff row 0
	// c0000000-ffffffff row 2
}

// Cancellation: ending the coordinator's context kills every worker it
// started, on every node, without waiting for any timeout.
func Example_cancellation() {
	addrs, stop := startExampleNodes()
	defer stop()
	cl := newExampleClient(addrs)
	defer cl.Close()

	ctx, cancel := context.WithCancel(context.Background())
	co, _ := cl.New(ctx, 3)
	defer co.Close()
	for _, addr := range addrs {
		co.Submit(coord.Job{Node: addr, Handler: "wait"})
	}
	cancel() // e.g. the HTTP client hung up; co.Bind(r.Context()) does this too
	err := co.Recv(coord.RecvOptions{}, func(coord.Message) (bool, error) { return false, nil })
	fmt.Println(err)
	// Output: coord: receive: context canceled
}
