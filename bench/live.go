package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// LiveCounter is what a node exposes for W-reap: its live workers, how
// many it ever started, and a wait for none to be live.
type LiveCounter interface {
	Live() int64
	Started() int64
	WaitNoLive(ctx context.Context) error
}

// LiveHandler serves /live: the number of live workers. With
// ?wait=DURATION&from=N it answers its headers at once (the watch is
// armed), then waits until N more workers have started than when the
// request arrived and none is live any more, and only then writes the
// count — so W-reap is timed without polling. Started is monotonic, so a
// fan-out that comes and goes between two looks is not missed.
func LiveHandler(c LiveCounter) http.Handler {
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
			base := c.Started() // before the headers: the caller submits once it has them
			w.WriteHeader(http.StatusOK)
			_ = http.NewResponseController(w).Flush()
			t := time.NewTicker(time.Millisecond) // the rise is not what is timed
			for c.Started()-base < from && ctx.Err() == nil {
				select {
				case <-t.C:
				case <-ctx.Done():
				}
			}
			t.Stop()
			_ = c.WaitNoLive(ctx)
		}
		fmt.Fprintln(w, c.Live())
	})
}

// WatchLive returns an Options.WatchReap that long-polls every node's
// /live (served by LiveHandler) at the given admin addresses.
func WatchLive(addrs []string) func(context.Context, time.Duration) func() (int64, error) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	return func(ctx context.Context, timeout time.Duration) func() (int64, error) {
		type answer struct {
			live int64
			err  error
		}
		answers := make(chan answer, len(addrs))
		armed := make(chan struct{}, len(addrs))
		for _, a := range addrs {
			go func() {
				url := fmt.Sprintf("http://%s/live?from=1&wait=%s", a, timeout)
				req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
				var resp *http.Response
				if err == nil {
					resp, err = client.Do(req) // returns once the node has armed the watch
				}
				armed <- struct{}{}
				if err != nil {
					answers <- answer{0, err}
					return
				}
				defer resp.Body.Close()
				b, err := io.ReadAll(resp.Body)
				if err != nil {
					answers <- answer{0, err}
					return
				}
				v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
				answers <- answer{v, err}
			}()
		}
		for range addrs {
			<-armed
		}
		return func() (int64, error) {
			var left int64
			var errs []error
			for range addrs {
				a := <-answers
				left += a.live
				errs = append(errs, a.err)
			}
			return left, errors.Join(errs...)
		}
	}
}
