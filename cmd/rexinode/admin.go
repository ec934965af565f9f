package main

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rexi-go/rexi/coord"
	"github.com/rexi-go/rexi/internal/live"
	"github.com/rexi-go/rexi/node"
)

// routes: /metrics and /healthz are open to whoever reaches the port;
// everything that runs work or reveals it needs the bearer token.
func (d *daemon) routes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(d.metrics.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", d.healthz)
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, map[string]any{"alive": true}) })
	guarded := func(pattern string, h http.HandlerFunc) { mux.Handle(pattern, d.guard(h)) }
	guarded("GET /live", live.Handler(nodeLive{d.node}).ServeHTTP)
	guarded("GET /errors", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, d.node.RecentErrors()) })
	guarded("GET /jobs", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, d.node.Jobs()) })
	guarded("GET /fanout", d.fanout)
	guarded("POST /drain", d.drain)
	guarded("/debug/pprof/", pprof.Index)
	guarded("/debug/pprof/cmdline", pprof.Cmdline)
	guarded("/debug/pprof/profile", pprof.Profile)
	guarded("/debug/pprof/symbol", pprof.Symbol)
	guarded("/debug/pprof/trace", pprof.Trace)
	return mux
}

// guard admits a request that carries the admin token as a bearer token.
// Without -admin-token-file, only an admin address on the loopback
// interface serves guarded endpoints (what a developer runs locally).
func (d *daemon) guard(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if d.adminToken == nil {
			if d.adminLoopback {
				h(w, r)
				return
			}
			http.Error(w, "rexinode: this endpoint needs -admin-token-file when the admin address is not loopback", http.StatusForbidden)
			return
		}
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), d.adminToken) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="rexinode"`)
			http.Error(w, "rexinode: send the admin token: Authorization: Bearer <content of -admin-token-file>", http.StatusUnauthorized)
			return
		}
		h(w, r)
	})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// healthz: 200 while serving, 503 while draining.
func (d *daemon) healthz(w http.ResponseWriter, r *http.Request) {
	s := d.client.Stats()
	status := map[string]any{"node": d.node.Name(), "addr": d.node.Addr(), "live_workers": d.node.Stats().Live,
		"peers": len(d.members()), "peers_up": s.NodesUp, "draining": d.node.Draining()}
	if d.node.Draining() {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	writeJSON(w, status)
}

// members are the peers /fanout runs on: the client's node set.
func (d *daemon) members() []string {
	var out []string
	for _, n := range d.client.Nodes() {
		if n.State != coord.NodeRemoving {
			out = append(out, n.Addr)
		}
	}
	return out
}

// drain starts draining the node — new work refused, /healthz 503 — and,
// with ?wait=DURATION, waits until no worker is live or the duration
// passes: a Kubernetes preStop hook (rexinode drain) calls it.
//
//	POST /drain?wait=20s  →  200 {"live_workers": 0} once drained, 503 with the count otherwise
func (d *daemon) drain(w http.ResponseWriter, r *http.Request) {
	wait := time.Duration(0)
	if v := r.URL.Query().Get("wait"); v != "" {
		var err error
		if wait, err = time.ParseDuration(v); err != nil || wait < 0 {
			http.Error(w, fmt.Sprintf("wait=%q is not a duration", v), http.StatusBadRequest)
			return
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), wait)
	defer cancel()
	err := d.node.Drain(ctx)
	d.log.Info("draining on request", "remote", r.RemoteAddr, "live_workers", d.node.Stats().Live)
	if err != nil && wait > 0 {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	writeJSON(w, map[string]any{"draining": true, "live_workers": d.node.Stats().Live})
}

// fanoutRow is one NDJSON line of /fanout.
type fanoutRow struct {
	Slot  int    `json:"slot"`
	Node  string `json:"node"`
	Range string `json:"range"`
	Kind  string `json:"kind"`
	Data  string `json:"data"`
}

// fanout runs a coordinator across the peers, bound to the request, and
// streams the merged rows as NDJSON while they arrive. A client that hangs
// up ends the coordinator, and the reaper kills every worker at once.
//
//	GET /fanout?handler=rows&q=64&n=3&rows=10&size=100&args=&timeout=60s&message_timeout=
func (d *daemon) fanout(w http.ResponseWriter, r *http.Request) {
	spec, err := parseFanoutQuery(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	rc := http.NewResponseController(w)
	w.WriteHeader(http.StatusOK)
	_ = rc.Flush() // the client sees the stream start before the first row
	enc := json.NewEncoder(w)
	res, err := runFanout(r.Context(), d.client, d.members(), spec, func(m coord.Message) error {
		if err := enc.Encode(fanoutRow{Slot: m.Worker.Slot, Node: m.Worker.Node, Range: m.Worker.Range.String(),
			Kind: m.Kind.String(), Data: string(m.Payload)}); err != nil {
			return err
		}
		return rc.Flush()
	})
	outcome := "ok"
	if err != nil {
		outcome = "error"
		if r.Context().Err() != nil {
			outcome = "cancelled"
		}
	}
	d.metrics.latency.WithLabelValues(spec.Handler, outcome).Observe(res.Elapsed.Seconds())
	if r.Context().Err() != nil {
		d.log.Info("fanout client hung up; coordinator ended", "rows_sent", res.Rows)
		return
	}
	final := map[string]any{"done": err == nil, "rows": res.Rows, "replies": res.Replies, "replaced": res.Replaced,
		"elapsed_ms": float64(res.Elapsed.Microseconds()) / 1000}
	if err != nil {
		final["error"] = err.Error()
	}
	_ = enc.Encode(final)
}

func parseFanoutQuery(r *http.Request) (fanoutSpec, error) {
	q := r.URL.Query()
	spec := fanoutSpec{Handler: "rows", Q: 64, N: 3, Rows: 10, Size: 100, Timeout: time.Minute, Args: q.Get("args")}
	if h := q.Get("handler"); h != "" {
		spec.Handler = h
	}
	ints := map[string]*int{"q": &spec.Q, "n": &spec.N, "rows": &spec.Rows, "size": &spec.Size}
	for k, p := range ints {
		if v := q.Get(k); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil {
				return spec, fmt.Errorf("%s=%q is not an integer", k, v)
			}
			*p = n
		}
	}
	durs := map[string]*time.Duration{"timeout": &spec.Timeout, "message_timeout": &spec.MessageTimeout}
	for k, p := range durs {
		if v := q.Get(k); v != "" {
			dur, err := time.ParseDuration(v)
			if err != nil {
				return spec, fmt.Errorf("%s=%q is not a duration", k, v)
			}
			*p = dur
		}
	}
	return spec, spec.validate()
}

// nodeLive adapts a node to live.Counter for /live.
type nodeLive struct{ n *node.Node }

func (l nodeLive) Live() int64                          { return l.n.Stats().Live }
func (l nodeLive) Started() int64                       { return int64(l.n.Stats().Started) }
func (l nodeLive) WaitNoLive(ctx context.Context) error { return l.n.WaitNoLive(ctx) }
func (l nodeLive) IdleSince() (time.Time, bool)         { return l.n.IdleSince() }
