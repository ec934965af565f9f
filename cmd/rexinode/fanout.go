package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/rexi-go/rexi/coord"
	"github.com/rexi-go/rexi/handlers"
)

// fanoutSpec is one fan-out: Q ranges × N copies of a handler.
type fanoutSpec struct {
	Handler        string
	Q, N           int
	Args           string // handler args; for rows built from Rows and Size when empty
	Rows, Size     int
	Timeout        time.Duration
	MessageTimeout time.Duration
}

func (s *fanoutSpec) validate() error {
	switch {
	case s.Handler == "":
		return errors.New("handler is empty")
	case s.Q < 1 || s.Q > 4096:
		return fmt.Errorf("q=%d: want 1..4096", s.Q)
	case s.N < 1 || s.N > 16:
		return fmt.Errorf("n=%d: want 1..16", s.N)
	case s.Timeout <= 0:
		return fmt.Errorf("timeout %v must be positive", s.Timeout)
	}
	if s.Args == "" && s.Handler == "rows" {
		s.Args = handlers.RowsArgs(s.Rows, s.Size, 0)
	}
	if s.Handler == "rows" {
		if _, _, _, err := handlers.ParseRowsArgs(s.Args); err != nil {
			return err
		}
	}
	return nil
}

// fanoutResult summarises a fan-out.
type fanoutResult struct {
	Handler  string         `json:"handler"`
	Q        int            `json:"q"`
	N        int            `json:"n"`
	Rows     int            `json:"rows"`
	Replies  int            `json:"replies"`
	Bytes    int            `json:"bytes"`
	Replaced int            `json:"replaced"`
	Elapsed  time.Duration  `json:"elapsed_ns"`
	PerNode  map[string]int `json:"per_node"` // rows or replies per node
}

// runFanout runs spec over peers with a coordinator bound to ctx. onMsg
// sees every row, LAST and reply. The shard map places each range's N
// copies on N distinct peers (fewer when there are fewer peers); a failed
// streaming worker whose range has no copy left is resumed, after the
// rows it delivered, on the next peer that is up in that range's order of
// preference.
func runFanout(ctx context.Context, cl *coord.Client, peers []string, spec fanoutSpec, onMsg func(coord.Message) error) (res fanoutResult, err error) {
	res = fanoutResult{Handler: spec.Handler, Q: spec.Q, N: spec.N, PerNode: map[string]int{}}
	start := time.Now()
	defer func() { res.Elapsed = time.Since(start) }()
	jobs, order, n, err := placeFanout(spec, peers)
	if err != nil {
		return res, err
	}
	res.N = n
	co, err := cl.New(ctx, spec.Q*spec.N)
	if err != nil {
		return res, err
	}
	defer co.Close()
	if _, err := co.Submit(jobs...); err != nil {
		return res, err
	}
	count := func(m coord.Message) error {
		res.Bytes += len(m.Payload)
		switch m.Kind {
		case coord.KindRow:
			res.Rows++
			res.PerNode[m.Worker.Node]++
		case coord.KindReply:
			res.Replies++
			res.PerNode[m.Worker.Node]++
		}
		if onMsg != nil {
			return onMsg(m)
		}
		return nil
	}
	opts := coord.RecvOptions{Timeout: spec.Timeout, MessageTimeout: spec.MessageTimeout}
	starts := make([]int, len(jobs)) // first row of each slot's job
	rangeIndex := map[coord.Range]int{}
	for r, rg := range coord.Ranges(spec.Q) {
		rangeIndex[rg] = r
	}
	tried := map[coord.Range][]string{}
	err = co.Stream(coord.StreamOptions{
		RecvOptions: opts,
		Replace: func(failed coord.WorkerInfo, cause error) ([]coord.Job, error) {
			tried[failed.Range] = append(tried[failed.Range], failed.Node)
			next := nextPeer(order[rangeIndex[failed.Range]], tried[failed.Range], cl.NodeUp)
			if next == "" {
				return nil, nil // no peer left up: progress not possible
			}
			res.Replaced++
			args := []byte(spec.Args)
			if spec.Handler == "rows" { // resume after the rows already received
				count, size, _, _ := handlers.ParseRowsArgs(spec.Args)
				from := starts[failed.Slot] + int(failed.Rows)
				starts = append(starts, from)
				args = []byte(handlers.RowsArgs(count, size, from))
			}
			return []coord.Job{{Node: next, Handler: spec.Handler, Args: args, Range: failed.Range}}, nil
		},
	}, count)
	return res, err
}

