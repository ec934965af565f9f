// Package live serves and reads /live, the admin endpoint that tells how
// many workers a node has live and, as a long-poll, when the last one left:
// rexinode serves it, W-reap measurements and the gRPC baseline read it.
// AdminClient is how rexinode's tools reach the admin endpoints.
package live

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Counter is what a node exposes for W-reap: its live workers, how
// many it ever started, and a wait for none to be live.
type Counter interface {
	Live() int64
	Started() int64
	WaitNoLive(ctx context.Context) error
	// IdleSince is when the last live worker left, recorded where it
	// happened; false while one is live.
	IdleSince() (time.Time, bool)
}

// Handler serves /live: the number of live workers. With
// ?wait=DURATION&from=N it answers its headers at once (the watch is
// armed), then waits until N more workers have started than when the
// request arrived and none is live any more, and writes the count and the
// wall-clock time (unix ns) at which the node's last worker left, as the
// node recorded it at that moment — so W-reap is timed on the node, without
// polling, without a goroutine wake-up and without the HTTP answer's
// latency (all processes share the host's clock). Started is monotonic, so a fan-out
// that comes and goes between two looks is not missed.
func Handler(c Counter) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if v := q.Get("wait"); v != "" {
			wait, err := time.ParseDuration(v)
			if err != nil {
				http.Error(w, "wait: "+err.Error(), http.StatusBadRequest)
				return
			}
			from, _ := strconv.ParseInt(q.Get("from"), 10, 64)
			ctx, cancel := context.WithTimeout(r.Context(), wait)
			defer cancel()
			armed := time.Now()
			base := c.Started() // before the headers: the caller submits once it has them
			w.WriteHeader(http.StatusOK)
			_ = http.NewResponseController(w).Flush()
			t := time.NewTicker(time.Millisecond) // the rise is not what is timed
			defer t.Stop()
			for c.Started()-base < from && ctx.Err() == nil {
				select {
				case <-t.C:
				case <-ctx.Done():
				}
			}
			// A node counts a worker started a moment before it counts it
			// live: seen in between, "none live" is not the end of these
			// workers, and the instant the node last had none is an earlier
			// one. Once a worker started after the watch was armed, only an
			// instant after the arming answers.
			for ctx.Err() == nil && c.WaitNoLive(ctx) == nil {
				if at, ok := c.IdleSince(); ok && (!at.Before(armed) || c.Started() == base) {
					fmt.Fprintln(w, c.Live(), at.UnixNano())
					return
				}
				select {
				case <-t.C:
				case <-ctx.Done():
				}
			}
		}
		fmt.Fprintln(w, c.Live())
	})
}

// Watcher long-polls nodes' /live (served by Handler) for W-reap.
type Watcher struct {
	c     *AdminClient
	addrs []string
	wg    sync.WaitGroup // the long-polls in flight
}

// NewWatcher returns a Watcher of the nodes at the admin addresses addrs,
// reached through c.
func NewWatcher(c *AdminClient, addrs []string) *Watcher {
	return &Watcher{c: c, addrs: addrs}
}

// Watch is an Options.WatchReap: it arms a long-poll of every node's /live
// and returns a wait that ends when the last node saw none live. An answer
// other than 200 OK (a missing token, a guarded endpoint off loopback) is
// an error that names the URL and the status. The long-polls end with ctx:
// a caller that returns without calling wait cancels it.
func (w *Watcher) Watch(ctx context.Context, timeout time.Duration) func() (int64, time.Time, error) {
	c, addrs := w.c, w.addrs
	type answer struct {
		live int64
		zero time.Time
		err  error
	}
	answers := make(chan answer, len(addrs))
	armed := make(chan struct{}, len(addrs))
	for _, a := range addrs {
		w.wg.Go(func() {
			req, err := c.NewRequest(ctx, http.MethodGet, a, fmt.Sprintf("/live?from=1&wait=%s", timeout))
			var resp *http.Response
			if err == nil {
				resp, err = c.Do(req) // returns once the node has armed the watch
			}
			armed <- struct{}{}
			if err != nil {
				answers <- answer{err: err}
				return
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			if err != nil {
				answers <- answer{err: err}
				return
			}
			ans := parseLive(string(b))
			if ans.live > 0 { // a leak: say which workers, for whoever investigates
				reportJobs(ctx, c, a, ans.live)
			}
			answers <- ans
		})
	}
	for range addrs {
		<-armed
	}
	return func() (int64, time.Time, error) {
		var left int64
		var last time.Time
		var errs []error
		for range addrs {
			a := <-answers
			left += a.live
			if a.zero.After(last) {
				last = a.zero
			}
			errs = append(errs, a.err)
		}
		return left, last, errors.Join(errs...)
	}
}

// Wait returns once every long-poll Watch started has ended: after their
// answers were read, or their contexts cancelled.
func (w *Watcher) Wait() { w.wg.Wait() }

// reportJobs prints the node's /jobs to stderr: which workers leaked.
func reportJobs(ctx context.Context, c *AdminClient, addr string, live int64) {
	req, err := c.NewRequest(ctx, http.MethodGet, addr, "/jobs")
	if err != nil {
		return
	}
	resp, err := c.Do(req)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: w-reap: node %s still has %d live workers (%v)\n", addr, live, err)
		return
	}
	detail, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Fprintf(os.Stderr, "bench: w-reap: node %s still has %d live workers:\n%s\n", addr, live, detail)
}

// parseLive reads "LIVE [ZERO_UNIX_NS]".
func parseLive(s string) (a struct {
	live int64
	zero time.Time
	err  error
}) {
	f := strings.Fields(s)
	if len(f) == 0 {
		a.err = fmt.Errorf("empty /live answer")
		return
	}
	a.live, a.err = strconv.ParseInt(f[0], 10, 64)
	if len(f) > 1 {
		ns, err := strconv.ParseInt(f[1], 10, 64)
		if err == nil {
			a.zero = time.Unix(0, ns)
		}
	}
	return
}
