// Package testcluster starts nodes and a client in the test's own process,
// talking over real TCP on 127.0.0.1, for the tests and benchmarks of
// packages outside node and coord (whose in-package tests cannot import
// it: it imports both).
package testcluster

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/rexi-go/rexi/coord"
	"github.com/rexi-go/rexi/node"
)

// Cluster is nodes and a client connected to all of them.
type Cluster struct {
	Nodes  []*node.Node
	Addrs  []string // the nodes' addresses, in order
	Client *coord.Client
}

// Start starts n nodes, named n0, n1 and so on, with the handlers
// register installs on each, and a client for all of them, and returns
// once the client is connected to every node. The client and then the
// nodes are closed when tb ends. Nothing is logged.
func Start(tb testing.TB, n int, register func(*node.Node)) *Cluster {
	tb.Helper()
	quiet := slog.New(slog.DiscardHandler)
	secret := []byte("testcluster")
	c := &Cluster{}
	tb.Cleanup(func() { // registered first, so it runs last: after the client's
		for _, nd := range c.Nodes {
			nd.Close()
		}
	})
	for i := range n {
		nd, err := node.New(node.Config{Name: fmt.Sprint("n", i), Secret: secret, Logger: quiet})
		if err != nil {
			tb.Fatal(err)
		}
		register(nd)
		if err := nd.Start(); err != nil {
			tb.Fatal(err)
		}
		c.Nodes = append(c.Nodes, nd)
		c.Addrs = append(c.Addrs, nd.Addr())
	}
	cl, err := coord.NewClient(coord.Config{Nodes: c.Addrs, Secret: secret, Logger: quiet})
	if err != nil {
		tb.Fatal(err)
	}
	c.Client = cl
	tb.Cleanup(func() { cl.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cl.WaitConnected(ctx); err != nil {
		tb.Fatal(err)
	}
	return c
}