// placeFanout places spec over peers once: every range's N copies go to
// the first N peers of its rendezvous order (N capped at the number of
// distinct peers), and order keeps each range's full order, every peer
// ranked, where a failed copy's replacement is looked for: the peer the
// shard map would pick if the failed ones were gone.
func placeFanout(spec fanoutSpec, peers []string) (jobs []coord.Job, order [][]string, n int, err error) {
	distinct := len(slices.Compact(slices.Sorted(slices.Values(peers))))
	n = min(spec.N, distinct)
	if order, err = (coord.ShardMap{Q: spec.Q, N: distinct}).Place(peers); err != nil {
		return nil, nil, 0, err
	}
	args := []byte(spec.Args)
	jobs = make([]coord.Job, 0, spec.Q*n)
	for r, rg := range coord.Ranges(spec.Q) {
		for _, node := range order[r][:n] {
			jobs = append(jobs, coord.Job{Node: node, Handler: spec.Handler, Args: args, Range: rg})
		}
	}
	return jobs, order, n, nil
}

// nextPeer is the first peer in a range's order not tried yet and up, or
// "" when none is left.
func nextPeer(order, tried []string, up func(string) bool) string {
	for _, p := range order {
		if !slices.Contains(tried, p) && up(p) {
			return p
		}
	}
	return ""
}

// fanoutCmd: rexinode fanout.
func fanoutCmd(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("fanout", stderr)
	cc := addClientCmd(fs)
	spec := fanoutSpec{}
	fs.StringVar(&spec.Handler, "handler", "rows", "handler to run: echo, rows, sleep, block, crash, or your own")
	fs.IntVar(&spec.Q, "q", 64, "shard ranges")
	fs.IntVar(&spec.N, "n", 3, "copies per range")
	fs.StringVar(&spec.Args, "args", "", "handler arguments (rows: N[:SIZE[:START]])")
	fs.IntVar(&spec.Rows, "rows", 10, "rows per range, for the rows handler when -args is empty")
	fs.IntVar(&spec.Size, "size", 100, "row size in bytes, for the rows handler when -args is empty")
	fs.DurationVar(&spec.Timeout, "timeout", time.Minute, "global timeout of the fan-out")
	fs.DurationVar(&spec.MessageTimeout, "message-timeout", 0, "longest silence between messages (0: none)")
	asJSON := fs.Bool("json", false, "print the summary as JSON")
	peers, secret, err := cc.parse(fs, args)
	if err != nil {
		return err
	}
	if err := spec.validate(); err != nil {
		return fail(exitUsage, "%v", err)
	}
	cl, err := connectAny(peers, secret, cc.client, newLogger(stderr, slog.LevelError, *cc.logFormat), stderr)
	if err != nil {
		return err
	}
	defer cl.Close()
	expected := 0 // unknown for a handler of yours: the bar counts without a total
	if spec.Handler == "rows" {
		c, _, st, _ := handlers.ParseRowsArgs(spec.Args)
		expected = spec.Q * (c - st)
	}
	bar := newProgress(stderr, expected)
	// Ctrl-C ends the coordinator: the reaper kills every worker, and what
	// arrived so far is printed.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := runFanout(ctx, cl, peers, spec, func(m coord.Message) error {
		if m.Kind == coord.KindRow || m.Kind == coord.KindReply {
			bar.add(1)
		}
		return nil
	})
	bar.done()
	if ctx.Err() != nil {
		printSummary(stdout, res)
		return fail(exitFailed, "interrupted after %d rows, %d replies; every worker was killed", res.Rows, res.Replies)
	}
	if err != nil {
		return fail(exitFailed, "fan-out failed after %d rows, %d replies: %v", res.Rows, res.Replies, err)
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(res)
	}
	printSummary(stdout, res)
	return nil
}

func printSummary(w io.Writer, r fanoutResult) {
	fmt.Fprintf(w, "fan-out %s q=%d n=%d: %d rows, %d replies, %d bytes in %v", r.Handler, r.Q, r.N, r.Rows, r.Replies, r.Bytes, r.Elapsed.Round(time.Microsecond))
	if r.Replaced > 0 {
		fmt.Fprintf(w, " (%d workers replaced)", r.Replaced)
	}
	fmt.Fprintln(w)
	nodes := make([]string, 0, len(r.PerNode))
	for n := range r.PerNode {
		nodes = append(nodes, n)
	}
	slices.Sort(nodes)
	for _, n := range nodes {
		fmt.Fprintf(w, "  %-22s %d\n", n, r.PerNode[n])
	}
}

// clientCmd is what every command that talks to running nodes shares:
// -nodes, the secret, -config and the connection settings.
type clientCmd struct {
	nodes     *string
	secret    secretFlags
	client    clientFlags
	logFormat *string
}

