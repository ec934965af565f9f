package integration

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/rexi-go/rexi/coord"
	"github.com/rexi-go/rexi/internal/leak"
	"github.com/rexi-go/rexi/internal/proctest"
	"go.uber.org/goleak"
)

var rexinodeBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "rexi-integration")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if rexinodeBin, err = proctest.Build("../cmd/rexinode", dir); err != nil {
		fmt.Fprintln(os.Stderr, "building rexinode:", err)
		os.Exit(1)
	}
	goleak.VerifyTestMain(m, append(leak.IgnoreGnet, goleak.Cleanup(func(int) { os.RemoveAll(dir) }))...)
}

// soak reports whether the long versions run (make soak).
func soak() bool { return os.Getenv("REXI_SOAK") != "" }

const secret = "integration"

type cluster struct {
	t     *testing.T
	sf    string
	procs []*proctest.Proc
	addrs []string
}

// startCluster runs k daemons with extra serve flags.
func startCluster(t *testing.T, k int, flags ...string) *cluster {
	c := &cluster{t: t, sf: proctest.SecretFile(t, secret)}
	for i := 0; i < k; i++ {
		args := append([]string{"-secret-file", c.sf, "-name", fmt.Sprint("n", i), "-log-level", "warn"}, flags...)
		p := proctest.StartServe(t, rexinodeBin, args...)
		c.procs = append(c.procs, p)
		c.addrs = append(c.addrs, p.Addr)
	}
	return c
}

func (c *cluster) live() float64 {
	var n float64
	for _, p := range c.procs {
		if p.Running() {
			n += p.Metric("rexi_node_live_workers")
		}
	}
	return n
}

// client connects a coordinator client to addrs with quick failure
// detection.
func newClient(t *testing.T, addrs []string, mod func(*coord.Config)) *coord.Client {
	t.Helper()
	cfg := coord.Config{Nodes: addrs, Secret: []byte(secret), Logger: slog.New(slog.DiscardHandler),
		HeartbeatInterval: 100 * time.Millisecond, HeartbeatTimeout: time.Second, DialTimeout: time.Second,
		ReconnectMin: 20 * time.Millisecond, ReconnectMax: 200 * time.Millisecond}
	if mod != nil {
		mod(&cfg)
	}
	cl, err := coord.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), proctest.WaitFor)
	defer cancel()
	if err := cl.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	return cl
}
