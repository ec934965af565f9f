package main

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/rexi-go/rexi/coord"
	"github.com/rexi-go/rexi/handlers"
	"github.com/rexi-go/rexi/internal/leak"
	"github.com/rexi-go/rexi/node"
	"go.uber.org/goleak"
)

// Every node, worker, connection and HTTP handler must be gone at the end.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m, leak.IgnoreGnet...) }

// cluster starts three nodes serving the built-in handlers, a client
// connected to them, and the service; all are closed when t ends.
func cluster(t *testing.T) ([]*node.Node, *httptest.Server) {
	secret := []byte("http-fanout example test secret")
	var nodes []*node.Node
	var addrs []string
	for range 3 {
		n, err := node.New(node.Config{Secret: secret})
		if err != nil {
			t.Fatal(err)
		}
		handlers.Register(n)
		if err := n.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		nodes, addrs = append(nodes, n), append(addrs, n.Addr())
	}
	cl, err := coord.NewClient(coord.Config{Nodes: addrs, Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() }) // cleanups run last first: server, client, nodes
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cl.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(&service{cl: cl})
	t.Cleanup(srv.Close) // waits for the handlers to return
	return nodes, srv
}

func liveWorkers(nodes []*node.Node) (live int64) {
	for _, n := range nodes {
		live += n.Stats().Live
	}
	return live
}

func TestEveryRowOnce(t *testing.T) {
	_, srv := cluster(t)
	resp, err := srv.Client().Get(srv.URL + "/rows?q=16&rows=20")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	seen := map[row]bool{}
	for sc := bufio.NewScanner(resp.Body); sc.Scan(); {
		var r row
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil || r.Row == "" {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		key := row{Range: r.Range, Row: r.Row} // the node may be any copy
		if seen[key] {
			t.Fatalf("row twice: %+v", r)
		}
		seen[key] = true
	}
	if len(seen) != 16*20 {
		t.Fatalf("%d distinct rows, want %d", len(seen), 16*20)
	}
}

func TestHangUpReapsEveryWorker(t *testing.T) {
	nodes, srv := cluster(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// A million rows per range: the fan-out cannot finish on its own
	// while the test runs.
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/rows?q=16&rows=1000000", nil)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(resp.Body)
	for i := 0; i < 5; i++ {
		if !sc.Scan() {
			t.Fatalf("stream ended after %d rows: %v", i, sc.Err())
		}
	}
	if liveWorkers(nodes) == 0 {
		t.Fatal("no live worker while rows stream: the check below would prove nothing")
	}

	cancel() // hang up
	resp.Body.Close()

	deadline := time.Now().Add(5 * time.Second)
	for liveWorkers(nodes) > 0 {
		if time.Now().After(deadline) {
			for _, n := range nodes {
				t.Errorf("node %s: %d live workers 5s after the hang-up: %+v", n.Addr(), n.Stats().Live, n.Jobs())
			}
			t.FailNow()
		}
		time.Sleep(5 * time.Millisecond) // polling interval
	}
}
