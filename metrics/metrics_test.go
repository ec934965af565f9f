package metrics

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rexi-go/rexi/coord"
	"github.com/rexi-go/rexi/handlers"
	"github.com/rexi-go/rexi/internal/leak"
	"github.com/rexi-go/rexi/internal/testcluster"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, leak.IgnoreGnet...) }

// A node's and a client's collectors report the totals and the per-handler
// and per-node series a fan-out leaves behind, and pass Prometheus' lint.
func TestCollectorsAfterAFanout(t *testing.T) {
	c := testcluster.Start(t, 1, handlers.RegisterOnGoroutines) // goroutine echo and rows, plus crash and block
	n, cl := c.Nodes[0], c.Client
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	co, err := cl.New(ctx, 5)
	if err != nil {
		t.Fatal(err)
	}
	jobs, _ := coord.ShardMap{Q: 4, N: 1}.Jobs([]string{n.Addr()}, "rows", []byte(handlers.RowsArgs(3, 10, 0)))
	co.Submit(jobs...)
	if err := co.Stream(coord.StreamOptions{RecvOptions: coord.RecvOptions{Timeout: 10 * time.Second}}, func(coord.Message) error { return nil }); err != nil {
		t.Fatal(err)
	}
	co.Submit(coord.Job{Node: n.Addr(), Handler: "crash"})
	err = co.Recv(coord.RecvOptions{Timeout: 10 * time.Second}, func(m coord.Message) (bool, error) { return false, nil })
	if err != nil {
		t.Fatal(err)
	}
	co.Close()
	if err := n.WaitNoLive(ctx); err != nil {
		t.Fatal(err)
	}

	reg := prometheus.NewPedanticRegistry()
	nc, cc := NewNodeCollector(n), NewClientCollector(cl)
	reg.MustRegister(nc, cc)
	got := series(t, reg)
	for name, want := range map[string]float64{
		`rexi_node_handler_rows_total{handler="rows"}`:                      12,
		`rexi_node_handler_jobs_started_total{handler="rows"}`:              4,
		`rexi_node_handler_jobs_failed_total{handler="crash",kind="panic"}`: 1,
		`rexi_node_handler_jobs_failed_total{handler="rows",kind="error"}`:  0,
		`rexi_node_handler_live_workers{handler="rows"}`:                    0,
		`rexi_node_rows_streamed_total`:                                     12,
		`rexi_coord_fanouts_total`:                                          1,
		`rexi_coord_node_state{node="` + n.Addr() + `",state="up"}`:         1,
		`rexi_coord_node_state{node="` + n.Addr() + `",state="down"}`:       0,
	} {
		if v, ok := got[name]; !ok || v != want {
			t.Errorf("%s = %v (present %t), want %v", name, v, ok, want)
		}
	}
	for _, col := range []prometheus.Collector{nc, cc} {
		problems, err := testutil.CollectAndLint(col)
		if err != nil || len(problems) > 0 {
			t.Errorf("lint: %v %v", problems, err)
		}
	}
}

// series gathers reg into "name{label="value",...}" → value.
func series(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			key := mf.GetName()
			if len(labels) > 0 {
				key += "{" + strings.Join(labels, ",") + "}"
			}
			switch {
			case m.GetCounter() != nil:
				out[key] = m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				out[key] = m.GetGauge().GetValue()
			}
		}
	}
	return out
}
