package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/rexi-go/rexi/coord"
	"github.com/rexi-go/rexi/handlers"
	"github.com/rexi-go/rexi/node"
)

// demo starts three nodes in-process on loopback, runs a Q=64 N=3
// streaming fan-out, then cancels a second one mid-stream and shows every
// node's live workers falling to zero.
func demo(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("demo", stderr)
	rows := fs.Int("rows", 10, "rows per range in the first fan-out")
	if err := fs.parse(args); err != nil {
		return err
	}
	secret := []byte("demo-secret")
	quiet := slog.New(slog.DiscardHandler)
	var nodes []*node.Node
	var addrs []string
	defer func() {
		for _, n := range nodes {
			n.Close()
		}
	}()
	for i := 0; i < 3; i++ {
		n, err := node.New(node.Config{Name: fmt.Sprint("node", i+1), Secret: secret, Logger: quiet})
		if err != nil {
			return err
		}
		handlers.Register(n)
		if err := n.Start(); err != nil {
			return fail(exitListen, "%v", err)
		}
		nodes = append(nodes, n)
		addrs = append(addrs, n.Addr())
		fmt.Fprintf(stdout, "%s listening on %s (encrypted; key %s)\n", n.Name(), n.Addr(), n.PublicKey())
	}
	// Encrypted, as by default: Noise XXpsk3 with the demo secret, then
	// AES-256-GCM records (PROTOCOL.md section 8).
	cl, err := coord.NewClient(coord.Config{Nodes: addrs, Secret: secret, Logger: quiet})
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cl.WaitConnected(ctx); err != nil {
		return fail(exitUnreachable, "%v", err)
	}

	fmt.Fprintf(stdout, "\n1. streaming fan-out: 64 ranges x 3 copies, %d rows of 100 bytes per range\n", *rows)
	spec := fanoutSpec{Handler: "rows", Q: 64, N: 3, Rows: *rows, Size: 100, Timeout: time.Minute}
	if err := spec.validate(); err != nil {
		return fail(exitUsage, "%v", err)
	}
	res, err := runFanout(context.Background(), cl, addrs, spec, nil)
	if err != nil {
		return fail(exitFailed, "fan-out: %v", err)
	}
	printSummary(stdout, res)
	fmt.Fprintf(stdout, "one copy per range streamed; the other 128 workers were cancelled and reaped\n")

	fmt.Fprintf(stdout, "\n2. the reaper: a coordinator cancelled mid-stream (64 workers streaming 1,000,000 rows each)\n")
	cctx, kill := context.WithCancel(context.Background())
	var killedAt time.Time
	spec.Args = handlers.RowsArgs(1_000_000, 100, 0)
	received := 0
	_, err = runFanout(cctx, cl, addrs, spec, func(m coord.Message) error {
		if received++; received == 5000 {
			fmt.Fprintf(stdout, "   %d rows received\n", received)
			fmt.Fprintf(stdout, "   live workers before: %s\n", liveCounts(nodes))
			killedAt = time.Now()
			kill() // e.g. the HTTP client hung up
		}
		return nil
	})
	fmt.Fprintf(stdout, "   coordinator ended: %v\n", err)
	for liveWorkers(nodes) > 0 {
		if time.Since(killedAt) > 10*time.Second {
			return fail(exitFailed, "workers still live 10s after the cancel: %s", liveCounts(nodes))
		}
		time.Sleep(20 * time.Microsecond)
	}
	fmt.Fprintf(stdout, "   live workers after %v: %s\n", time.Since(killedAt).Round(time.Microsecond), liveCounts(nodes))
	s := cl.Stats()
	fmt.Fprintf(stdout, "   coordinators: %d, KILL_ALL requests sent: %d\n", s.Fanouts, s.KillAllSent)
	return nil
}

func liveWorkers(nodes []*node.Node) int64 {
	var n int64
	for _, nd := range nodes {
		n += nd.Stats().Live
	}
	return n
}

func liveCounts(nodes []*node.Node) string {
	s := ""
	for i, n := range nodes {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%s=%d", n.Name(), n.Stats().Live)
	}
	return s
}