func addClientCmd(fs flagSet) clientCmd {
	c := clientCmd{nodes: fs.String("nodes", "", "comma-separated node addresses (host:port)"), secret: addSecretFlags(fs), logFormat: addLogFormat(fs)}
	fs.String("config", "", "JSON file of flag values")
	c.client = addClientFlags(fs, true)
	return c
}

// parse parses args and returns the nodes and the secret.
func (c clientCmd) parse(fs flagSet, args []string) ([]string, []byte, error) {
	if err := fs.parse(args); err != nil {
		return nil, nil, err
	}
	if err := checkLogFormat(*c.logFormat); err != nil {
		return nil, nil, err
	}
	secret, err := c.secret.resolve()
	if err != nil {
		return nil, nil, err
	}
	nodes := splitList(*c.nodes)
	if len(nodes) == 0 {
		return nil, nil, fail(exitUsage, "-nodes is required")
	}
	return nodes, secret, nil
}

// clientFlags are the coordinator-side connection settings.
type clientFlags struct {
	checksum, compression *bool
	dialTimeout           *time.Duration
	hbInterval, hbTimeout *time.Duration
	security              securityFlags
}

// addClientFlags registers the connection flags; features (-checksum,
// -compression) only when the caller has no flags of those names already.
func addClientFlags(fs flagSet, features bool) clientFlags {
	f := clientFlags{
		dialTimeout: fs.Duration("dial-timeout", 5*time.Second, "connect and handshake timeout per node"),
		hbInterval:  fs.Duration("heartbeat-interval", time.Second, "heartbeat interval to each node"),
		hbTimeout:   fs.Duration("heartbeat-timeout", 5*time.Second, "declare a node down after this long without a frame"),
	}
	if features { // a client command; serve shares its own with its client
		f.checksum = fs.Bool("checksum", false, "ask nodes for xxhash64 frame checksums (plaintext connections)")
		f.compression = fs.Bool("compression", false, "ask nodes for S2 compression of large payloads")
		f.security = addSecurityFlags(fs, false)
	}
	return f
}

// config reads the key files and returns the client's configuration.
func (f clientFlags) config(peers []string, secret []byte) (coord.Config, error) {
	ks, err := f.security.keys()
	if err != nil {
		return coord.Config{}, err
	}
	return f.configWith(peers, secret, ks), nil
}

// configWith is the client's configuration with keys already read.
func (f clientFlags) configWith(peers []string, secret []byte, ks keySet) coord.Config {
	return coord.Config{Nodes: peers, Secret: secret, Name: hostName("rexinode"), Checksum: *f.checksum, Compression: *f.compression,
		Key: ks.key, NodeKeys: ks.nodeKeys, InsecurePlaintext: *f.security.plaintext,
		DialTimeout: *f.dialTimeout, HeartbeatInterval: *f.hbInterval, HeartbeatTimeout: *f.hbTimeout}
}

// connectAny builds a client and goes on with the nodes that answered its
// first attempt: the fan-out's copies on the others fail at once and are
// replaced, so it completes while every range has a live copy.
func connectAny(peers []string, secret []byte, cf clientFlags, log *slog.Logger, stderr io.Writer) (*coord.Client, error) {
	cfg, err := cf.config(peers, secret)
	if err != nil {
		return nil, err
	}
	cfg.Logger = log
	cl, err := coord.NewClient(cfg) // returns after every node's first attempt
	if err != nil {
		return nil, fail(exitUsage, "%v", err)
	}
	if len(cl.LiveNodes()) == len(peers) {
		return cl, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	werr := cl.WaitConnected(ctx) // the first node that is not up, and why
	if len(cl.LiveNodes()) == 0 {
		cl.Close()
		return nil, fail(exitUnreachable, "cannot reach any node: %v", werr)
	}
	fmt.Fprintf(stderr, "rexinode: going on with %d of %d nodes: %v\n", len(cl.LiveNodes()), len(peers), werr)
	return cl, nil
}

// connect builds a client and waits until every node is connected.
func connect(peers []string, secret []byte, cf clientFlags, log *slog.Logger) (*coord.Client, error) {
	cfg, err := cf.config(peers, secret)
	if err != nil {
		return nil, err
	}
	cfg.Logger = log
	cl, err := coord.NewClient(cfg)
	if err != nil {
		return nil, fail(exitUsage, "%v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.DialTimeout+time.Second)
	defer cancel()
	if err := cl.WaitConnected(ctx); err != nil {
		cl.Close()
		return nil, fail(exitUnreachable, "cannot reach the nodes: %v", err)
	}
	return cl, nil
}

func hostName(prefix string) string {
	h, err := os.Hostname()
	if err != nil {
		return prefix
	}
	return prefix + "@" + strings.SplitN(h, ".", 2)[0]
}
