// Command http-fanout is an HTTP service in front of a rexi cluster. Each
// GET /rows runs a streaming fan-out of the built-in "rows" handler over
// the nodes and writes the merged rows as NDJSON while they arrive. The
// coordinator is bound to the request: a client that hangs up ends the
// fan-out, and the reaper kills every worker on every node at once.
//
//	go run ./examples/http-fanout                    # 3 nodes in this process
//	go run ./examples/http-fanout -nodes 127.0.0.1:7070,127.0.0.1:7080,127.0.0.1:7090 -secret-file secret
//	curl -N 'http://127.0.0.1:8080/rows?q=16&rows=100000'   # Ctrl-C: every worker is reaped
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"time"

	"github.com/rexi-go/rexi/coord"
	"github.com/rexi-go/rexi/handlers"
	"github.com/rexi-go/rexi/node"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "HTTP address")
	nodes := flag.String("nodes", "", "comma-separated addresses of rexinode nodes; empty: start 3 nodes in this process")
	secretFile := flag.String("secret-file", "", "file holding the cluster secret (with -nodes)")
	flag.Parse()
	if err := run(*listen, *nodes, *secretFile); err != nil {
		log.Fatal(err)
	}
}

func run(listen, nodeList, secretFile string) error {
	// SIGINT ends every request's context too (BaseContext below), so
	// in-flight fan-outs end and Shutdown does not wait for them.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	var addrs []string
	var secret []byte
	if nodeList == "" {
		secret = make([]byte, 32)
		rand.Read(secret) // the nodes live in this process: any fresh secret
		for range 3 {
			n, err := node.New(node.Config{Secret: secret})
			if err != nil {
				return err
			}
			handlers.Register(n) // what rexinode serves, "rows" among them
			defer n.Close()
			if err := n.Start(); err != nil {
				return err
			}
			addrs = append(addrs, n.Addr())
		}
	} else {
		b, err := os.ReadFile(secretFile)
		if err != nil {
			return err
		}
		// Trimmed as rexinode trims -secret-file, or the nodes refuse us.
		secret, addrs = bytes.TrimRight(b, "\r\n"), strings.Split(nodeList, ",")
	}

	cl, err := coord.NewClient(coord.Config{Nodes: addrs, Secret: secret})
	if err != nil {
		return err
	}
	defer cl.Close()
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := cl.WaitConnected(wctx); err != nil {
		return err
	}

	srv := &http.Server{
		Addr:              listen,
		Handler:           &service{cl: cl},
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	log.Printf("serving http://%s/rows?q=16&rows=1000 over %d nodes", listen, len(addrs))
	select {
	case err := <-errc:
		return err // could not listen
	case <-ctx.Done():
	}
	// Wait for the handlers (their fan-outs are ending) before the
	// deferred closes take the client and the nodes away.
	return srv.Shutdown(context.Background())
}

// service answers GET /rows?q=Q&rows=R: R rows from each of Q ranges of
// the ring, each range served by one of its N = 3 copies.
type service struct{ cl *coord.Client }

// row is one NDJSON line.
type row struct {
	Node  string `json:"node"`
	Range string `json:"range"`
	Row   string `json:"row"`
}

func (s *service) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q, err1 := intParam(r, "q", 8, 1024)
	rows, err2 := intParam(r, "rows", 10, 1<<30)
	if err := errors.Join(err1, err2); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	// Place the fan-out on the nodes that are up now.
	nodes := s.cl.LiveNodes()
	jobs, err := coord.ShardMap{Q: q, N: min(3, len(nodes))}.Jobs(nodes, "rows", []byte(handlers.RowsArgs(rows, 32, 0)))
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	// Bound to the request: when the client hangs up, r.Context() ends,
	// Stream returns, and the reaper sends KILL_ALL for every worker this
	// coordinator started, whatever this goroutine is doing.
	co, err := s.cl.New(r.Context(), len(jobs))
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	defer co.Close()
	if _, err := co.Submit(jobs...); err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}

	w.Header().Set("Content-Type", "application/x-ndjson")
	rc := http.NewResponseController(w)
	enc := json.NewEncoder(w)
	// The callback writes each row to the client before taking the next:
	// a slow client slows the workers (their windows fill) instead of
	// piling rows up in this process.
	err = co.Stream(coord.StreamOptions{}, func(m coord.Message) error {
		if m.Kind != coord.KindRow {
			return nil // LASTs: the per-range summaries
		}
		if err := enc.Encode(row{m.Worker.Node, m.Worker.Range.String(), string(m.Payload)}); err != nil {
			return err
		}
		return rc.Flush() // the client sees the row now, not when a buffer fills
	})
	if err != nil && r.Context().Err() == nil {
		// The status is sent already: report the failure in band.
		enc.Encode(map[string]string{"error": err.Error()})
	}
}

// intParam reads an integer query parameter in [1, max].
func intParam(r *http.Request, name string, def, max int) (int, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return def, nil
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < 1 || v > max {
		return 0, fmt.Errorf("%s=%q: want an integer from 1 to %d", name, s, max)
	}
	return v, nil
}
