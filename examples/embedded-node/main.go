// Command embedded-node runs a small rexi cluster inside one process:
// three nodes (package node) serving a streaming handler of their own,
// "scan", over an in-memory table, and a coordinator (package coord) that
// fans a scan out over them as Q ranges × N copies and prints the merged
// rows.
//
//	go run ./examples/embedded-node              # Q=8 ranges × N=3 copies, every row
//	go run ./examples/embedded-node -match NL    # only the rows that contain "NL"
package main

import (
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"time"

	"github.com/rexi-go/rexi/coord"
	"github.com/rexi-go/rexi/node"
)

// table is the "database". Every node holds all of it here; in a real
// cluster a node holds only its shards, but it serves a job the same way:
// it reads the rows whose key hashes into the job's range of the ring.
var table = []string{
	"ams Amsterdam NL", "ath Athens GR", "bcn Barcelona ES", "ber Berlin DE",
	"bru Brussels BE", "buh Bucharest RO", "bud Budapest HU", "cph Copenhagen DK",
	"dub Dublin IE", "ein Eindhoven NL", "hel Helsinki FI", "lis Lisbon PT",
	"lon London GB", "lux Luxembourg LU", "mad Madrid ES", "mil Milan IT",
	"osl Oslo NO", "par Paris FR", "prg Prague CZ", "rom Rome IT",
	"rtm Rotterdam NL", "sto Stockholm SE", "vie Vienna AT", "waw Warsaw PL",
}

// Row is one row of a scan, with the node that served it.
type Row struct{ Node, Line string }

func main() {
	match := flag.String("match", "", "only rows containing this text")
	q := flag.Int("q", 8, "shard ranges")
	n := flag.Int("n", 3, "copies of each range (at most 3, the number of nodes)")
	flag.Parse()
	slog.SetLogLoggerLevel(slog.LevelWarn) // connection events would drown the rows
	// Ctrl-C ends the coordinator's context: the reaper kills every worker.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	rows, err := run(ctx, coord.ShardMap{Q: *q, N: *n}, *match)
	if err != nil {
		log.Fatal(err)
	}
	for _, r := range rows {
		fmt.Printf("%-16s %s\n", r.Node, r.Line)
	}
	fmt.Println(len(rows), "rows")
}

// run starts three nodes, connects a client to them and runs one scan.
func run(ctx context.Context, m coord.ShardMap, match string) ([]Row, error) {
	// The cluster lives and dies with this process, so any fresh random
	// secret will do; a real cluster reads it from a protected file.
	secret := make([]byte, 32)
	rand.Read(secret)

	var addrs []string
	for i := range 3 {
		n, err := startNode(fmt.Sprint("node", i), secret)
		if err != nil {
			return nil, err
		}
		defer n.Close() // after cl.Close below (defers run last first)
		addrs = append(addrs, n.Addr())
	}
	// Encrypted by default: nothing to configure beyond the secret.
	cl, err := coord.NewClient(coord.Config{Nodes: addrs, Secret: secret})
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := cl.WaitConnected(wctx); err != nil {
		return nil, err
	}
	return scan(ctx, cl, addrs, m, match)
}

// startNode starts a node on a free loopback port that can run "scan" and
// nothing else: only registered handlers ever run.
func startNode(name string, secret []byte) (*node.Node, error) {
	n, err := node.New(node.Config{Name: name, Secret: secret})
	if err != nil {
		return nil, err
	}
	// Streaming: the node answers STREAM_INIT for every copy at once and
	// runs the handler only on the copy the coordinator STARTs; the copies
	// it cancels never read the table.
	n.Handle("scan", scanHandler, node.Streaming())
	if err := n.Start(); err != nil {
		n.Close()
		return nil, err
	}
	return n, nil
}

// scan fans "scan" out over the nodes, m.Q ranges × m.N copies. The
// coordinator starts one copy per range and cancels the others, so every
// matching row arrives exactly once.
func scan(ctx context.Context, cl *coord.Client, nodes []string, m coord.ShardMap, match string) ([]Row, error) {
	jobs, err := m.Jobs(nodes, "scan", nil)
	if err != nil {
		return nil, err
	}
	// A DOIT does not carry Job.Range (that is the coordinator's own
	// bookkeeping), so each job's range travels in its args.
	for i := range jobs {
		jobs[i].Args = scanArgs(jobs[i].Range, match)
	}
	co, err := cl.New(ctx, len(jobs))
	if err != nil {
		return nil, err
	}
	defer co.Close() // kills whatever has not finished, on every path
	if _, err := co.Submit(jobs...); err != nil {
		return nil, err
	}
	var rows []Row
	opts := coord.StreamOptions{RecvOptions: coord.RecvOptions{Timeout: 10 * time.Second}}
	err = co.Stream(opts, func(msg coord.Message) error {
		if msg.Kind == coord.KindRow {
			// Payload is only valid during the callback: string copies it.
			rows = append(rows, Row{Node: msg.Worker.Node, Line: string(msg.Payload)})
		}
		return nil
	})
	return rows, err
}

// scanHandler streams the rows whose key hashes into the job's range and
// that contain the match text, then a LAST with their count. It runs on a
// goroutine of its own (node.Handle), so it may block, and only once its
// copy was STARTed (node.Streaming); Stream waits for an ACK when the
// coordinator's window and the node's own are full. A range with no
// matching row sends only the LAST, which serves it too.
func scanHandler(_ context.Context, w *node.Worker) error {
	rg, match, err := parseScanArgs(w.Args())
	if err != nil {
		return err // the coordinator gets EXIT ERROR with this text
	}
	sent := 0
	for _, line := range table {
		key, _, _ := strings.Cut(line, " ")
		if !rg.Contains(coord.KeyHash([]byte(key))) || !strings.Contains(line, match) {
			continue
		}
		// Stream fails once the worker must stop (CANCEL because another
		// copy of the range was chosen, KILL_ALL, connection lost), so the
		// loop needs no check of its context of its own.
		if err := w.Stream([]byte(line)); err != nil {
			return err
		}
		sent++
	}
	return w.Last(strconv.AppendInt(nil, int64(sent), 10))
}

// scanArgs encodes a scan's arguments: "LO-HI MATCH", the range in hex.
func scanArgs(rg coord.Range, match string) []byte {
	return fmt.Appendf(nil, "%08x-%08x %s", rg.Lo, rg.Hi, match)
}

func parseScanArgs(b []byte) (rg coord.Range, match string, err error) {
	bounds, match, ok := strings.Cut(string(b), " ")
	lo, hi, ok2 := strings.Cut(bounds, "-")
	l, err1 := strconv.ParseUint(lo, 16, 32)
	h, err2 := strconv.ParseUint(hi, 16, 32)
	if !ok || !ok2 || err1 != nil || err2 != nil || l > h {
		return rg, "", fmt.Errorf("scan: args %q, want LO-HI MATCH", b)
	}
	return coord.Range{Lo: uint32(l), Hi: uint32(h)}, match, nil
}
