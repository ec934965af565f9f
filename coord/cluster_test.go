package coord

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rexi-go/rexi/node"
)

const waitFor = 10 * time.Second

var secret = []byte("coord-test-secret")

func testLogger() *slog.Logger {
	if testing.Verbose() && os.Getenv("REXI_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// registerTestHandlers installs the handlers every test cluster has.
func registerTestHandlers(n *node.Node) {
	n.Handle("echo", func(ctx context.Context, w *node.Worker) error { return w.Reply(w.Args()) })
	n.Handle("crash", func(ctx context.Context, w *node.Worker) error { panic("boom") })
	// block runs until killed.
	n.Handle("block", func(ctx context.Context, w *node.Worker) error {
		<-ctx.Done()
		return ctx.Err()
	})
	// rows streams "count[:size[:start]]" rows; row i is "<node>/<start+i>/" padded to size.
	n.Handle("rows", func(ctx context.Context, w *node.Worker) error {
		count, size, start := rowsArgs(string(w.Args()))
		buf := make([]byte, 0, size)
		for i := start; i < count; i++ {
			buf = append(buf[:0], strconv.Itoa(i)...)
			buf = append(buf, '/')
			for len(buf) < size {
				buf = append(buf, '.')
			}
			if err := w.Stream(buf); err != nil {
				return err
			}
		}
		return w.Last([]byte(n.Name()))
	})
}

func rowsArgs(s string) (count, size, start int) {
	parts := strings.Split(s, ":")
	count, _ = strconv.Atoi(parts[0])
	size = 100
	if len(parts) > 1 {
		size, _ = strconv.Atoi(parts[1])
	}
	if len(parts) > 2 {
		start, _ = strconv.Atoi(parts[2])
	}
	return
}

type cluster struct {
	nodes []*node.Node
	addrs []string
	cl    *Client
}

// newCluster starts k real nodes on 127.0.0.1 and a connected client.
func newCluster(t testing.TB, k int, mod func(*Config), nodeMod func(*node.Config)) *cluster {
	t.Helper()
	c := &cluster{}
	for i := 0; i < k; i++ {
		cfg := node.Config{Name: fmt.Sprintf("n%d", i), Secret: secret, Logger: testLogger()}
		if nodeMod != nil {
			nodeMod(&cfg)
		}
		n, err := node.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		registerTestHandlers(n)
		if err := n.Start(); err != nil {
			t.Fatal(err)
		}
		c.nodes = append(c.nodes, n)
		c.addrs = append(c.addrs, n.Addr())
	}
	t.Cleanup(func() { // runs after the client's cleanup: nodes outlive it
		for _, n := range c.nodes {
			n.Close()
		}
	})
	cfg := Config{Nodes: c.addrs}
	if mod != nil {
		mod(&cfg)
	}
	c.cl = connectedClient(t, cfg)
	return c
}

// connectedClient starts a client (test secret and logger unless set),
// closed when the test ends, and waits until every node is connected.
func connectedClient(t testing.TB, cfg Config) *Client {
	t.Helper()
	if cfg.Secret == nil {
		cfg.Secret = secret
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger()
	}
	cl, err := NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := cl.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	return cl
}

// jobs builds a Q×N fan-out: job (r, copy) runs on node copy%len(nodes).
func (c *cluster) jobs(q, n int, handler, args string) []Job {
	var out []Job
	for ri, rg := range Ranges(q) {
		for cp := 0; cp < n; cp++ {
			out = append(out, Job{Node: c.addrs[cp%len(c.addrs)], Handler: handler, Args: []byte(args), Range: rg,
				Nonce: []byte("r" + strconv.Itoa(ri))})
		}
	}
	return out
}

func (c *cluster) live() int64 {
	var n int64
	for _, nd := range c.nodes {
		n += nd.Stats().Live
	}
	return n
}

func (c *cluster) running() int64 {
	var n int64
	for _, nd := range c.nodes {
		n += nd.Stats().Running
	}
	return n
}

// waitLive waits until the nodes hold want live workers in total.
func (c *cluster) waitLive(t testing.TB, want int64) {
	t.Helper()
	eventually(t, fmt.Sprintf("%d live workers on the nodes", want), func() bool { return c.live() == want })
}

// waitReaped waits until no node has a live worker and reports how long
// that took from since; it fails past the bound the issue sets (50 ms).
func (c *cluster) waitReaped(t testing.TB, since time.Time, bound time.Duration) time.Duration {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for c.live() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("after %v, %d workers still live on the nodes", waitFor, c.live())
		}
		time.Sleep(50 * time.Microsecond)
	}
	took := time.Since(since)
	if took > bound {
		t.Fatalf("workers reaped %v after the coordinator ended, want within %v", took, bound)
	}
	eventually(t, "every handler goroutine returned", func() bool { return c.running() == 0 })
	return took
}

func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", waitFor, what)
		}
		time.Sleep(100 * time.Microsecond)
	}
}

func mustNew(t testing.TB, cl *Client, ctx context.Context, capacity int) *Coordinator {
	t.Helper()
	co, err := cl.New(ctx, capacity)
	if err != nil {
		t.Fatal(err)
	}
	return co
}
