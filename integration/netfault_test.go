package integration

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rexi-go/rexi/coord"
	"github.com/rexi-go/rexi/internal/proctest"
	"github.com/rs/zerolog"
)

// faultProxy puts a toxiproxy TCP proxy in front of upstream.
func faultProxy(t *testing.T, upstream string) *toxiproxy.Proxy {
	t.Helper()
	zerolog.SetGlobalLevel(zerolog.Disabled) // toxics log through the global logger
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())
	p := toxiproxy.NewProxy(srv, "node", "127.0.0.1:0", upstream)
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	return p
}

func addToxic(t *testing.T, p *toxiproxy.Proxy, typ, stream string, attrs string) {
	t.Helper()
	js := fmt.Sprintf(`{"name":"%s-%s","type":%q,"stream":%q,"toxicity":1,"attributes":%s}`, typ, stream, typ, stream, attrs)
	if _, err := p.Toxics.AddToxicJson(strings.NewReader(js)); err != nil {
		t.Fatal(err)
	}
}

// Each fault sits between the coordinator and node 1 (through the proxy);
// node 0 and node 2 are reached directly. Expected: the fan-out finishes
// (faults that only slow) or node 1's ranges are replaced on node 2
// (faults that break the link), never a hang beyond the timeouts, every
// row once, and no worker left on any node.
func TestNetworkFaults(t *testing.T) {
	cases := []struct {
		name     string
		toxic    func(t *testing.T, p *toxiproxy.Proxy)
		replaced bool // the link breaks: node 1's ranges move
	}{
		{"latency 30ms", func(t *testing.T, p *toxiproxy.Proxy) {
			addToxic(t, p, "latency", "downstream", `{"latency":30}`)
			addToxic(t, p, "latency", "upstream", `{"latency":30}`)
		}, false},
		{"bandwidth 64KB/s", func(t *testing.T, p *toxiproxy.Proxy) {
			addToxic(t, p, "bandwidth", "downstream", `{"rate":64}`)
		}, false},
		{"blackholed link", func(t *testing.T, p *toxiproxy.Proxy) {
			addToxic(t, p, "timeout", "downstream", `{"timeout":0}`) // data stops, the connection stays open
			addToxic(t, p, "timeout", "upstream", `{"timeout":0}`)
		}, true},
		{"connection reset", func(t *testing.T, p *toxiproxy.Proxy) {
			addToxic(t, p, "reset_peer", "downstream", `{"timeout":0}`)
		}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := startCluster(t, 3)
			px := faultProxy(t, c.addrs[1])
			addrs := []string{c.addrs[0], px.Listen, c.addrs[2]}
			cl := newClient(t, addrs, nil) // heartbeat timeout 1 s
			injected := false
			r := &resumable{q: 8, rows: 200, size: 100,
				place:  func(i int) string { return addrs[i%2] },
				spares: []string{addrs[2]},
				onRow: func(total int) error {
					if total == 100 && !injected {
						injected = true
						tc.toxic(t, px)
					}
					return nil
				}}
			start := time.Now()
			err := r.run(context.Background(), cl, 30*time.Second)
			if err != nil {
				var te *coord.TimeoutError
				if errors.As(err, &te) {
					t.Fatalf("fan-out hung until its timeout: %v", err)
				}
				t.Fatalf("fan-out failed: %v", err)
			}
			r.checkExactlyOnce(t)
			if tc.replaced && len(r.replaced) == 0 {
				t.Fatal("the link broke but nothing was replaced")
			}
			for _, cause := range r.causes {
				if !errors.Is(cause, coord.ErrNodeDown) {
					t.Fatalf("replacement cause %v, want a typed node-down", cause)
				}
			}
			t.Logf("%s: done in %v, %d ranges replaced", tc.name, time.Since(start).Round(time.Millisecond), len(r.replaced))
			px.Toxics.ResetToxics(context.Background())
			proctest.Eventually(t, "no worker left on any node", func() bool { return c.live() == 0 })
		})
	}
}
