//go:build linux

package netns

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rexi-go/rexi/coord"
	"github.com/rs/zerolog"
)

// TestNetnsCoordinator is the coordinator side of a scenario. It runs only
// as TestNetns's helper process, inside rexi-c, with REXI_NETNS_SCENARIO
// naming the scenario.
func TestNetnsCoordinator(t *testing.T) {
	name := os.Getenv(envScenario)
	if name == "" {
		t.Skip("helper process of TestNetns: it runs this inside the coordinator namespace")
	}
	sc, ok := scenarios[name]
	if !ok {
		t.Fatalf("unknown scenario %q", name)
	}
	sc.run(newCoordEnv(t, sc))
}

// coordEnv is what a scenario has in the child: a toxiproxy per node in
// this process, and the line to the parent.
type coordEnv struct {
	t     *testing.T
	addrs []string // node i as the coordinator dials it: its proxy, 127.0.0.1 in rexi-c

	mu sync.Mutex // one request in flight
	in *bufio.Reader
}

// newCoordEnv starts one proxy per node with a latency toxic each way. The
// delay is added in user space because the kernel has no netem; together
// with the nodes' packet loss it makes a link with a real RTT and
// retransmissions.
func newCoordEnv(t *testing.T, sc scenario) *coordEnv {
	zerolog.SetGlobalLevel(zerolog.Disabled) // toxics log through the global logger
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())
	e := &coordEnv{t: t, in: bufio.NewReader(os.Stdin)}
	for i := range numNodes {
		p := toxiproxy.NewProxy(srv, fmt.Sprint("n", i+1), "127.0.0.1:0", nodeAddr(i))
		if err := p.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Stop) // after the client's Close, registered later
		for _, stream := range []string{"upstream", "downstream"} {
			js := fmt.Sprintf(`{"name":"latency-%s","type":"latency","stream":%q,"toxicity":1,"attributes":{"latency":%d,"jitter":%d}}`,
				stream, stream, sc.latency, sc.jitter)
			if _, err := p.Toxics.AddToxicJson(strings.NewReader(js)); err != nil {
				t.Fatal(err)
			}
		}
		e.addrs = append(e.addrs, p.Listen)
	}
	return e
}

// ask sends a request to the parent and waits for its answer.
func (e *coordEnv) ask(req request) (reply, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	b, err := json.Marshal(req)
	if err != nil {
		return reply{}, err
	}
	// One write of one line: the parent picks it out of the test output.
	if _, err := fmt.Fprintf(os.Stdout, "%s%s\n", msgPrefix, b); err != nil {
		return reply{}, err
	}
	if req.Op == "result" {
		return reply{}, nil
	}
	line, err := e.in.ReadString('\n')
	if err != nil {
		return reply{}, fmt.Errorf("no answer to %s %v: %w", req.Op, req.Nodes, err)
	}
	var rep reply
	if err := json.Unmarshal([]byte(line), &rep); err != nil {
		return reply{}, fmt.Errorf("answer to %s: %w", req.Op, err)
	}
	if rep.Err != "" {
		return rep, fmt.Errorf("%s %v: %s", req.Op, req.Nodes, rep.Err)
	}
	return rep, nil
}

// must asks from the test goroutine and fails the test on an error.
func (e *coordEnv) must(op string, nodes ...int) reply {
	e.t.Helper()
	rep, err := e.ask(request{Op: op, Nodes: nodes})
	if err != nil {
		e.t.Fatal(err)
	}
	return rep
}

// result hands the parent a line to log (and values to keep), and logs it
// here too.
func (e *coordEnv) result(values map[string]float64, format string, args ...any) {
	e.t.Helper()
	line := fmt.Sprintf(format, args...)
	if _, err := e.ask(request{Op: "result", Line: line, Values: values}); err != nil {
		e.t.Fatal(err)
	}
}

// config is the client configuration every scenario starts from: the
// proxies as nodes, the cluster secret (connections are encrypted by
// default), and quick failure detection: heartbeats every 200 ms, a node
// silent for 1 s is down.
func (e *coordEnv) config() coord.Config {
	return coord.Config{Nodes: e.addrs, Secret: []byte(secret),
		Logger:            slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		HeartbeatInterval: 200 * time.Millisecond, HeartbeatTimeout: time.Second, DialTimeout: time.Second,
		ReconnectMin: 20 * time.Millisecond, ReconnectMax: 200 * time.Millisecond}
}

// client starts a client from cfg, closed at cleanup (before the proxies
// stop), and waits until every configured node is connected.
func (e *coordEnv) client(cfg coord.Config) *coord.Client {
	e.t.Helper()
	cl, err := coord.NewClient(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { cl.Close() })
	if len(cfg.Nodes) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		if err := cl.WaitConnected(ctx); err != nil {
			e.t.Fatalf("connecting to the nodes through their proxies: %v", err)
		}
	}
	return cl
}

// eventually polls cond until it holds, failing after waitFor.
func (e *coordEnv) eventually(what string, cond func() bool) time.Duration {
	e.t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > waitFor {
			e.t.Fatalf("timed out after %v waiting for %s", waitFor, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
	return time.Since(start)
}
